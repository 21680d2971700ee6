// The selective scan of Mamba-1:
//   h_t = exp(dt_t A) * h_{t-1} + dt_t B_t u_t,   y_t = C_t . h_t + D * u_t
// as one op over the whole sequence (autograd-aware), with the state in fp32.
#pragma once
#include <torch/types.h>

#include "model/scan_output.h"

namespace memmamba {

// u, delta: [B, T, Di] (delta already passed through softplus); A: [Di, N];
// Bmat, Cmat: [B, T, N]; Dskip: [Di]; initial_state: [B, Di, N] fp32 or undefined (zeros).
// Differentiable in u, delta, A, Bmat, Cmat, Dskip and initial_state.
ScanOutput selective_scan(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                          const torch::Tensor& Bmat, const torch::Tensor& Cmat, const torch::Tensor& Dskip,
                          const torch::Tensor& initial_state = {});

// The plain tensor-op recurrence, one step per token. Only tests use it, to check the fast op.
ScanOutput selective_scan_reference(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                                    const torch::Tensor& Bmat, const torch::Tensor& Cmat, const torch::Tensor& Dskip,
                                    const torch::Tensor& initial_state = {});

}  // namespace memmamba
