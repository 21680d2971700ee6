// Cross-layer attention (paper eq. 13): every p-th layer's tokens read the union of the
// pools of that layer and the g - 1 layers below it, as each token sees them.
#pragma once
#include <memory>
#include <vector>

#include "model/memory/layer_pool.h"
#include "model/memory/slot_attention.h"

namespace memmamba {

// What a column of an attention row is: its pool's layer and slot, and where the note
// ids of the banks the columns index live (for the observer).
struct SlotColumns {
  std::vector<int32_t> layer, slot;
  std::vector<std::shared_ptr<const std::vector<int64_t>>> note_ids;
  std::vector<int64_t> bank_offsets;
};

// The columns of a layer's own pool (cross-token attention).
SlotColumns own_pool_columns(int64_t layer, int64_t slots, std::shared_ptr<const std::vector<int64_t>> note_ids);

// The union of the pools of layers [first, layer] as one bank: the layers' batch banks one
// after another (sequence 0's entries first within each), the visible indices offset per layer.
struct PoolUnion {
  torch::Tensor vectors, priority, visible;  // [nb, S], [nb], [B * T, g * K]
  torch::Tensor source;                      // [nb] when every bank has sources, else undefined
  SlotColumns columns;
};
PoolUnion pool_union(const std::vector<LayerBank>& banks, int64_t first, int64_t layer, int64_t slots);

// The layers whose pools layer `layer` reads: [first, layer].
int64_t cross_layer_first(const ModelConfig& c, int64_t layer);

// x: [B * T, D] the layer input's rows, the input cross-token attention reads.
GatedRead cross_layer_attention(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                                const PoolUnion& pools);

}  // namespace memmamba
