// The safetensors container: header length, JSON header, offsets and sizes.
#include "model/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return refusal_is_fine([&] {
    const memmamba::SafetensorsFile f = memmamba::SafetensorsFile::parse(bytes_of(data, size), "fuzz");
    volatile uint64_t sum = 0;
    for (const auto& [name, view] : f.tensors()) {
      // Every accepted view must lie inside the bytes: touch its first and last byte.
      if (view.nbytes) sum = sum + view.data[0] + view.data[view.nbytes - 1];
      sum = sum + static_cast<uint64_t>(view.numel());
    }
  });
}
