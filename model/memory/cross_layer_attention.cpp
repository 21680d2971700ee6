#include "model/memory/cross_layer_attention.h"

#include <torch/torch.h>

#include <algorithm>

namespace memmamba {

SlotColumns own_pool_columns(int64_t layer, int64_t slots, std::shared_ptr<const std::vector<int64_t>> note_ids) {
  SlotColumns cols;
  cols.layer.assign(static_cast<size_t>(slots), static_cast<int32_t>(layer));
  for (int64_t j = 0; j < slots; ++j) cols.slot.push_back(static_cast<int32_t>(j));
  cols.note_ids = {std::move(note_ids)};
  cols.bank_offsets = {0};
  return cols;
}

PoolUnion pool_union(const std::vector<LayerBank>& banks, int64_t first, int64_t layer, int64_t slots) {
  std::vector<torch::Tensor> vecs, pris, viss, srcs;
  PoolUnion u;
  int64_t offset = 0;
  for (int64_t l = first; l <= layer; ++l) {
    const LayerBank& bank = banks[l];
    if (!bank.valid) continue;
    const SequenceBank& seq = bank.batch;
    vecs.push_back(seq.vectors);
    pris.push_back(seq.priority);
    viss.push_back(offset == 0 ? seq.visible : torch::where(seq.visible.ge(0), seq.visible + offset, seq.visible));
    if (seq.source.defined()) srcs.push_back(seq.source);
    u.columns.note_ids.push_back(seq.note_ids);
    u.columns.bank_offsets.push_back(offset);
    for (int64_t j = 0; j < slots; ++j) {
      u.columns.layer.push_back(static_cast<int32_t>(l));
      u.columns.slot.push_back(static_cast<int32_t>(j));
    }
    offset += seq.vectors.size(0);
  }
  if (vecs.size() == 1) {
    u.vectors = vecs[0];
    u.priority = pris[0];
    u.visible = viss[0];
  } else {
    u.vectors = torch::cat(vecs, 0);
    u.priority = torch::cat(pris, 0);
    u.visible = torch::cat(viss, 1);
  }
  if (!srcs.empty() && srcs.size() == vecs.size()) u.source = srcs.size() == 1 ? srcs[0] : torch::cat(srcs, 0);
  return u;
}

int64_t cross_layer_first(const ModelConfig& c, int64_t layer) {
  return std::max<int64_t>(0, layer - c.cross_layer_groups + 1);
}

GatedRead cross_layer_attention(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                                const PoolUnion& pools) {
  return gated_slot_attention(c, w, layer_prefix(layer) + "layer_attention.", x, pools.vectors, pools.priority,
                              pools.visible, torch::Tensor());
}

}  // namespace memmamba
