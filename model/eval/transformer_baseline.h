// A causal Transformer of the same width and depth as a MemMamba config (pre-norm,
// D/64 heads, 4x MLP, tied embedding), for the efficiency comparison only: random
// weights, forward only. Attention is LibTorch's scaled_dot_product_attention (flash or
// memory-efficient kernels on a GPU) where the LibTorch at hand has it (2.x), else causal
// attention in query blocks so memory stays O(T * block).
#pragma once
#include <torch/types.h>

#include <map>
#include <string>

#include "model/config.h"

namespace memmamba::eval {

class TransformerBaseline {
 public:
  TransformerBaseline(const ModelConfig& config, uint64_t seed);
  // tokens [1, T] -> final hidden states [1, T, D].
  torch::Tensor forward(const torch::Tensor& tokens) const;
  int64_t parameter_count() const;
  void to(const torch::Device& device);
  // Whether forward runs LibTorch's scaled_dot_product_attention (else the blocked version).
  static bool uses_sdpa();

 private:
  ModelConfig config_;
  int64_t heads_;
  std::map<std::string, torch::Tensor> w_;
};

// Causal attention of q, k, v [H, T, d] in query blocks (plain tensor ops).
torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t block = 1024);

}  // namespace memmamba::eval
