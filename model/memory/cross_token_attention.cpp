#include "model/memory/cross_token_attention.h"

namespace memmamba {

GatedRead cross_token_attention(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                                const SequenceBank& bank, const torch::Tensor& triggered) {
  return gated_slot_attention(c, w, layer_prefix(layer) + "token_attention.", x, bank.vectors, bank.priority,
                              bank.visible, triggered);
}

}  // namespace memmamba
