// Text out of structured formats, each behind a library that a build may lack (the GPU
// machine builds the model library without them): HTML through libxml2, EPUB through
// libzip and libxml2, PDF through poppler-cpp. Without its library a format throws a
// TextError that says so.
#pragma once
#include <string>
#include <vector>

#include "model/book/book.h"

namespace memmamba::book_extractors {

struct Extracted {
  std::string text;  // UTF-8, LF line ends, paragraphs separated by a blank line
  std::vector<Chapter> chapters;
};

bool html_available();
bool epub_available();
bool pdf_available();

// html: UTF-8 HTML or XHTML.
Extracted extract_html(const std::string& html, const std::string& origin);
Extracted extract_epub(const std::string& bytes, const std::string& origin);
Extracted extract_pdf(const std::string& bytes, const std::string& origin);

// Appends `add` (one document's text and chapters) to `into`, a blank line between them.
void append_extracted(Extracted& into, Extracted add);

}  // namespace memmamba::book_extractors
