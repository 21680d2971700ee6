#include "model/book/book.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <set>

#include "model/book/extractors.h"
#include "model/file_io.h"
#include "model/text_input.h"
#include "model/utf8.h"

namespace memmamba {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string extension_of(const std::string& origin) {
  const auto slash = origin.find_last_of("/\\");
  const auto dot = origin.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  return lower(origin.substr(dot + 1));
}

bool starts_with(const std::string& s, const char* prefix) { return s.compare(0, std::strlen(prefix), prefix) == 0; }

// The first non-space bytes of a text, lower-cased, to tell HTML from plain text.
std::string head_of(const std::string& bytes) {
  size_t i = 0;
  if (starts_with(bytes, "\xEF\xBB\xBF")) i = 3;
  while (i < bytes.size() && std::isspace(static_cast<unsigned char>(bytes[i]))) ++i;
  return lower(bytes.substr(i, 64));
}

// CP-1252's 0x80-0x9F; its five unassigned bytes keep their Latin-1 (C1 control) meaning.
constexpr uint16_t kCp1252High[32] = {0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
                                      0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
                                      0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
                                      0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

void decode_single_byte(const std::string& bytes, size_t start, bool cp1252, const std::string& origin, std::string& out) {
  out.reserve(bytes.size() + bytes.size() / 8);
  for (size_t i = start; i < bytes.size(); ++i) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    if (b == 0)
      throw TextError(origin + " looks like a binary file (a NUL byte at offset " + std::to_string(i) +
                      "); if it is UTF-16 without a byte-order mark, pass --encoding utf-16le or utf-16be");
    append_utf8(cp1252 && b >= 0x80 && b < 0xA0 ? kCp1252High[b - 0x80] : b, out);
  }
}

void decode_utf16(const std::string& bytes, size_t start, bool little_endian, const std::string& origin, std::string& out) {
  if ((bytes.size() - start) % 2 != 0) throw TextError(origin + " is not UTF-16: it holds an odd number of bytes");
  out.reserve(bytes.size() / 2);
  auto unit = [&](size_t i) {
    const auto a = static_cast<unsigned char>(bytes[i]), b = static_cast<unsigned char>(bytes[i + 1]);
    return static_cast<uint32_t>(little_endian ? (a | (b << 8)) : ((a << 8) | b));
  };
  for (size_t i = start; i < bytes.size(); i += 2) {
    uint32_t cp = unit(i);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      const uint32_t low = i + 3 < bytes.size() ? unit(i + 2) : 0;
      if (low < 0xDC00 || low > 0xDFFF)
        throw TextError(origin + " is not valid UTF-16: an unpaired surrogate at offset " + std::to_string(i));
      cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
      i += 2;
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      throw TextError(origin + " is not valid UTF-16: an unpaired surrogate at offset " + std::to_string(i));
    }
    append_utf8(cp, out);
  }
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t len = utf8_sequence_length(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

bool blank_line(const std::string& text, size_t begin, size_t end) {
  for (size_t i = begin; i < end; ++i)
    if (!std::isspace(static_cast<unsigned char>(text[i]))) return false;
  return true;
}

bool roman_or_number(const std::string& w) {
  if (w.empty()) return false;
  if (std::all_of(w.begin(), w.end(), [](unsigned char c) { return std::isdigit(c); })) return true;
  return std::all_of(w.begin(), w.end(), [](char c) { return std::strchr("IVXLCDMivxlcdm", c) != nullptr; });
}

bool number_word(const std::string& w) {
  static const char* kWords[] = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                                 "eleven", "twelve", "first", "second", "third", "last", "the"};
  const std::string l = lower(w);
  for (const char* k : kWords)
    if (l.rfind(k, 0) == 0) return true;
  return false;
}

// Markdown with its markup dropped: emphasis markers, links to their text, images, heading
// hashes (the heading stays as a line of its own).
std::string strip_markdown_markup(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  bool line_start = true;
  while (i < text.size()) {
    const char c = text[i];
    if (line_start) {
      size_t j = i;
      while (j < text.size() && text[j] == '#') ++j;
      if (j > i && j - i <= 6 && j < text.size() && text[j] == ' ') { i = j + 1; line_start = false; continue; }
    }
    line_start = c == '\n';
    if (c == '!' && i + 1 < text.size() && text[i + 1] == '[') {  // an image: dropped with its alt text
      const size_t close = text.find("](", i);
      const size_t end = close == std::string::npos ? std::string::npos : text.find(')', close);
      if (end != std::string::npos && text.find('\n', i) > end) { i = end + 1; continue; }
    }
    if (c == '[') {  // a link: its text
      const size_t close = text.find("](", i);
      const size_t end = close == std::string::npos ? std::string::npos : text.find(')', close);
      if (end != std::string::npos && text.find('\n', i) > end) {
        out.append(text, i + 1, close - i - 1);
        i = end + 1;
        continue;
      }
    }
    if (c == '*' || c == '`' || (c == '_' && (i == 0 || !std::isalnum(static_cast<unsigned char>(text[i - 1]))))) {
      ++i;
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

std::vector<Chapter> markdown_chapters(const std::string& text) {
  std::vector<Chapter> chapters;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    size_t j = begin;
    while (j < end && text[j] == '#') ++j;
    if (j > begin && j - begin <= 2 && j < end && text[j] == ' ')
      chapters.push_back({text.substr(j + 1, end - j - 1), static_cast<int64_t>(begin)});
    begin = end + 1;
  }
  return chapters;
}

// What normalize_text would still change in a finished text (byte-order marks left at the
// front by a cut, carriage returns from an extractor) is removed here, the chapters' offsets
// moved along; then normalize_text checks the rest and must leave it as it is.
void settle(BookText& book, const std::string& origin) {
  std::string out;
  out.reserve(book.text.size());
  std::vector<int64_t> removed_before(book.text.size() + 1, 0);
  int64_t removed = 0;
  size_t i = 0;
  while (book.text.compare(i, 3, "\xEF\xBB\xBF") == 0) {
    for (size_t k = 0; k < 3; ++k) removed_before[i + k] = removed + static_cast<int64_t>(k);
    i += 3;
    removed += 3;
  }
  for (; i < book.text.size(); ++i) {
    removed_before[i] = removed;
    if (book.text[i] == '\r') { ++removed; continue; }
    out += book.text[i];
  }
  removed_before[book.text.size()] = removed;
  for (Chapter& c : book.chapters)
    if (c.char_begin >= 0 && c.char_begin <= static_cast<int64_t>(book.text.size())) c.char_begin -= removed_before[c.char_begin];
  book.text = normalize_text(out, origin);
}

void check_chapters(BookText& book) {
  std::vector<Chapter> kept;
  for (Chapter& c : book.chapters) {
    if (c.char_begin < 0 || c.char_begin >= static_cast<int64_t>(book.text.size())) continue;
    if (!kept.empty() && c.char_begin <= kept.back().char_begin) continue;
    kept.push_back(std::move(c));
  }
  book.chapters = std::move(kept);
}

}  // namespace

BookOptions BookOptions::from_record(const Json& book_record) {
  BookOptions o;
  if (!book_record.is_object() || !book_record.contains("options") || !book_record.at("options").is_object()) return o;
  const Json& j = book_record.at("options");
  if (j.contains("encoding") && j.at("encoding").is_string()) o.encoding = j.at("encoding").as_string();
  if (j.contains("keep_boilerplate") && j.at("keep_boilerplate").is_bool()) o.keep_boilerplate = j.at("keep_boilerplate").as_bool();
  if (j.contains("strip_markdown") && j.at("strip_markdown").is_bool()) o.strip_markdown = j.at("strip_markdown").as_bool();
  return o;
}

Json BookText::record(const std::vector<int64_t>& token_char_end) const {
  Json j = Json::object();
  j["format"] = format;
  j["encoding"] = encoding;
  j["boilerplate_removed"] = boilerplate_removed;
  j["options"] = Json::object();
  j["options"]["encoding"] = options.encoding;
  j["options"]["keep_boilerplate"] = options.keep_boilerplate;
  j["options"]["strip_markdown"] = options.strip_markdown;
  Json list = Json::array();
  for (const Chapter& c : chapters) {
    // The token holding the chapter's first byte: the first that ends after it.
    const auto it = std::upper_bound(token_char_end.begin(), token_char_end.end(), c.char_begin);
    if (it == token_char_end.end()) break;
    Json entry = Json::object();
    entry["title"] = c.title;
    entry["char_begin"] = c.char_begin;
    entry["token_begin"] = static_cast<int64_t>(it - token_char_end.begin());
    list.push_back(entry);
  }
  j["chapters"] = list;
  return j;
}

std::string decode_to_utf8(const std::string& bytes, const std::string& encoding_in, const std::string& origin,
                           std::string& out) {
  const std::string encoding = lower(encoding_in);
  const bool bom8 = starts_with(bytes, "\xEF\xBB\xBF");
  const bool bom_le = starts_with(bytes, "\xFF\xFE"), bom_be = starts_with(bytes, "\xFE\xFF");
  out.clear();
  if (encoding == "auto") {
    if (bom_le) { decode_utf16(bytes, 2, true, origin, out); return "utf-16le"; }
    if (bom_be) { decode_utf16(bytes, 2, false, origin, out); return "utf-16be"; }
    // Text has no NUL bytes; UTF-16 without a byte-order mark has one in every other byte.
    if (const void* nul = std::memchr(bytes.data(), 0, std::min<size_t>(bytes.size(), 1 << 16)))
      throw TextError(origin + " looks like a binary file (a NUL byte at offset " +
                      std::to_string(static_cast<const char*>(nul) - bytes.data()) +
                      "), not text; if it is UTF-16 without a byte-order mark, pass --encoding utf-16le or utf-16be");
    if (valid_utf8(bytes)) { out = bytes; return bom8 ? "utf-8 (BOM)" : "utf-8"; }
    // Not UTF-8 as a whole. If parts of it are UTF-8 (multi-byte sequences that decode), the
    // file mixes encodings and neither reading is right: say where, instead of guessing.
    size_t first_utf8 = std::string::npos, first_bad = std::string::npos;
    for (size_t i = 0; i < bytes.size();) {
      if (static_cast<unsigned char>(bytes[i]) < 0x80) { ++i; continue; }
      if (const size_t len = utf8_sequence_length(bytes, i); len > 0) {
        if (first_utf8 == std::string::npos) first_utf8 = i;
        i += len;
      } else {
        if (first_bad == std::string::npos) first_bad = i;
        ++i;
      }
    }
    if (first_utf8 != std::string::npos && first_bad != std::string::npos) {
      const auto b = static_cast<unsigned char>(bytes[first_bad]);
      throw TextError(origin + " mixes encodings: UTF-8 characters (the first at offset " + std::to_string(first_utf8) +
                      ") and bytes that are not UTF-8 (0x" + std::string(1, "0123456789ABCDEF"[b >> 4]) +
                      std::string(1, "0123456789ABCDEF"[b & 0xF]) + " at offset " + std::to_string(first_bad) +
                      "); fix the file, or pass --encoding cp1252 to read every byte as one character");
    }
    decode_single_byte(bytes, 0, true, origin, out);
    return "cp1252";
  }
  if (encoding == "utf-8" || encoding == "utf8") {
    out = bytes;  // normalize_text reports where it is not UTF-8
    return "utf-8";
  }
  if (encoding == "utf-16le" || encoding == "utf-16be" || encoding == "utf-16") {
    const bool le = encoding == "utf-16le" || (encoding == "utf-16" && !bom_be);
    decode_utf16(bytes, (bom_le && le) || (bom_be && !le) ? 2 : 0, le, origin, out);
    return le ? "utf-16le" : "utf-16be";
  }
  if (encoding == "latin-1" || encoding == "latin1" || encoding == "iso-8859-1") {
    decode_single_byte(bytes, 0, false, origin, out);
    return "latin-1";
  }
  if (encoding == "cp1252" || encoding == "windows-1252") {
    decode_single_byte(bytes, 0, true, origin, out);
    return "cp1252";
  }
  throw TextError("unknown encoding \"" + encoding_in + "\" (use auto, utf-8, utf-16le, utf-16be, latin-1 or cp1252)");
}

bool strip_gutenberg_boilerplate(std::string& text) {
  auto marker = [&](const char* what, size_t from) -> size_t {
    // "*** START OF THE PROJECT GUTENBERG EBOOK ..." and older "*** START OF THIS PROJECT GUTENBERG ...".
    for (size_t at = text.find("*** " + std::string(what) + " OF TH", from); at != std::string::npos;
         at = text.find("*** " + std::string(what) + " OF TH", at + 1)) {
      const size_t line_end = text.find('\n', at);
      const std::string line = text.substr(at, (line_end == std::string::npos ? text.size() : line_end) - at);
      if (line.find("PROJECT GUTENBERG") != std::string::npos) return at;
    }
    return std::string::npos;
  };
  const size_t start = marker("START", 0);
  if (start == std::string::npos) return false;
  const size_t body = text.find('\n', start);
  if (body == std::string::npos) return false;
  size_t end = marker("END", body);
  if (end == std::string::npos) end = text.size();
  std::string inner = text.substr(body + 1, end - body - 1);
  // Blank lines around the body are the boilerplate's, not the book's.
  const size_t first = inner.find_first_not_of(" \t\n");
  const size_t last = inner.find_last_not_of(" \t\n");
  if (first == std::string::npos) return false;  // nothing between the markers: keep the file as it is
  text = inner.substr(first, last - first + 1) + "\n";
  return true;
}

// The value of an upper-case Roman numeral of at most eight letters ("XIV" 14), 0 if it is none.
int roman_value(const std::string& w) {
  if (w.empty() || w.size() > 8) return 0;
  auto digit = [](char c) {
    switch (c) {
      case 'I': return 1;
      case 'V': return 5;
      case 'X': return 10;
      case 'L': return 50;
      case 'C': return 100;
      default: return 0;
    }
  };
  int value = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const int d = digit(w[i]);
    if (d == 0) return 0;
    value += i + 1 < w.size() && d < digit(w[i + 1]) ? -d : d;
  }
  return value > 0 ? value : 0;
}

// Where the line that starts at byte `begin` ends (its newline, or the text's end).
size_t line_end(const std::string& text, size_t begin) {
  const size_t end = text.find('\n', begin);
  return end == std::string::npos ? text.size() : end;
}

// A heading's word and number, lower case: "chapter xxvi" for "CHAPTER XXVI. The Haunted House".
std::string heading_key(const std::string& title) {
  std::string key;
  int words = 0;
  for (size_t i = 0; i < title.size() && words < 2; ++i) {
    const char c = title[i];
    if (c == ' ' || c == '.' || c == ':') {
      if (!key.empty() && key.back() != ' ') { key += ' '; ++words; }
      continue;
    }
    key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  while (!key.empty() && key.back() == ' ') key.pop_back();
  return key;
}

// A Roman numeral alone on its line between blank lines ("I", "XII."): [begin, end) the line.
struct Numeral {
  int value;
  std::string text;  // without a trailing full stop
  size_t begin, end;
};

// Sections headed by numerals alone on their lines, as The Time Machine and The War of the
// Worlds have them: a numeral counts as a heading only where it continues the count (one more
// than the last, or I again for a new part), and a book needs three of them, the last in its
// second half. A short line on its own after the numeral, past at most three blank lines, is
// its title ("I. Introduction").
std::vector<Chapter> numbered_sections(const std::string& text, const std::vector<Numeral>& numerals) {
  std::vector<Chapter> sections;
  int last = 0;
  for (const Numeral& n : numerals) {
    if (n.value != last + 1 && n.value != 1) continue;
    last = n.value;
    std::string title = n.text;
    size_t begin = n.end + 1;
    for (int blanks = 0; begin < text.size() && blanks < 3 && blank_line(text, begin, line_end(text, begin)); ++blanks)
      begin = line_end(text, begin) + 1;
    if (begin < text.size() && !blank_line(text, begin, line_end(text, begin))) {
      const size_t end = line_end(text, begin);
      const bool alone = end >= text.size() || blank_line(text, end + 1, line_end(text, end + 1));
      size_t a = begin, b = end;
      while (a < b && std::isspace(static_cast<unsigned char>(text[a]))) ++a;
      while (b > a && std::isspace(static_cast<unsigned char>(text[b - 1]))) --b;
      if (alone && b - a <= 40) title += ". " + text.substr(a, b - a);
    }
    sections.push_back({title, static_cast<int64_t>(n.begin)});
  }
  // Numbered sections of one story at the start of a collection are not the book's outline.
  if (sections.size() < 3 || static_cast<size_t>(sections.back().char_begin) < text.size() / 2) sections.clear();
  return sections;
}

std::vector<Chapter> find_text_chapters(const std::string& text) {
  // Every line that names a heading ("CHAPTER XXVI. The Haunted House"): a contents entry or a
  // heading. The heading word must be capitalised as headings are ("CHAPTER", "Chapter") and
  // stand before a number, so that a sentence starting with "Part of" is not one.
  struct Named {
    Chapter chapter;
    std::string key;  // heading_key
    bool heading;     // set apart as a book's headings are
  };
  std::vector<Named> named;
  std::vector<Numeral> numerals;
  size_t begin = 0;
  bool previous_blank = true;
  while (begin < text.size()) {
    const size_t end = line_end(text, begin);
    const bool blank = blank_line(text, begin, end);
    if (!blank && end - begin <= 80) {
      const bool next_blank = end >= text.size() || blank_line(text, end + 1, line_end(text, end + 1));
      size_t i = begin;
      while (i < end && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
      const std::string line = text.substr(i, end - i);
      std::string title = line;
      while (!title.empty() && std::isspace(static_cast<unsigned char>(title.back()))) title.pop_back();
      const size_t space = line.find(' ');
      const std::string first = line.substr(0, space);
      const std::string rest = space == std::string::npos ? "" : line.substr(space + 1);
      const std::string second = rest.substr(0, rest.find_first_of(" .:—-"));
      const std::string key = lower(first);
      const bool heading_word = key == "chapter" || key == "book" || key == "part" || key == "volume" || key == "letter" ||
                                key == "canto" || key == "stave" || key == "adventure";
      if (heading_word && std::isupper(static_cast<unsigned char>(first[0])) && (roman_or_number(second) || number_word(second))) {
        // A heading stands apart: after a blank line, and before one unless it is short or in
        // capitals (a long title in capitals may wrap onto the next line).
        const bool capitals = std::none_of(first.begin(), first.end(), [](char c) { return std::islower(static_cast<unsigned char>(c)); });
        named.push_back({{title, static_cast<int64_t>(i)}, heading_key(title), previous_blank && (next_blank || rest.size() < 60 || capitals)});
      } else if (previous_blank && next_blank) {
        std::string numeral = title;
        if (!numeral.empty() && numeral.back() == '.') numeral.pop_back();
        if (const int value = roman_value(numeral)) numerals.push_back({value, numeral, i, end});
      }
    }
    previous_blank = blank;
    begin = end + 1;
  }
  // A table of contents is a run of named headings a line or two apart which the book names
  // again later. A run of kContentsRun or more (each within kContentsGap bytes of the next, up
  // to the first that the run already named) goes whole when most of its names come again
  // later: so does an entry whose chapter lost its own heading in the text, which the rule
  // below would keep. A book's own stack of headings ("PART I", "Book I", "Chapter I") is shorter.
  constexpr int64_t kContentsGap = 300;
  constexpr size_t kContentsRun = 5;
  std::map<std::string, size_t> last_named;  // key -> index of its last entry in `named`
  for (size_t c = 0; c < named.size(); ++c) last_named[named[c].key] = c;
  std::vector<Chapter> listed;
  std::vector<std::string> listed_keys;
  for (size_t a = 0; a < named.size();) {
    std::set<std::string> run{named[a].key};
    size_t b = a + 1;
    while (b < named.size() && named[b].chapter.char_begin - named[b - 1].chapter.char_begin < kContentsGap &&
           run.insert(named[b].key).second)
      ++b;
    auto named_later = [&](const std::string& key) { return last_named[key] >= b; };
    const auto later = static_cast<size_t>(std::count_if(run.begin(), run.end(), named_later));
    const bool contents = b - a >= kContentsRun && 2 * later > run.size();
    // Where the book's text follows its contents at once, the run ends at the first heading it
    // named again; the headings just before that one which are not named again are the book's
    // own ("BOOK ONE: 1805" above the second "CHAPTER I").
    size_t own = b;
    if (contents && b < named.size() && named[b].chapter.char_begin - named[b - 1].chapter.char_begin < kContentsGap)
      while (own > a && !named_later(named[own - 1].key)) --own;
    for (size_t c = a; c < b; ++c)
      if (named[c].heading && (!contents || c >= own)) {
        listed.push_back(named[c].chapter);
        listed_keys.push_back(named[c].key);
      }
    a = b;
  }
  // A contents list the rule above does not see ("CHAPTER XXXV. A New Order of Things" above a
  // plain "CHAPTER XXXV"): where a heading's word and number come again later, the later one
  // is the chapter.
  std::map<std::string, size_t> last_listed;
  for (size_t c = 0; c < listed.size(); ++c) last_listed[listed_keys[c]] = c;
  std::vector<Chapter> kept;
  for (size_t a = 0; a < listed.size(); ++a)
    if (last_listed[listed_keys[a]] == a) kept.push_back(listed[a]);
  return kept.empty() ? numbered_sections(text, numerals) : kept;
}

std::vector<std::string> book_formats_available() {
  std::vector<std::string> formats;
  if (book_extractors::html_available()) formats.push_back("html");
  if (book_extractors::epub_available()) formats.push_back("epub");
  if (book_extractors::pdf_available()) formats.push_back("pdf");
  return formats;
}

BookText book_from_bytes(const std::string& bytes, const std::string& origin, const BookOptions& options) {
  BookText book;
  book.options = options;
  const std::string ext = extension_of(origin);
  const std::string head = head_of(bytes);
  if (starts_with(bytes, "PK\x03\x04") || ext == "epub") {
    book.format = "epub";
    book_extractors::Extracted e = book_extractors::extract_epub(bytes, origin);
    book.text = std::move(e.text);
    book.chapters = std::move(e.chapters);
    book.encoding = "utf-8";
  } else if (starts_with(bytes, "%PDF-") || ext == "pdf") {
    book.format = "pdf";
    book_extractors::Extracted e = book_extractors::extract_pdf(bytes, origin);
    book.text = std::move(e.text);
    book.chapters = std::move(e.chapters);
    book.encoding = "utf-8";
  } else {
    std::string decoded;
    book.encoding = decode_to_utf8(bytes, options.encoding, origin, decoded);
    const std::string dhead = head_of(decoded);
    if (ext == "html" || ext == "htm" || ext == "xhtml" || dhead.rfind("<!doctype html", 0) == 0 ||
        dhead.rfind("<html", 0) == 0 || (dhead.rfind("<?xml", 0) == 0 && decoded.find("<html") != std::string::npos)) {
      book.format = "html";
      book_extractors::Extracted e = book_extractors::extract_html(decoded, origin);
      book.text = std::move(e.text);
      book.chapters = std::move(e.chapters);
    } else {
      book.format = ext == "md" || ext == "markdown" ? "markdown" : "text";
      book.text = normalize_text(decoded, origin);
      if (!options.keep_boilerplate) book.boilerplate_removed = strip_gutenberg_boilerplate(book.text);
      if (book.format == "markdown") {
        if (options.strip_markdown) book.text = strip_markdown_markup(book.text);
        book.chapters = markdown_chapters(book.text);
      } else {
        book.chapters = find_text_chapters(book.text);
      }
      settle(book, origin);
      check_chapters(book);
      return book;
    }
  }
  // Extracted formats: one normalisation at the end (their offsets are made on normalised text).
  if (book.text.find_first_not_of(" \t\n") == std::string::npos)
    throw TextError(origin + " holds no text (" + book.format + " with nothing readable in it)");
  if (!options.keep_boilerplate && book.text.find("PROJECT GUTENBERG") != std::string::npos) {
    // Gutenberg EPUBs carry the licence as pages of their own: cut by the same markers, and
    // the chapters after the cut move with it.
    const size_t start = book.text.find("*** START OF TH");
    std::string copy = book.text;
    if (start != std::string::npos && strip_gutenberg_boilerplate(copy)) {
      const size_t body = book.text.find('\n', start) + 1;
      const size_t shift = book.text.find_first_not_of(" \t\n", body);
      for (Chapter& c : book.chapters) c.char_begin -= static_cast<int64_t>(shift);
      book.text = std::move(copy);
      book.boilerplate_removed = true;
    }
  }
  settle(book, origin);
  check_chapters(book);
  return book;
}

BookText load_book(const std::string& path, const BookOptions& options) {
  std::string bytes;
  try {
    bytes = read_file(path, kMaxTextBytes);
  } catch (const FileError& e) {
    throw TextError(e.what());
  }
  return book_from_bytes(bytes, path, options);
}

}  // namespace memmamba
