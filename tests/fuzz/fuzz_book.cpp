// The book readers: encodings, Gutenberg markers, chapters, Markdown, HTML, EPUB and PDF,
// reached through the one entry point the CLI and the Explorer use.
#include "model/book/book.h"
#include "model/text_input.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks what the bytes claim to be, as a file name would.
  static const char* kNames[] = {"f.txt", "f.md", "f.html", "f.epub", "f.pdf", "f"};
  const std::string name = kNames[data[0] % 6];
  memmamba::BookOptions options;
  options.strip_markdown = (data[0] & 0x40) != 0;
  options.keep_boilerplate = (data[0] & 0x80) != 0;
  return refusal_is_fine([&] {
    const memmamba::BookText book = memmamba::book_from_bytes(bytes_of(data + 1, size - 1), name, options);
    // Whatever is accepted is normalised UTF-8, and its chapters lie inside it, in order.
    if (memmamba::normalize_text(book.text, "again") != book.text) __builtin_trap();
    int64_t previous = -1;
    for (const memmamba::Chapter& c : book.chapters) {
      if (c.char_begin <= previous || c.char_begin >= static_cast<int64_t>(book.text.size())) __builtin_trap();
      previous = c.char_begin;
    }
  });
}
