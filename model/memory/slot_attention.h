// The attention over state-pool slots that cross-token and cross-layer attention share:
// a single head of width S, logits q.k / sqrt(S) + log priority, over the slots visible
// at each row.
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

// With autograd, the attention runs as matrix products over the bank entries some row sees
// while rows x entries stays within this many logits (512 MiB in fp32), else as gathers of
// each row's visible slots.
constexpr int64_t kDenseSlotAttentionMaxLogits = int64_t{1} << 27;

// The attention on projected queries [n, S], keys and values [nb, S], log priorities [nb]:
// dense (matrix products over the entries seen) or gathered (per row). Both compute the
// same; tests hold one against the other. Context [n, S] before the output projection.
enum class SlotAttentionPath { Dense, Gathered };
SlotAttentionOutput attend_slots(const torch::Tensor& queries, const torch::Tensor& keys, const torch::Tensor& values,
                                 const torch::Tensor& log_priority, const torch::Tensor& visible, double scale,
                                 SlotAttentionPath path);

// Which rows read and what they read: the attention of `slot_attention` for the rows of
// x where `gate` holds (all rows when gate is undefined) and something is visible.
struct GatedRead {
  torch::Tensor context;  // [T, D]: zero where a row did not read
  torch::Tensor rows;     // [n] int64 rows the attention ran on
  torch::Tensor weights;  // [n, M]
  torch::Tensor visible;  // [n, M] the rows' bank indices
  torch::Tensor applied;  // [n] bool: the row's context reached the stream
};
// On a GPU every row is computed and the gate applied as a mask (no host round trip); on
// the CPU only the gated rows are.
GatedRead gated_slot_attention(const ModelConfig& c, const Weights& w, const std::string& prefix, const torch::Tensor& x,
                               const torch::Tensor& bank, const torch::Tensor& bank_priority, const torch::Tensor& visible,
                               const torch::Tensor& gate);

}  // namespace memmamba
