// A checkpoint: the container, its config metadata, every weight's name, shape and dtype.
#include <torch/torch.h>

#include "model/checkpoint.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return refusal_is_fine([&] {
    memmamba::Checkpoint ck = memmamba::parse_checkpoint(bytes_of(data, size), "fuzz");
    ck.config.validate();
  });
}
