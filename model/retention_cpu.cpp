#include "model/retention_cpu.h"

#include <ATen/Parallel.h>

#include "model/block_vec.h"

namespace memmamba {
namespace {

// The sums of one token's row of summed dt: exp(A[d, :] * summed[d]) over every state of every
// channel, sixteen states at a time where a channel has that many.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
double retention_sum_row(const float* __restrict__ summed, const float* __restrict__ A, int64_t channels, int64_t states) {
  BlockVec block_acc{};
  float scalar_acc = 0.f;
  const int64_t whole = states - states % kBlockLanes;
  for (int64_t d = 0; d < channels; ++d) {
    const float s = summed[d];
    const float* a = A + d * states;
    for (int64_t n = 0; n < whole; n += kBlockLanes) block_acc += fast_exp(load_block(a + n, kBlockLanes) * s);
    for (int64_t n = whole; n < states; ++n) scalar_acc += fast_exp(a[n] * s);
  }
  double total = scalar_acc;
  for (int64_t lane = 0; lane < kBlockLanes; ++lane) total += block_acc[lane];
  return total;
}

}  // namespace

bool retention_cpu_applies(const torch::Tensor& dt_rows, const torch::Tensor& A, const torch::Tensor& carried) {
  return dt_rows.device().is_cpu() && A.device().is_cpu() && carried.device().is_cpu() && dt_rows.dim() == 2 &&
         A.dim() == 2 && carried.dim() == 1 && A.size(0) == dt_rows.size(1) && carried.size(0) == dt_rows.size(1);
}

std::vector<float> retention_means_cpu(const torch::Tensor& dt_rows, const torch::Tensor& A_in, torch::Tensor& carried) {
  const auto dt = dt_rows.to(torch::kFloat32).contiguous();
  const auto A = A_in.to(torch::kFloat32).contiguous();
  const int64_t rows = dt.size(0), channels = dt.size(1), states = A.size(1);
  // The running sums are sequential and cheap; the exponentials, 8k per row, go in parallel.
  auto summed = torch::empty({rows, channels}, dt.options());
  auto running = carried.to(torch::kFloat32).contiguous().clone();
  float* run = running.data_ptr<float>();
  const float* in = dt.data_ptr<float>();
  float* out = summed.data_ptr<float>();
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t d = 0; d < channels; ++d) out[t * channels + d] = run[d] += in[t * channels + d];
  std::vector<float> means(static_cast<size_t>(rows));
  const double count = static_cast<double>(channels * states);
  const float* a = A.data_ptr<float>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      means[static_cast<size_t>(t)] = static_cast<float>(retention_sum_row(out + t * channels, a, channels, states) / count);
  });
  carried = running;
  return means;
}

}  // namespace memmamba
