// The seam between the model and its CUDA kernels. With MEMMAMBA_WITH_CUDA the
// functions are defined in model/cuda/*.cu; without it, a CUDA tensor reaching the
// scan is refused with a message instead of silently running elsewhere.
#pragma once
#include <torch/types.h>

#include <vector>

#include "model/scan_output.h"

namespace memmamba::cuda_scan {

#ifdef MEMMAMBA_WITH_CUDA
bool available();
ScanOutput forward(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& Bm,
                   const torch::Tensor& Cm, const torch::Tensor& Dskip, const torch::Tensor& h0);
// Returns du, ddelta, dA, dB, dC, dD, dh0.
std::vector<torch::Tensor> backward(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                                    const torch::Tensor& Bm, const torch::Tensor& Cm, const torch::Tensor& Dskip,
                                    const torch::Tensor& h0, const torch::Tensor& dy, const torch::Tensor& dlast);
// SiLU(causal depthwise conv of x [B, T, Di] (last dim contiguous) + bias) for inference,
// with the Kc - 1 inputs carried in from the previous chunk [B, Kc - 1, Di]. Returns u
// [B, T, Di] in the dtype x * weight promotes to, and the Kc - 1 inputs to carry on (x's dtype).
bool causal_conv_available(const torch::Tensor& x, int64_t kernel);
std::pair<torch::Tensor, torch::Tensor> causal_conv_silu(const torch::Tensor& x, const torch::Tensor& carried,
                                                         const torch::Tensor& weight, const torch::Tensor& bias);
// RMSNorm x * rsqrt(mean(x^2) + eps) * weight over the last dim, for inference, in the dtype
// x * weight promotes to (fp32 or bf16 inputs).
bool rms_norm_available(const torch::Tensor& x, const torch::Tensor& weight);
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);
// The same two for training: autograd functions whose backward runs a kernel too (one node
// each instead of the tensor version's five or sixteen). The conv returns u only; the
// inputs carried on are the caller's to take (differentiably).
torch::Tensor causal_conv_silu_trainable(const torch::Tensor& x, const torch::Tensor& carried, const torch::Tensor& weight,
                                         const torch::Tensor& bias);
torch::Tensor rms_norm_trainable(const torch::Tensor& x, const torch::Tensor& weight, double eps);
#else
[[noreturn]] inline torch::Tensor causal_conv_silu_trainable(const torch::Tensor&, const torch::Tensor&,
                                                             const torch::Tensor&, const torch::Tensor&) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels (Torch without CUDA): run on the CPU");
}
[[noreturn]] inline torch::Tensor rms_norm_trainable(const torch::Tensor&, const torch::Tensor&, double) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels (Torch without CUDA): run on the CPU");
}
inline bool rms_norm_available(const torch::Tensor&, const torch::Tensor&) { return false; }
[[noreturn]] inline torch::Tensor rms_norm(const torch::Tensor&, const torch::Tensor&, double) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels (Torch without CUDA): run on the CPU");
}
inline bool causal_conv_available(const torch::Tensor&, int64_t) { return false; }
[[noreturn]] inline std::pair<torch::Tensor, torch::Tensor> causal_conv_silu(const torch::Tensor&, const torch::Tensor&,
                                                                            const torch::Tensor&, const torch::Tensor&) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels (Torch without CUDA): run on the CPU");
}
inline bool available() { return false; }
[[noreturn]] inline ScanOutput forward(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                       const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                       const torch::Tensor&) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels (Torch without CUDA): run on the CPU");
}
[[noreturn]] inline std::vector<torch::Tensor> backward(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                                       const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                                       const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels (Torch without CUDA): run on the CPU");
}
#endif

}  // namespace memmamba::cuda_scan
