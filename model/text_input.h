// Loading user text: normalize_text checks UTF-8 (a BOM is dropped, CRLF and CR become
// LF); empty, binary and invalid UTF-8 text is refused with a message that says where.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace memmamba {

class TextError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr uint64_t kMaxTextBytes = uint64_t{1} << 30;  // 1 GiB

// Validates and normalises bytes already in memory; `origin` names them in messages.
std::string normalize_text(const std::string& bytes, const std::string& origin);
// A book's text as model/book/book.h extracts it with default options (any supported
// format and encoding, Project Gutenberg boilerplate skipped).
std::string load_text_file(const std::string& path, uint64_t max_bytes = kMaxTextBytes);

}  // namespace memmamba
