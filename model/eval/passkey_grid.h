// Reads the accuracy grid (length x depth) out of a `memmamba eval passkey` result, with
// every field checked: the app draws it and the fuzzer feeds it hostile files. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/json.h"

namespace memmamba::eval {

struct PasskeyGrid {
  std::vector<int64_t> lengths;               // ascending
  std::vector<double> depths;                 // ascending
  std::vector<std::vector<double>> accuracy;  // [length][depth], NaN where the grid has no cell
  // Mean share of the key's digits in place (partial credit); NaN where the file has none.
  std::vector<std::vector<double>> digit_accuracy;
  // What the cases were ("5-digit keys, wording 0", "4 facts, held-out wordings").
  std::string case_description;
  int64_t facts = 1;
  // The row of a length and the column of a depth (depths within 1e-9); -1 where the grid has none.
  int length_index(double length) const;
  int depth_index(double depth) const;
};

// Bounds that keep a hostile file from asking for a huge matrix.
constexpr size_t kMaxGridLengths = 256, kMaxGridDepths = 256;
constexpr uint64_t kMaxGridFileBytes = 512ull << 20;

// Throws std::invalid_argument with a message for the user on anything malformed.
PasskeyGrid parse_passkey_grid(const Json& results);
// Reads and parses a result file (size-checked first).
PasskeyGrid load_passkey_grid(const std::string& path, Json* results = nullptr);

}  // namespace memmamba::eval
