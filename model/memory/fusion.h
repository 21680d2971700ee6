// Fusion (paper eq. 14): how the memory's read-out joins the residual stream. Weighted
// (a learned per-channel scale), residual (added as is) or gated (a sigmoid gate over
// [x, context]); the model adds the term to x.
#pragma once
#include <torch/types.h>

#include <string>

#include "model/config.h"
#include "model/weights.h"

namespace memmamba {

// gain * F(c) of the configured fusion; x is the layer input at the same rows; prefix is
// "layers.l.token_attention." or "layers.l.layer_attention.". The gain is a run-time
// loudness of the memory's read-out (MemorySettings::fusion_gain, 1 as trained).
torch::Tensor fusion_term(const ModelConfig& c, const Weights& w, const std::string& prefix, const torch::Tensor& x,
                          const torch::Tensor& context, double gain = 1.0);

}  // namespace memmamba
