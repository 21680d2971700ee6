// The mixer's causal depthwise convolution and SiLU on the CPU, one pass per token row
// (inference; the tensor-op form runs where autograd needs it).
#pragma once
#include <torch/types.h>

#include <utility>

namespace memmamba {

// Whether causal_conv_silu_cpu takes these: CPU fp32 tensors, a's rows contiguous, no autograd,
// a kernel of 2-8 taps.
bool causal_conv_silu_cpu_applies(const torch::Tensor& a, const torch::Tensor& carried, const torch::Tensor& weight,
                                  const torch::Tensor& bias);

// a: [B, T, Di] (this chunk's inputs), carried: [B, Kc-1, Di] (the inputs before it), weight:
// [Di, Kc], bias: [Di]. Returns SiLU(conv) [B, T, Di] and the last Kc-1 inputs for the next chunk.
std::pair<torch::Tensor, torch::Tensor> causal_conv_silu_cpu(const torch::Tensor& a, const torch::Tensor& carried,
                                                             const torch::Tensor& weight, const torch::Tensor& bias);

}  // namespace memmamba
