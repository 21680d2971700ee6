// An evaluation result file as the app loads it: JSON, its cases' breakdown, then the length x
// depth grid.
#include <cmath>

#include "model/eval/passkey_grid.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return refusal_is_fine([&] {
    const memmamba::Json results = memmamba::Json::parse(bytes_of(data, size));
    // The panel's breakdown reads the cases of any file it is given, before or without a grid.
    const memmamba::eval::GridBreakdown b = memmamba::eval::grid_breakdown(results);
    if (b.cut_short + b.ran_on > b.misses) __builtin_trap();
    (void)b.describe();
    const memmamba::eval::PasskeyGrid g = memmamba::eval::parse_passkey_grid(results);
    if (g.accuracy.size() != g.lengths.size()) __builtin_trap();
    for (const auto& row : g.accuracy)
      if (row.size() != g.depths.size()) __builtin_trap();
  });
}
