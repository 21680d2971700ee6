// HTML and XHTML to text with libxml2's HTML parser (it reads XHTML too): block elements
// end paragraphs, scripts, styles and other non-text are dropped, whitespace collapses
// (except in <pre>), and h1-h3 headings become chapters.
#include "model/book/extractors.h"
#include "model/text_input.h"

#ifdef MEMMAMBA_WITH_LIBXML2
#include <libxml/HTMLparser.h>
#include <libxml/tree.h>

#include <cstring>
#include <limits>
#include <memory>
#endif

namespace memmamba::book_extractors {

void append_extracted(Extracted& into, Extracted add) {
  if (add.text.find_first_not_of(" \t\n") == std::string::npos) return;
  if (!into.text.empty()) {
    while (!into.text.empty() && into.text.back() == '\n') into.text.pop_back();
    into.text += "\n\n";
  }
  const auto shift = static_cast<int64_t>(into.text.size());
  for (Chapter& c : add.chapters) into.chapters.push_back({std::move(c.title), c.char_begin + shift});
  into.text += add.text;
}

#ifdef MEMMAMBA_WITH_LIBXML2

namespace {

bool one_of(const char* name, std::initializer_list<const char*> names) {
  for (const char* n : names)
    if (std::strcmp(name, n) == 0) return true;
  return false;
}

class TextWriter {
 public:
  void text(const char* s, bool preformatted) {
    for (const char* p = s; *p; ++p) {
      const char c = *p;
      if (!preformatted && (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f')) {
        pending_space_ = !out_.empty() && out_.back() != '\n';
        continue;
      }
      if (c == '\r') continue;
      if (pending_space_) out_ += ' ';
      pending_space_ = false;
      out_ += c;
    }
  }
  void line_break() {
    pending_space_ = false;
    if (!out_.empty() && out_.back() != '\n') out_ += '\n';
  }
  void paragraph_break() {
    pending_space_ = false;
    if (out_.empty()) return;
    while (!out_.empty() && out_.back() == ' ') out_.pop_back();
    if (out_.back() != '\n') out_ += '\n';
    if (out_.size() < 2 || out_[out_.size() - 2] != '\n') out_ += '\n';
  }
  int64_t position() const { return static_cast<int64_t>(out_.size()); }
  std::string& out() { return out_; }

 private:
  std::string out_;
  bool pending_space_ = false;
};

std::string node_text(xmlNode* node) {
  std::string s;
  for (xmlNode* n = node; n; n = n->next) {
    if (n->type == XML_TEXT_NODE && n->content) s += reinterpret_cast<const char*>(n->content);
    if (n->type == XML_ELEMENT_NODE && n->children) s += node_text(n->children);
  }
  return s;
}

std::string collapse(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') { space = !out.empty(); continue; }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

void walk(xmlNode* node, TextWriter& w, std::vector<Chapter>& chapters, bool preformatted) {
  for (xmlNode* n = node; n; n = n->next) {
    if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
      if (n->content) w.text(reinterpret_cast<const char*>(n->content), preformatted);
      continue;
    }
    if (n->type != XML_ELEMENT_NODE) continue;
    const char* name = reinterpret_cast<const char*>(n->name);
    if (one_of(name, {"script", "style", "head", "noscript", "template", "svg", "math", "iframe", "object", "button",
                      "select", "nav"}))
      continue;
    if (one_of(name, {"br"})) { w.line_break(); continue; }
    const bool block = one_of(name, {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "section",
                                     "article", "pre", "hr", "dd", "dt", "table", "tr", "ul", "ol", "dl", "header",
                                     "footer", "figure", "figcaption", "aside", "main", "body", "address", "center"});
    if (block) w.paragraph_break();
    if (one_of(name, {"h1", "h2", "h3"})) {
      const std::string title = collapse(node_text(n->children));
      if (!title.empty()) chapters.push_back({title, w.position()});
    }
    if (n->children) walk(n->children, w, chapters, preformatted || one_of(name, {"pre"}));
    if (block) w.paragraph_break();
    else if (one_of(name, {"td", "th"})) w.text(" ", false);
  }
}

}  // namespace

bool html_available() { return true; }

Extracted extract_html(const std::string& html, const std::string& origin) {
  if (html.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw TextError(origin + " is too large for the HTML parser");
  std::unique_ptr<xmlDoc, void (*)(xmlDocPtr)> doc(
      htmlReadMemory(html.data(), static_cast<int>(html.size()), nullptr, "UTF-8",
                     HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET | HTML_PARSE_NOBLANKS),
      xmlFreeDoc);
  if (!doc) throw TextError(origin + " could not be read as HTML");
  xmlNode* root = xmlDocGetRootElement(doc.get());
  if (!root) throw TextError(origin + " is HTML without a document element");
  TextWriter writer;
  Extracted e;
  walk(root, writer, e.chapters, false);
  std::string& out = writer.out();
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (!out.empty()) out += '\n';
  e.text = std::move(out);
  return e;
}

#else

bool html_available() { return false; }

Extracted extract_html(const std::string&, const std::string& origin) {
  throw TextError(origin + " is HTML, and this build cannot read HTML (built without libxml2)");
}

#endif

}  // namespace memmamba::book_extractors
