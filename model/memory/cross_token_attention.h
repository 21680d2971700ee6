// Cross-token attention (paper eq. 12): a token whose retrieval trigger fired reads the
// notes its own layer's pool holds as it sees them.
#pragma once
#include "model/memory/layer_pool.h"
#include "model/memory/slot_attention.h"

namespace memmamba {

// x: [n, D] rows of the layer input (one sequence's, or the batch's one sequence after another
// with `bank` holding every sequence's entries); triggered: [n] bool from the pool walk.
GatedRead cross_token_attention(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                                const SequenceBank& bank, const torch::Tensor& triggered);

}  // namespace memmamba
