// EPUB to text: the zip's container names the package document, whose spine gives the
// reading order of the XHTML documents; each is read as HTML (html_text.cpp). Reads are
// bounded, so a zip bomb is refused instead of filling memory.
#include "model/book/extractors.h"
#include "model/text_input.h"

#ifdef MEMMAMBA_WITH_EPUB
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <zip.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#endif

namespace memmamba::book_extractors {

#ifdef MEMMAMBA_WITH_EPUB

namespace {

constexpr uint64_t kMaxEntryBytes = 64ull << 20;   // one document of the book
constexpr uint64_t kMaxBookBytes = 512ull << 20;   // all of them together

struct Zip {
  zip_t* archive = nullptr;
  ~Zip() {
    if (archive) zip_discard(archive);
  }
};

std::string read_entry(zip_t* archive, const std::string& name, const std::string& origin, uint64_t& budget) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat(archive, name.c_str(), 0, &st) != 0)
    throw TextError(origin + ": the EPUB names \"" + name + "\", which is not in the file");
  std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> file(zip_fopen(archive, name.c_str(), 0), zip_fclose);
  if (!file) throw TextError(origin + ": \"" + name + "\" in the EPUB cannot be read (" + zip_strerror(archive) + ")");
  std::string out;
  char buffer[1 << 16];
  for (;;) {
    const zip_int64_t n = zip_fread(file.get(), buffer, sizeof buffer);
    if (n < 0) throw TextError(origin + ": \"" + name + "\" in the EPUB is damaged (" + zip_file_strerror(file.get()) + ")");
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
    if (out.size() > kMaxEntryBytes || out.size() > budget)
      throw TextError(origin + ": \"" + name + "\" unpacks to more than " + std::to_string(std::min(kMaxEntryBytes, budget) >> 20) +
                      " MiB (a zip bomb?); refused");
  }
  budget -= out.size();
  return out;
}

using XmlDoc = std::unique_ptr<xmlDoc, void (*)(xmlDocPtr)>;

XmlDoc parse_xml(const std::string& bytes, const std::string& what) {
  XmlDoc doc(xmlReadMemory(bytes.data(), static_cast<int>(bytes.size()), nullptr, nullptr,
                           XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_RECOVER),
             xmlFreeDoc);
  if (!doc || !xmlDocGetRootElement(doc.get())) throw TextError(what + " is not readable XML");
  return doc;
}

std::string attribute(xmlNode* n, const char* name) {
  xmlChar* v = xmlGetProp(n, reinterpret_cast<const xmlChar*>(name));
  if (!v) return "";
  std::string s(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return s;
}

// Elements by local name anywhere below `node` (namespaces vary between EPUB versions).
void find_all(xmlNode* node, const char* local, std::vector<xmlNode*>& out) {
  for (xmlNode* n = node; n; n = n->next) {
    if (n->type == XML_ELEMENT_NODE && std::strcmp(reinterpret_cast<const char*>(n->name), local) == 0) out.push_back(n);
    if (n->children) find_all(n->children, local, out);
  }
}

std::string url_decode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// `href` relative to the directory of `base` ("OEBPS/content.opf"), with "." and ".." resolved.
std::string resolve(const std::string& base, const std::string& href) {
  std::string path = href.substr(0, href.find('#'));
  const size_t slash = base.find_last_of('/');
  std::string joined = slash == std::string::npos ? path : base.substr(0, slash + 1) + path;
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= joined.size()) {
    size_t end = joined.find('/', start);
    if (end == std::string::npos) end = joined.size();
    const std::string part = joined.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : "/") + p;
  return url_decode(out);
}

}  // namespace

bool epub_available() { return true; }

Extracted extract_epub(const std::string& bytes, const std::string& origin) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  if (!source) throw TextError(origin + " cannot be opened as a zip file");
  Zip zip;
  zip.archive = zip_open_from_source(source, ZIP_RDONLY, &error);
  if (!zip.archive) {
    zip_source_free(source);
    zip_error_fini(&error);
    throw TextError(origin + " is not a readable zip file, so not an EPUB");
  }
  uint64_t budget = kMaxBookBytes;
  if (zip_name_locate(zip.archive, "META-INF/container.xml", 0) < 0)
    throw TextError(origin + " is a zip file but not an EPUB (it has no META-INF/container.xml)");
  const std::string container = read_entry(zip.archive, "META-INF/container.xml", origin, budget);
  XmlDoc container_doc = parse_xml(container, origin + ": META-INF/container.xml");
  std::vector<xmlNode*> rootfiles;
  find_all(xmlDocGetRootElement(container_doc.get()), "rootfile", rootfiles);
  if (rootfiles.empty() || attribute(rootfiles[0], "full-path").empty())
    throw TextError(origin + ": the EPUB's container names no package document");
  const std::string opf_path = url_decode(attribute(rootfiles[0], "full-path"));
  XmlDoc opf = parse_xml(read_entry(zip.archive, opf_path, origin, budget), origin + ": " + opf_path);
  xmlNode* opf_root = xmlDocGetRootElement(opf.get());
  std::vector<xmlNode*> items, itemrefs;
  find_all(opf_root, "item", items);
  find_all(opf_root, "itemref", itemrefs);
  std::map<std::string, std::string> href_of;
  for (xmlNode* item : items) href_of[attribute(item, "id")] = attribute(item, "href");
  if (itemrefs.empty()) throw TextError(origin + ": the EPUB has no spine (no reading order of its documents)");
  Extracted book;
  for (xmlNode* ref : itemrefs) {
    const std::string idref = attribute(ref, "idref");
    auto it = href_of.find(idref);
    if (it == href_of.end() || it->second.empty())
      throw TextError(origin + ": the EPUB's spine names \"" + idref + "\", which its manifest lacks");
    const std::string path = resolve(opf_path, it->second);
    append_extracted(book, extract_html(read_entry(zip.archive, path, origin, budget), origin + ": " + path));
  }
  if (book.text.find_first_not_of(" \t\n") == std::string::npos) throw TextError(origin + ": the EPUB holds no text");
  if (book.text.back() != '\n') book.text += '\n';
  return book;
}

#else

bool epub_available() { return false; }

Extracted extract_epub(const std::string&, const std::string& origin) {
  throw TextError(origin + " is an EPUB (or a zip file), and this build cannot read EPUB (built without libzip and libxml2)");
}

#endif

}  // namespace memmamba::book_extractors
