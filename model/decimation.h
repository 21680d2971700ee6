// DeciMamba (Ben-Kish et al., 2024, arXiv 2406.14528): a trained Mamba's context extended
// without training by dropping tokens between layers. At each decimating layer s (0, 1, ...
// in the order of the layers), after the conv and the x-projection, every token is scored by
// the L2 norm over channels of its step sizes Δ_t = softplus(δ_t + bias); the
// k = max(min(L, L_base · β^s), min_length) highest keep their place, in order, with the last
// `protected_tail` tokens (the question) always among them; the rest leave the sequence for
// this layer's scan and every later layer. No new weights: a run option of a Mamba-only model.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/json.h"

namespace memmamba {

struct DecimationSettings {
  std::vector<int64_t> layers;  // decimating layers, ascending; empty: no decimation
  int64_t base_length = 2000;   // L_base
  double beta = 0.5;            // each later decimating layer keeps β times as many
  int64_t min_length = 20;      // never fewer tokens than this
  int64_t protected_tail = 16;  // the context's last tokens are never dropped

  bool enabled() const { return !layers.empty(); }
  // Tokens kept at decimating stage `stage` of a sequence of `length` tokens.
  int64_t keep_count(int64_t length, int64_t stage) const;
  // Throws std::invalid_argument naming what is wrong (a layer out of range, ...).
  void validate(const ModelConfig& config) const;
  Json to_json() const;
  // DeciMamba's own defaults (L_base 2000, β 0.5, minimum 20), at three quarters of the model's
  // depth (layer 6 of 8), chosen by a sweep on a held-out book (docs/model.md); DeciMamba's
  // Mamba-130m decimates at layer 12 of 24.
  static DecimationSettings defaults_for(const ModelConfig& config);
};

// The kept positions [B, k], ascending, for token scores [B, L]: the last `protected_tail`
// positions and the highest scores among the others (ties: the earlier position).
torch::Tensor decimation_keep(const torch::Tensor& scores, int64_t keep, int64_t protected_tail);

}  // namespace memmamba
