// PDF to text through poppler-cpp, page by page: page numbers and running heads (a first
// or last line repeated on many pages) are dropped, a word hyphenated across a line end is
// joined, lines join into paragraphs, and short title-like lines ("CHAPTER I") become
// chapters as in plain text.
#include "model/book/extractors.h"
#include "model/log.h"
#include "model/text_input.h"

#ifdef MEMMAMBA_WITH_PDF
#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-page.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#endif

namespace memmamba::book_extractors {

#ifdef MEMMAMBA_WITH_PDF

namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\f");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r\f");
  return s.substr(a, b - a + 1);
}

std::vector<std::string> lines_of(const std::string& page) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= page.size()) {
    size_t end = page.find('\n', start);
    if (end == std::string::npos) end = page.size();
    lines.push_back(trim(page.substr(start, end - start)));
    start = end + 1;
  }
  return lines;
}

bool page_number(const std::string& line) {
  if (line.empty() || line.size() > 12) return false;
  std::string core = line;
  core.erase(std::remove_if(core.begin(), core.end(), [](char c) { return c == '-' || c == ' ' || c == '[' || c == ']'; }),
             core.end());
  return !core.empty() && (std::all_of(core.begin(), core.end(), [](unsigned char c) { return std::isdigit(c); }) ||
                           std::all_of(core.begin(), core.end(), [](char c) { return std::strchr("ivxlcdm", c) != nullptr; }));
}

bool ends_sentence(const std::string& line) {
  if (line.empty()) return true;
  const std::string tail = line.substr(line.size() - std::min<size_t>(line.size(), 4));
  for (const char* end : {".", "!", "?", ":", "\"", "\xE2\x80\x9D", "\xE2\x80\x99", ")"})
    if (tail.size() >= std::strlen(end) && tail.compare(tail.size() - std::strlen(end), std::strlen(end), end) == 0) return true;
  return false;
}

}  // namespace

bool pdf_available() { return true; }

Extracted extract_pdf(const std::string& bytes, const std::string& origin) {
  // Poppler's own complaints about a damaged file go to the debug log; the user gets one
  // message from us.
  static const bool quiet = [] {
    poppler::set_debug_error_function([](const std::string& message, void*) { log::debug("poppler: " + message); }, nullptr);
    return true;
  }();
  (void)quiet;
  std::vector<char> data(bytes.begin(), bytes.end());
  std::unique_ptr<poppler::document> doc(poppler::document::load_from_raw_data(data.data(), static_cast<int>(data.size())));
  if (!doc) throw TextError(origin + " is not a readable PDF (damaged or truncated)");
  if (doc->is_locked()) throw TextError(origin + " is an encrypted PDF: open it in a PDF reader, save an unlocked copy, and open that");
  const int pages = doc->pages();
  std::vector<std::vector<std::string>> page_lines;
  for (int i = 0; i < pages; ++i) {
    std::unique_ptr<poppler::page> page(doc->create_page(i));
    if (!page) continue;
    const poppler::byte_array utf8 = page->text().to_utf8();
    std::vector<std::string> lines = lines_of(std::string(utf8.begin(), utf8.end()));
    while (!lines.empty() && lines.back().empty()) lines.pop_back();
    while (!lines.empty() && lines.front().empty()) lines.erase(lines.begin());
    page_lines.push_back(std::move(lines));
  }
  // Running heads: a first or last line that many pages share (page numbers stripped).
  std::map<std::string, int> edge_count;
  for (const auto& lines : page_lines) {
    if (lines.empty()) continue;
    edge_count[lines.front()]++;
    if (lines.size() > 1) edge_count[lines.back()]++;
  }
  const int repeated = std::max(3, static_cast<int>(page_lines.size()) / 4);
  std::vector<std::string> body;
  for (auto& lines : page_lines) {
    for (size_t i = 0; i < lines.size(); ++i) {
      const bool edge = i == 0 || i + 1 == lines.size();
      if (edge && (page_number(lines[i]) || edge_count[lines[i]] >= repeated)) continue;
      body.push_back(lines[i]);
    }
    body.push_back("");  // a page end may end a paragraph; the joiner decides
  }
  // Lines into paragraphs: a blank line, a short line ending a sentence, or a heading-like
  // line ends one; "con-" + "tinued" joins into "continued".
  size_t typical = 0;
  {
    std::vector<size_t> lengths;
    for (const std::string& l : body)
      if (!l.empty()) lengths.push_back(l.size());
    if (!lengths.empty()) {
      std::nth_element(lengths.begin(), lengths.begin() + lengths.size() / 2, lengths.end());
      typical = lengths[lengths.size() / 2];
    }
  }
  std::string text, paragraph;
  auto flush = [&] {
    if (paragraph.empty()) return;
    text += paragraph + "\n\n";
    paragraph.clear();
  };
  for (size_t i = 0; i < body.size(); ++i) {
    const std::string& line = body[i];
    if (line.empty()) {
      // A page break inside a sentence does not end the paragraph.
      if (!paragraph.empty() && ends_sentence(paragraph)) flush();
      continue;
    }
    const bool heading = line.size() < 60 && (line.rfind("CHAPTER", 0) == 0 || line.rfind("Chapter ", 0) == 0 ||
                                              line.rfind("BOOK ", 0) == 0 || line.rfind("PART ", 0) == 0);
    if (heading) {
      flush();
      text += line + "\n\n";
      continue;
    }
    if (!paragraph.empty()) {
      const unsigned char next = static_cast<unsigned char>(line[0]);
      if (paragraph.back() == '-' && paragraph.size() > 1 && std::isalpha(static_cast<unsigned char>(paragraph[paragraph.size() - 2])) &&
          std::islower(next)) {
        paragraph.pop_back();
      } else {
        paragraph += ' ';
      }
    }
    paragraph += line;
    if (line.size() * 10 < typical * 7 && ends_sentence(line)) flush();
  }
  flush();
  if (text.find_first_not_of(" \n") == std::string::npos)
    throw TextError(origin + " has no text layer (" + std::to_string(pages) +
                    " pages of images: a scanned PDF needs OCR before it can be read)");
  while (text.size() > 1 && text[text.size() - 2] == '\n') text.pop_back();
  Extracted e;
  e.chapters = find_text_chapters(text);
  e.text = std::move(text);
  return e;
}

#else

bool pdf_available() { return false; }

Extracted extract_pdf(const std::string&, const std::string& origin) {
  throw TextError(origin + " is a PDF, and this build cannot read PDF (built without poppler-cpp)");
}

#endif

}  // namespace memmamba::book_extractors
