// UTF-8 checks and encoding, shared by the JSON parser and the text and book readers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace memmamba {

// Length of the UTF-8 sequence at s[i], or 0 where it is invalid (overlong, a surrogate,
// above U+10FFFF, truncated).
size_t utf8_sequence_length(const std::string& s, size_t i);
// Appends the UTF-8 encoding of a code point (at most U+10FFFF).
void append_utf8(uint32_t code_point, std::string& out);

}  // namespace memmamba
