// The tokenizer loading path: a serialized SentencePiece model handed to the library
// (through the project's shim), then one encode and decode with what was accepted.
#include "model/tokenizer.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return refusal_is_fine([&] {
    const memmamba::Tokenizer tok = memmamba::Tokenizer::from_bytes(bytes_of(data, size), "fuzz");
    const memmamba::Encoding e = tok.encode("The pass key is 12345. caf\xc3\xa9");
    (void)tok.decode(e.ids);
  });
}
