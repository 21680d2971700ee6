// Cross-token and cross-layer attention over state-pool slots (single head of width S,
// logits q.k / sqrt(S) + log priority), and the fusion of their outputs into the stream.
#pragma once
#include <torch/types.h>

#include <string>

#include "model/config.h"
#include "model/weights.h"

namespace memmamba {

struct SlotAttentionOutput {
  torch::Tensor context;  // [n, D], zero rows where nothing was visible
  torch::Tensor weights;  // [n, M], 0 where not visible
};

// prefix: "layers.l.token_attention." or "layers.l.layer_attention.".
// x_rows: [n, D] queries; bank: [nb, S] note vectors with priorities [nb];
// visible: [n, M] int64 bank indices, -1 where a slot is empty. Rows are processed in
// blocks so memory stays bounded.
SlotAttentionOutput slot_attention(const ModelConfig& c, const Weights& w, const std::string& prefix,
                                   const torch::Tensor& x_rows, const torch::Tensor& bank,
                                   const torch::Tensor& bank_priority, const torch::Tensor& visible);

// gain * F(c) of the configured fusion; x is the layer input at the same rows. The gain is a
// run-time loudness of the memory's read-out (MemorySettings::fusion_gain, 1 as trained).
torch::Tensor fusion_term(const ModelConfig& c, const Weights& w, const std::string& prefix, const torch::Tensor& x,
                          const torch::Tensor& context, double gain = 1.0);

}  // namespace memmamba
