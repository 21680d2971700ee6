// The paper's efficiency claim, measured: forward speed of MemMamba, the same model without
// memory (Mamba-only), that Mamba with DeciMamba's token dropping (its default settings) and a
// causal Transformer of the same width and depth, batch 1, the same work for each (no LM head).
// On a GPU all four run under bf16 autocast and the Transformer on LibTorch's scaled_dot_product_attention (flash kernels), the field's own code.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/memmamba.h"

namespace memmamba::eval {

struct SpeedComparisonSetup {
  std::string device;
  bool bf16_autocast = false;
  int64_t transformer_parameters = 0;
  bool transformer_uses_sdpa = false;
};

struct SpeedComparisonRow {
  int64_t tokens = 0;
  double memmamba = 0, mamba_only = 0;  // tokens/s
  double decimamba = 0;                 // tokens/s: Mamba-only with the default decimation
  double transformer = 0;               // tokens/s; 0 above the Transformer's maximum length
};

// Times each length (after two warm-up rounds at 4k); on a GPU the faster of two runs.
void compare_forward_speed(const MemMambaModel& model, const RunOptions& options, const std::vector<int64_t>& lengths,
                           int64_t transformer_max_tokens, const std::function<void(const SpeedComparisonSetup&)>& on_setup,
                           const std::function<void(const SpeedComparisonRow&)>& on_row);

}  // namespace memmamba::eval
