// Opening the books people have: plain text in any common encoding, Project Gutenberg
// files (their licence header and footer skipped), Markdown, HTML and XHTML, EPUB and PDF.
// Every format ends as normalised UTF-8 text (LF line ends) with the chapters found in it,
// and a record of how the text was made, so that a trace can say so and a re-run can
// reproduce the same tokens. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/json.h"

namespace memmamba {

struct Chapter {
  std::string title;
  int64_t char_begin = 0;  // byte offset into BookText::text
};

struct BookOptions {
  std::string encoding = "auto";   // auto, utf-8, utf-16le, utf-16be, latin-1, cp1252
  bool keep_boilerplate = false;   // keep a Project Gutenberg file's licence header and footer
  bool strip_markdown = false;     // Markdown: drop its markup (headings stay as lines)
  // The options a trace recorded (run_info "book", see BookText::record); defaults for
  // anything missing or malformed.
  static BookOptions from_record(const Json& book_record);
};

struct BookText {
  std::string text;                // normalised UTF-8
  std::string format;              // text, markdown, html, epub, pdf
  std::string encoding;            // the encoding the bytes were read in (utf-8 for EPUB/PDF)
  bool boilerplate_removed = false;
  std::vector<Chapter> chapters;   // in text order
  BookOptions options;
  // As a trace records it (run_info "book"): format, encoding, boilerplate, options, and
  // the chapters with the token holding each one's first byte, given where each token
  // ends in `text` (chapters after the last token are left out).
  Json record(const std::vector<int64_t>& token_char_end) const;
};

// Reads and extracts a book; throws TextError (model/text_input.h) naming the problem.
BookText load_book(const std::string& path, const BookOptions& options = {});
// The same from bytes in memory; `origin` names them in messages and its extension
// helps to tell HTML and Markdown from plain text.
BookText book_from_bytes(const std::string& bytes, const std::string& origin, const BookOptions& options = {});

// What this build can open beyond text and Markdown ("html", "epub", "pdf").
std::vector<std::string> book_formats_available();

// Decodes bytes in `encoding` (or detects it: a BOM, else UTF-8 when valid, else CP-1252)
// into UTF-8; returns the name of the encoding used. Throws TextError for bytes that
// cannot be text in the chosen encoding.
std::string decode_to_utf8(const std::string& bytes, const std::string& encoding, const std::string& origin,
                           std::string& utf8_out);

// A Project Gutenberg file's text between its START and END markers; false when the
// markers are absent (the text is left as it is).
bool strip_gutenberg_boilerplate(std::string& text);

// Chapter headings in plain text: short lines such as "CHAPTER IV", "Chapter 12. The
// Storm", "BOOK II" or "PART ONE" standing alone between blank lines.
std::vector<Chapter> find_text_chapters(const std::string& text);

}  // namespace memmamba
