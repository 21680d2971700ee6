#include <QtTest/QtTest>

#include "model/file_io.h"
#include "model/text_input.h"

using namespace memmamba;

class TestTextInput : public QObject {
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
  void normalisesBomAndLineEnds() {
    QCOMPARE(load_text_file(write("a.txt", "\xEF\xBB\xBFOne\r\nTwo\rThree\n")), std::string("One\nTwo\nThree\n"));
    QCOMPARE(load_text_file(write("b.txt", "caf\xC3\xA9 \xF0\x9F\x98\x80")), std::string("caf\xC3\xA9 \xF0\x9F\x98\x80"));
  }
  void refusesWhatIsNotText() {
    expect_message([&] { load_text_file(write("empty.txt", "")); }, "is empty");
    expect_message([&] { load_text_file(write("blank.txt", "  \n\t\n")); }, "is empty");
    expect_message([&] { load_text_file(write("bin.txt", std::string("PK\x03\x04\0\0abc", 9))); }, "not a readable zip file");
    expect_message([&] { load_text_file(write("png.txt", std::string("\x89PNG\r\n\x1a\n\0\0", 10))); }, "binary");
    // normalize_text checks UTF-8 itself (load_text_file reads other encodings first: test_books).
    expect_message([&] { normalize_text("ok\nna\xEFve", "latin1.txt"); }, "not valid UTF-8: bad byte 0xEF at offset 5 (line 2)");
    expect_message([&] { normalize_text("\xC0\xAF", "overlong.txt"); }, "not valid UTF-8");
    expect_message([&] { normalize_text("\xED\xA0\x80", "surrogate.txt"); }, "not valid UTF-8");
    expect_message([&] { normalize_text("abc\xE2\x82", "cut.txt"); }, "not valid UTF-8");
    expect_message([&] { normalize_text(std::string("\xFF\xFEh\0i\0", 6), "utf16.txt"); }, "UTF-16");
    // Read from a file, the same bytes are Latin-1 / CP-1252 and UTF-16 text.
    QCOMPARE(load_text_file(write("latin1.txt", "ok\nna\xEFve")), std::string("ok\nna\xC3\xAFve"));
    QCOMPARE(load_text_file(write("utf16.txt", std::string("\xFF\xFEh\0i\0", 6))), std::string("hi"));
    expect_message([&] { load_text_file(dir_.path().toStdString()); }, "is a directory");
    expect_message([&] { load_text_file(dir_.filePath("nope.txt").toStdString()); }, "cannot open");
    expect_message([&] { load_text_file(write("big.txt", std::string(2000, 'a')), 1000); }, "more than the limit");
  }
  void loadsFiftyMegabytes() {
    std::string line = "It was the best of times, it was the worst of times \xE2\x80\x94 na\xC3\xAFve.\r\n";
    std::string big;
    big.reserve(52u << 20);
    while (big.size() < (50u << 20)) big += line;
    const std::string text = load_text_file(write("big.txt", big));
    QVERIFY(text.size() > (49u << 20));
    QVERIFY(text.find('\r') == std::string::npos);
  }
};

QTEST_APPLESS_MAIN(TestTextInput)
#include "test_text_input.moc"
