// The text decoder: BOMs, UTF-16, invalid UTF-8, NULs, line endings.
#include "model/text_input.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return refusal_is_fine([&] {
    const std::string text = memmamba::normalize_text(bytes_of(data, size), "fuzz");
    // Whatever is accepted is valid UTF-8 and normalizes to itself.
    if (memmamba::normalize_text(text, "again") != text) __builtin_trap();
  });
}
