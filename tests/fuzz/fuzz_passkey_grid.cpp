// An evaluation result file as the app loads it: JSON, then the length x depth grid.
#include <cmath>

#include "model/eval/passkey_grid.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return refusal_is_fine([&] {
    const memmamba::eval::PasskeyGrid g = memmamba::eval::parse_passkey_grid(memmamba::Json::parse(bytes_of(data, size)));
    if (g.accuracy.size() != g.lengths.size()) __builtin_trap();
    for (const auto& row : g.accuracy)
      if (row.size() != g.depths.size()) __builtin_trap();
  });
}
