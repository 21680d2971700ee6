#include "model/text_input.h"

#include <algorithm>
#include <cstring>

#include "model/book/book.h"
#include "model/file_io.h"

namespace memmamba {

// Length of the UTF-8 sequence at s[i], or 0 when invalid (overlong, surrogate, > U+10FFFF, truncated).
size_t utf8_sequence_length(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
  else return 0;
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

void append_utf8(uint32_t code_point, std::string& out) {
  const uint32_t cp = code_point;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string normalize_text(const std::string& bytes, const std::string& origin) {
  size_t start = 0;
  // Every leading BOM (files concatenated from BOM-marked parts carry several).
  while (bytes.size() >= start + 3 && bytes.compare(start, 3, "\xEF\xBB\xBF") == 0) start += 3;
  if (bytes.size() >= 2 && ((bytes[0] == '\xFF' && bytes[1] == '\xFE') || (bytes[0] == '\xFE' && bytes[1] == '\xFF')))
    throw TextError(origin + " is UTF-16; save it as UTF-8 and open it again");
  // Binary files (images, archives) usually fail UTF-8 at their first bytes: a NUL early on
  // names them for what they are.
  if (const void* nul = std::memchr(bytes.data() + start, 0, std::min<size_t>(bytes.size() - start, 1 << 16)))
    throw TextError(origin + " looks like a binary file (a NUL byte at offset " +
                    std::to_string(static_cast<const char*>(nul) - bytes.data()) + "), not UTF-8 text");
  std::string out;
  out.reserve(bytes.size() - start);
  size_t line = 1, nonspace = 0;
  for (size_t i = start; i < bytes.size();) {
    const char c = bytes[i];
    if (c == '\0')
      throw TextError(origin + " looks like a binary file (a NUL byte at offset " + std::to_string(i) +
                      "), not UTF-8 text");
    const size_t len = utf8_sequence_length(bytes, i);
    if (len == 0)
      throw TextError(origin + " is not valid UTF-8: bad byte 0x" +
                      std::string(1, "0123456789ABCDEF"[(static_cast<unsigned char>(c) >> 4)]) +
                      std::string(1, "0123456789ABCDEF"[c & 0xF]) + " at offset " + std::to_string(i) + " (line " +
                      std::to_string(line) + ")");
    if (c == '\r') {
      out += '\n';
      ++line;
      i += (i + 1 < bytes.size() && bytes[i + 1] == '\n') ? 2 : 1;
      continue;
    }
    if (c == '\n') ++line;
    if (c != ' ' && c != '\n' && c != '\t') ++nonspace;
    out.append(bytes, i, len);
    i += len;
  }
  if (nonspace == 0) throw TextError(origin + " is empty (no text to read)");
  return out;
}

std::string load_text_file(const std::string& path, uint64_t max_bytes) {
  std::string bytes;
  try {
    bytes = read_file(path, max_bytes);
  } catch (const FileError& e) {
    throw TextError(e.what());
  }
  return book_from_bytes(bytes, path).text;
}

}  // namespace memmamba
