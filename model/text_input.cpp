#include "model/text_input.h"

#include <algorithm>
#include <cstring>

#include "model/book/book.h"
#include "model/file_io.h"
#include "model/utf8.h"

namespace memmamba {

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
