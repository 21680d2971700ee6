// How much of a source token's SSM state is left at each later token, on the CPU: the mean
// over channels and states of exp(A * dt summed since the source). The tensor form
// materialises [tokens, channels, states] products (8,192 per token for the bundled model)
// and took most of a traced book's extra time when two retention curves were asked for.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace memmamba {

// Whether retention_means_cpu takes these: CPU tensors, dt [n, Di], A [Di, N], carried [Di].
bool retention_cpu_applies(const torch::Tensor& dt_rows, const torch::Tensor& A, const torch::Tensor& carried);

// One value per row of dt_rows ([n, Di]): mean over d, n of exp(A[d, n] * (carried[d] +
// dt_rows[0..t, d] summed)). `carried` ([Di], fp32) is advanced by every row.
std::vector<float> retention_means_cpu(const torch::Tensor& dt_rows, const torch::Tensor& A, torch::Tensor& carried);

}  // namespace memmamba
