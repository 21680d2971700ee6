// Books in the formats people have: encodings, Project Gutenberg files, chapters, Markdown,
// HTML, EPUB (built here with libzip) and PDF (written here with QPdfWriter); each format's
// broken files are refused with a message that names the problem.
#include <QtTest/QtTest>

#include <QGuiApplication>
#include <QImage>
#include <QPainter>
#include <QPdfWriter>
#include <QProcess>
#include <QStandardPaths>

#include <zip.h>

#include <algorithm>

#include "model/book/book.h"
#include "model/file_io.h"
#include "model/text_input.h"

using namespace memmamba;

namespace {

struct Entry {
  std::string name, bytes;
};

// A zip in memory, its entries stored as given (libzip, as a real EPUB tool would write it).
std::string make_zip(const std::vector<Entry>& entries) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* out = zip_source_buffer_create(nullptr, 0, 0, &error);
  zip_source_keep(out);
  zip_t* archive = zip_open_from_source(out, ZIP_TRUNCATE, &error);
  for (const Entry& e : entries) {
    zip_source_t* s = zip_source_buffer(archive, e.bytes.data(), e.bytes.size(), 0);
    zip_file_add(archive, e.name.c_str(), s, ZIP_FL_ENC_UTF_8);
  }
  zip_close(archive);
  zip_source_open(out);
  zip_source_seek(out, 0, SEEK_END);
  const zip_int64_t size = zip_source_tell(out);
  zip_source_seek(out, 0, SEEK_SET);
  std::string bytes(static_cast<size_t>(size), '\0');
  zip_source_read(out, bytes.data(), static_cast<zip_uint64_t>(size));
  zip_source_close(out);
  zip_source_free(out);
  return bytes;
}

const char* kContainer =
    "<?xml version=\"1.0\"?><container version=\"1.0\" xmlns=\"urn:oasis:names:tc:opendocument:xmlns:container\">"
    "<rootfiles><rootfile full-path=\"OEBPS/content.opf\" media-type=\"application/oebps-package+xml\"/></rootfiles></container>";

std::string chapter_xhtml(const std::string& title, const std::string& body) {
  return "<?xml version=\"1.0\" encoding=\"utf-8\"?><html xmlns=\"http://www.w3.org/1999/xhtml\"><head><title>" + title +
         "</title><style>p { margin: 0 }</style></head><body><h2>" + title + "</h2>" + body + "</body></html>";
}

// A Gutenberg-like EPUB: a licence page, two chapters (one in a subfolder with a space in
// its name), a script that must not leak into the text.
std::string gutenberg_epub(bool with_spine = true, bool with_second_file = true) {
  std::string opf =
      "<?xml version=\"1.0\"?><package xmlns=\"http://www.idpf.org/2007/opf\" version=\"3.0\"><manifest>"
      "<item id=\"lic\" href=\"licence.xhtml\" media-type=\"application/xhtml+xml\"/>"
      "<item id=\"c1\" href=\"text/one.xhtml\" media-type=\"application/xhtml+xml\"/>"
      "<item id=\"c2\" href=\"text/chapter%20two.xhtml\" media-type=\"application/xhtml+xml\"/>"
      "<item id=\"end\" href=\"end.xhtml\" media-type=\"application/xhtml+xml\"/></manifest>";
  if (with_spine) opf += "<spine><itemref idref=\"lic\"/><itemref idref=\"c1\"/><itemref idref=\"c2\"/><itemref idref=\"end\"/></spine>";
  opf += "</package>";
  std::vector<Entry> entries = {
      {"mimetype", "application/epub+zip"},
      {"META-INF/container.xml", kContainer},
      {"OEBPS/content.opf", opf},
      {"OEBPS/licence.xhtml", "<html><body><p>The Project Gutenberg eBook of Two Chapters.</p>"
                              "<p>*** START OF THE PROJECT GUTENBERG EBOOK TWO CHAPTERS ***</p></body></html>"},
      {"OEBPS/text/one.xhtml", chapter_xhtml("CHAPTER I. The Road", "<p>It was a   dark <i>and</i> stormy night.</p>"
                                                                     "<script>alert('no')</script><p>The end of one.</p>")},
      {"OEBPS/end.xhtml", "<html><body><p>*** END OF THE PROJECT GUTENBERG EBOOK TWO CHAPTERS ***</p>"
                          "<p>Licence terms follow.</p></body></html>"},
  };
  if (with_second_file)
    entries.push_back({"OEBPS/text/chapter two.xhtml", chapter_xhtml("CHAPTER II. The Sea", "<p>The morning came, caf\xC3\xA9 and all.</p>")});
  return make_zip(entries);
}

// A PDF of `pages` pages written with Qt: a running head, a page number, a chapter heading
// on the first page, and a word hyphenated across two lines.
std::string make_pdf(const QString& path, int pages, bool text_layer = true) {
  QPdfWriter writer(path);
  writer.setResolution(72);
  QPainter p(&writer);
  QFont font(QStringLiteral("DejaVu Serif"));
  font.setPixelSize(12);
  p.setFont(font);
  for (int page = 0; page < pages; ++page) {
    if (page > 0) writer.newPage();
    if (!text_layer) {
      QImage scan(400, 200, QImage::Format_RGB32);
      scan.fill(Qt::white);
      p.drawImage(QPointF(40, 40), scan);
      continue;
    }
    int y = 40;
    p.drawText(40, y, QStringLiteral("A TALE OF TESTS"));  // running head
    y += 40;
    if (page == 0) {
      p.drawText(40, y, QStringLiteral("CHAPTER I"));
      y += 40;
    }
    p.drawText(40, y, QStringLiteral("Page %1 begins with a sentence that runs on and is con-").arg(page + 1));
    y += 16;
    p.drawText(40, y, QStringLiteral("tinued on the next line of the same page."));
    y += 400;
    p.drawText(280, y, QString::number(page + 1));  // page number
  }
  p.end();
  std::string bytes = read_file(path.toStdString(), 1 << 26);
  return bytes;
}

}  // namespace

class TestBooks : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;
  std::string write(const char* name, const std::string& bytes) {
    const std::string p = dir_.filePath(name).toStdString();
    write_file_atomic(p, bytes);
    return p;
  }
  template <typename Fn>
  void expect_message(Fn fn, const std::string& needle) {
    try {
      fn();
      QFAIL(("accepted; expected an error about " + needle).c_str());
    } catch (const TextError& e) {
      QVERIFY2(std::string(e.what()).find(needle) != std::string::npos, e.what());
    }
  }

 private Q_SLOTS:
  void encodingsAreDetected() {
    const std::string words = "na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x82\xAC" "5\n";
    BookText b = load_book(write("utf8.txt", words));
    QCOMPARE(b.encoding, std::string("utf-8"));
    QCOMPARE(b.text, words);
    // UTF-16 with either byte order mark, surrogate pairs included.
    std::string le = "\xFF\xFE", be = "\xFE\xFF";
    const std::u16string u = u"na\u00EFve \U0001F600\n";
    for (char16_t c : u) {
      le += static_cast<char>(c & 0xFF); le += static_cast<char>(c >> 8);
      be += static_cast<char>(c >> 8); be += static_cast<char>(c & 0xFF);
    }
    QCOMPARE(load_book(write("le.txt", le)).text, std::string("na\xC3\xAFve \xF0\x9F\x98\x80\n"));
    QCOMPARE(load_book(write("be.txt", be)).encoding, std::string("utf-16be"));
    QCOMPARE(load_book(write("be2.txt", be)).text, std::string("na\xC3\xAFve \xF0\x9F\x98\x80\n"));
    // CP-1252 (a superset of Latin-1's printable range) when the bytes are not UTF-8.
    b = load_book(write("cp1252.txt", "na\xEFve caf\xE9 \x93quoted\x94 \x80" "5\n"));
    QCOMPARE(b.encoding, std::string("cp1252"));
    QCOMPARE(b.text, words);
    // The user's choice wins: Latin-1 keeps 0x80-0x9F as C1 controls.
    BookOptions latin;
    latin.encoding = "latin-1";
    QCOMPARE(load_book(write("latin.txt", "caf\xE9\n"), latin).text, std::string("caf\xC3\xA9\n"));
    // UTF-16 without a BOM only when asked.
    BookOptions utf16;
    utf16.encoding = "utf-16le";
    QCOMPARE(load_book(write("nobom.txt", std::string("h\0i\0\n\0", 6)), utf16).text, std::string("hi\n"));
    expect_message([&] { load_book(write("nobom2.txt", std::string("h\0i\0\n\0", 6))); }, "--encoding utf-16le");
    // What cannot be text in the chosen encoding is refused, naming the problem.
    BookOptions utf8;
    utf8.encoding = "utf-8";
    expect_message([&] { load_book(write("forced.txt", "caf\xE9\n"), utf8); }, "not valid UTF-8: bad byte 0xE9 at offset 3");
    expect_message([&] { load_book(write("mixed.txt", "caf\xC3\xA9 and caf\xE9\n")); }, "mixes encodings");
    expect_message([&] { load_book(write("odd16.txt", "\xFF\xFEh\0i")); }, "odd number of bytes");
    expect_message([&] { load_book(write("lone.txt", std::string("\xFF\xFE\x00\xD8h\0", 6))); }, "unpaired surrogate");
    BookOptions bad;
    bad.encoding = "ebcdic";
    expect_message([&] { load_book(write("x.txt", "abc"), bad); }, "unknown encoding");
  }

  void gutenbergBoilerplateIsSkippedAndChaptersFound() {
    const std::string file =
        "The Project Gutenberg eBook of A Test\r\n\r\nThis eBook is for the use of anyone.\r\n\r\n"
        "*** START OF THE PROJECT GUTENBERG EBOOK A TEST ***\r\n\r\n\r\nCONTENTS\r\n\r\n CHAPTER I. Arrival\r\n\r\n"
        " CHAPTER II. Departure--A Long Road--Home\r\n\r\n\r\nCHAPTER I. Arrival\r\n\r\nPart of the town was asleep. They came at night.\r\n\r\n"
        "CHAPTER II. Departure\r\n\r\nBook after book was read.\r\n\r\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK A TEST ***\r\n\r\nSection 1. General Terms of Use\r\n";
    const BookText b = load_book(write("pg.txt", file));
    QVERIFY(b.boilerplate_removed);
    QCOMPARE(b.text.substr(0, 8), std::string("CONTENTS"));
    QVERIFY(b.text.find("General Terms") == std::string::npos);
    QVERIFY(b.text.find("START OF") == std::string::npos);
    // The contents list names each chapter once before the book does: the chapters are the later ones.
    QCOMPARE(b.chapters.size(), size_t{2});
    QCOMPARE(b.chapters[0].title, std::string("CHAPTER I. Arrival"));
    QCOMPARE(b.text.substr(static_cast<size_t>(b.chapters[0].char_begin), 18), std::string("CHAPTER I. Arrival"));
    QVERIFY(b.text.find("Part of the town") != std::string::npos);  // a sentence, not a chapter
    QCOMPARE(b.text.substr(static_cast<size_t>(b.chapters[1].char_begin), 21), std::string("CHAPTER II. Departure"));
    BookOptions keep;
    keep.keep_boilerplate = true;
    const BookText k = load_book(write("pg2.txt", file), keep);
    QVERIFY(!k.boilerplate_removed);
    QVERIFY(k.text.find("General Terms") != std::string::npos);
    // A file without the markers is left whole.
    QVERIFY(!load_book(write("plain.txt", "Just a text.\n")).boilerplate_removed);
    // The record a trace keeps: chapters with their first token.
    // Token ends: token 1 ends exactly where chapter I begins, token 2 holds its first byte;
    // token 3 runs from before chapter II into it.
    const int64_t c0 = b.chapters[0].char_begin, c1 = b.chapters[1].char_begin;
    const Json r = b.record({5, c0, c0 + 4, c1 + 2, c1 + 9});
    QCOMPARE(r.at("chapters").as_array().size(), size_t{2});
    QCOMPARE(r.at("chapters").as_array()[0].at("token_begin").as_int(), int64_t{2});
    QCOMPARE(r.at("chapters").as_array()[1].at("token_begin").as_int(), int64_t{3});
    QCOMPARE(b.record({5, c0}).at("chapters").as_array().size(), size_t{0});  // chapters after the last token are left out
  }

  void markdownKeepsOrDropsItsMarkup() {
    const std::string md = "# Chapter One\n\nSome *emphasis* and a [link](http://x.org).\n\n![a cat](cat.png)\n\n# Chapter Two\n\nEnd.\n";
    const BookText kept = load_book(write("a.md", md));
    QCOMPARE(kept.format, std::string("markdown"));
    QCOMPARE(kept.text, md);
    QCOMPARE(kept.chapters.size(), size_t{2});
    BookOptions strip;
    strip.strip_markdown = true;
    const BookText stripped = load_book(write("b.md", md), strip);
    QCOMPARE(stripped.text, std::string("Chapter One\n\nSome emphasis and a link.\n\n\n\nChapter Two\n\nEnd.\n"));
  }

  void contentsEntriesWithoutAHeadingAreNoChapters() {
    // A contents list whose third chapter lost its heading in the text (as in Gutenberg's Tom
    // Sawyer): the whole list goes, the book's own headings stay.
    const std::string file =
        "CONTENTS\n\nCHAPTER I. Arrival--The Town\n\nCHAPTER II. Departure--A Long\nRoad\n\nCHAPTER III. The Sea\n\n"
        "CHAPTER IV. Home Again\n\nCHAPTER V. Winter\n\nCHAPTER VI. The End\n\n\nCHAPTER I\n\nThey came at night.\n\n"
        "CHAPTER II\n\nThey left at dawn.\n\nThe sea was grey.\n\nCHAPTER IV\n\nHome at last.\n\nCHAPTER V\n\nSnow.\n\n"
        "CHAPTER VI\n\nThe end.\n";
    const BookText b = load_book(write("contents.txt", file));
    std::vector<std::string> titles;
    for (const Chapter& c : b.chapters) titles.push_back(c.title);
    QCOMPARE(titles, (std::vector<std::string>{"CHAPTER I", "CHAPTER II", "CHAPTER IV", "CHAPTER V", "CHAPTER VI"}));
    QCOMPARE(b.text.substr(static_cast<size_t>(b.chapters[0].char_begin), 20), std::string("CHAPTER I\n\nThey came"));
    // A long title in capitals may wrap onto the next line; a text that follows its contents at
    // once keeps the heading above its first chapter.
    const BookText wrapped = load_book(
        write("wrapped.txt",
              "CHAPTER I\n\nCHAPTER II\n\nCHAPTER III\n\nCHAPTER IV\n\nCHAPTER V\n\n\nBOOK ONE: 1805\n\nCHAPTER I\n\nIt began.\n\n"
              "CHAPTER II. IN WHICH A LONG TITLE IN CAPITALS RUNS ON PAST THE END OF\nITS LINE\n\nIt went on.\n\n"
              "CHAPTER III\n\nMore.\n\nCHAPTER IV\n\nMore.\n\nCHAPTER V\n\nThe end.\n"));
    titles.clear();
    for (const Chapter& c : wrapped.chapters) titles.push_back(c.title);
    QCOMPARE(titles, (std::vector<std::string>{"BOOK ONE: 1805", "CHAPTER I",
                                               "CHAPTER II. IN WHICH A LONG TITLE IN CAPITALS RUNS ON PAST THE END OF",
                                               "CHAPTER III", "CHAPTER IV", "CHAPTER V"}));
    QVERIFY(wrapped.text.substr(static_cast<size_t>(wrapped.chapters[1].char_begin)).rfind("CHAPTER I\n\nIt began", 0) == 0);
    // Headings close together that the book does not name again are its own: parts and chapters.
    const BookText parts = load_book(
        write("parts.txt", "BOOK I\n\nCHAPTER I\n\nIt began.\n\nCHAPTER II\n\nIt went on.\n\nBOOK II\n\nCHAPTER III\n\nIt ended.\n"));
    QCOMPARE(parts.chapters.size(), size_t{5});
  }

  void romanNumeralsAloneAreSections() {
    // The Time Machine's headings: a numeral alone on its line, a short title after it.
    const std::string prose = "The Time Traveller was expounding a recondite matter to us.\n\n";
    const std::string text =
        "I\n\n\nIntroduction\n\n" + prose + "II.\n\nThe Machine\n\n" + prose + "V\n\n" + prose + "III\n\n" + prose;
    const BookText b = load_book(write("numerals.txt", text));
    std::vector<std::string> titles;
    for (const Chapter& c : b.chapters) titles.push_back(c.title);
    // "V" does not continue the count (II, then III): it is not a heading.
    QCOMPARE(titles, (std::vector<std::string>{"I. Introduction", "II. The Machine", "III"}));
    QCOMPARE(b.text.substr(static_cast<size_t>(b.chapters[1].char_begin), 3), std::string("II."));
    // Two numerals are not an outline, nor are three in the first half of a long book.
    QVERIFY(load_book(write("two.txt", "I\n\n" + prose + "II\n\n" + prose)).chapters.empty());
    std::string early = "I\n\n" + prose + "II\n\n" + prose + "III\n\n";
    for (int i = 0; i < 20; ++i) early += prose;
    QVERIFY(load_book(write("early.txt", early)).chapters.empty());
    // A book with named headings keeps them alone.
    const BookText named = load_book(write("named.txt", "CHAPTER I\n\nI\n\n" + prose + "II\n\n" + prose + "III\n\n" + prose +
                                                        "CHAPTER II\n\n" + prose));
    QCOMPARE(named.chapters.size(), size_t{2});
  }

  void htmlBecomesParagraphs() {
    if (std::find(book_formats_available().begin(), book_formats_available().end(), "html") == book_formats_available().end())
      QSKIP("built without libxml2");
    const std::string html =
        "<!DOCTYPE html><html><head><title>T</title><script>var hidden = 1;</script><style>p{}</style></head>"
        "<body><nav>Menu</nav><h1>Chapter &amp; One</h1><p>Hello <b>bold</b>\n   world.</p><p>Second<br>line.</p>"
        "<pre>  two  spaces</pre><h2>Chapter Two</h2><p>End &eacute;.</p></body></html>";
    const BookText b = load_book(write("b.html", html));
    QCOMPARE(b.format, std::string("html"));
    QCOMPARE(b.text, std::string("Chapter & One\n\nHello bold world.\n\nSecond\nline.\n\n  two  spaces\n\nChapter Two\n\nEnd \xC3\xA9.\n"));
    QCOMPARE(b.chapters.size(), size_t{2});
    QCOMPARE(b.chapters[1].title, std::string("Chapter Two"));
    QCOMPARE(b.text.substr(static_cast<size_t>(b.chapters[1].char_begin), 11), std::string("Chapter Two"));
    expect_message([&] { load_book(write("s.html", "<html><head><script>x()</script></head><body><script>y()</script></body></html>")); },
                   "holds no text");
  }

  void epubFollowsItsSpine() {
    if (std::find(book_formats_available().begin(), book_formats_available().end(), "epub") == book_formats_available().end())
      QSKIP("built without libzip");
    const BookText b = load_book(write("book.epub", gutenberg_epub()));
    QCOMPARE(b.format, std::string("epub"));
    QVERIFY(b.boilerplate_removed);
    QCOMPARE(b.text, std::string("CHAPTER I. The Road\n\nIt was a dark and stormy night.\n\nThe end of one.\n\n"
                                 "CHAPTER II. The Sea\n\nThe morning came, caf\xC3\xA9 and all.\n"));
    QCOMPARE(b.chapters.size(), size_t{2});
    for (const Chapter& c : b.chapters) QCOMPARE(b.text.substr(static_cast<size_t>(c.char_begin), c.title.size()), c.title);
    // Without the magic bytes' help: a .epub named otherwise is still read by its content.
    QCOMPARE(load_book(write("book.bin", gutenberg_epub())).format, std::string("epub"));
  }

  void brokenEpubsAreRefused() {
    if (std::find(book_formats_available().begin(), book_formats_available().end(), "epub") == book_formats_available().end())
      QSKIP("built without libzip");
    expect_message([&] { load_book(write("plain.epub", make_zip({{"readme.txt", "hello"}}))); }, "not an EPUB");
    expect_message([&] { load_book(write("nospine.epub", gutenberg_epub(false))); }, "no spine");
    expect_message([&] { load_book(write("missing.epub", gutenberg_epub(true, false))); }, "not in the file");
    std::string cut = gutenberg_epub();
    cut.resize(cut.size() / 2);
    expect_message([&] { load_book(write("cut.epub", cut)); }, "zip");
    // A zip bomb: 600 MiB of zeros compress to a few hundred KiB; reading stops at the limit.
    std::string zeros(600u << 20, '\0');
    std::vector<Entry> bomb = {{"mimetype", "application/epub+zip"}, {"META-INF/container.xml", kContainer},
                               {"OEBPS/content.opf", "<package><manifest><item id=\"a\" href=\"a.xhtml\"/></manifest>"
                                                     "<spine><itemref idref=\"a\"/></spine></package>"},
                               {"OEBPS/a.xhtml", zeros}};
    const std::string bomb_bytes = make_zip(bomb);
    zeros.clear();
    zeros.shrink_to_fit();
    QVERIFY(bomb_bytes.size() < (8u << 20));
    expect_message([&] { load_book(write("bomb.epub", bomb_bytes)); }, "zip bomb");
  }

  void pdfPagesBecomeParagraphs() {
    if (std::find(book_formats_available().begin(), book_formats_available().end(), "pdf") == book_formats_available().end())
      QSKIP("built without poppler-cpp");
    const std::string bytes = make_pdf(dir_.filePath(QStringLiteral("made.pdf")), 4);
    const BookText b = load_book(write("book.pdf", bytes));
    QCOMPARE(b.format, std::string("pdf"));
    QVERIFY2(b.text.find("A TALE OF TESTS") == std::string::npos, b.text.c_str());  // the running head is gone
    QVERIFY2(b.text.find("continued on the next line") != std::string::npos, b.text.c_str());  // hyphen joined
    QVERIFY2(b.text.find("con-") == std::string::npos, b.text.c_str());
    QVERIFY2(b.text.find("\n4\n") == std::string::npos && b.text.back() != '4', b.text.c_str());  // page numbers gone
    QCOMPARE(b.chapters.size(), size_t{1});
    QCOMPARE(b.chapters[0].title, std::string("CHAPTER I"));
    QVERIFY(b.text.find("Page 3 begins") != std::string::npos);
  }

  void brokenPdfsAreRefused() {
    if (std::find(book_formats_available().begin(), book_formats_available().end(), "pdf") == book_formats_available().end())
      QSKIP("built without poppler-cpp");
    const std::string scanned = make_pdf(dir_.filePath(QStringLiteral("scan.pdf")), 2, false);
    expect_message([&] { load_book(write("scanned.pdf", scanned)); }, "no text layer");
    const std::string good = make_pdf(dir_.filePath(QStringLiteral("good.pdf")), 2);
    expect_message([&] { load_book(write("cut.pdf", good.substr(0, 60))); }, "not a readable PDF");
    // An encrypted PDF, where qpdf is at hand to make one.
    const QString qpdf = QStandardPaths::findExecutable(QStringLiteral("qpdf"));
    if (qpdf.isEmpty()) QSKIP("qpdf is not installed: the encrypted case was not made");
    const QString locked = dir_.filePath(QStringLiteral("locked.pdf"));
    QCOMPARE(QProcess::execute(qpdf, {QStringLiteral("--encrypt"), QStringLiteral("user"), QStringLiteral("owner"),
                                      QStringLiteral("256"), QStringLiteral("--"), dir_.filePath(QStringLiteral("good.pdf")), locked}),
             0);
    expect_message([&] { load_book(locked.toStdString()); }, "encrypted PDF");
  }
};

QTEST_MAIN(TestBooks)
#include "test_books.moc"
