#include "model/causal_conv_cpu.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>

#include "model/block_vec.h"
#include "model/mamba_mixer.h"

namespace memmamba {

namespace {

constexpr int64_t kMaxTaps = 8;

// One token row: out[d] = SiLU(bias[d] + sum_k taps[k][d] * weight_by_tap[k][d]).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void conv_silu_row(int64_t channels, int64_t taps, const float* const* tap_rows, const float* __restrict__ weight_by_tap,
                   const float* __restrict__ bias, float* __restrict__ out) {
  for (int64_t d = 0; d < channels; d += kBlockLanes) {
    const int64_t width = std::min(kBlockLanes, channels - d);
    BlockVec acc = load_block(bias + d, width);
    for (int64_t k = 0; k < taps; ++k) acc += load_block(tap_rows[k] + d, width) * load_block(weight_by_tap + k * channels + d, width);
    store_block(out + d, silu_block(acc), width);
  }
}

}  // namespace

bool causal_conv_silu_cpu_applies(const torch::Tensor& a, const torch::Tensor& carried, const torch::Tensor& weight,
                                  const torch::Tensor& bias) {
  const auto fp32_cpu = [](const torch::Tensor& t) { return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat32; };
  if (!fp32_cpu(a) || !fp32_cpu(carried) || !fp32_cpu(weight) || !fp32_cpu(bias)) return false;
  if (a.dim() != 3 || a.stride(2) != 1 || weight.dim() != 2 || weight.size(1) < 2 || weight.size(1) > kMaxTaps) return false;
  if (carried.dim() != 3 || carried.size(1) != weight.size(1) - 1) return false;
  return !needs_autograd({a, carried, weight, bias});
}

std::pair<torch::Tensor, torch::Tensor> causal_conv_silu_cpu(const torch::Tensor& a, const torch::Tensor& carried_in,
                                                             const torch::Tensor& weight, const torch::Tensor& bias_in) {
  const int64_t B = a.size(0), T = a.size(1), Di = a.size(2), taps = weight.size(1), kept = taps - 1;
  TORCH_CHECK(weight.size(0) == Di && bias_in.numel() == Di && carried_in.size(0) == B && carried_in.size(2) == Di,
              "causal_conv_silu_cpu: shapes a ", a.sizes(), ", carried ", carried_in.sizes(), ", weight ", weight.sizes());
  const auto carried = carried_in.contiguous();
  const auto weight_by_tap = weight.t().contiguous();  // [taps, Di]: one row per tap
  const auto bias = bias_in.contiguous();
  auto out = torch::empty({B, T, Di}, a.options().memory_format(torch::MemoryFormat::Contiguous));
  const float* a_data = a.data_ptr<float>();
  const float* carried_data = carried.data_ptr<float>();
  float* out_data = out.data_ptr<float>();
  const int64_t a_batch = a.stride(0), a_row = a.stride(1);
  at::parallel_for(0, B * T, 64, [&](int64_t begin, int64_t end) {
    const float* tap_rows[kMaxTaps];
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / T, t = row % T;
      for (int64_t k = 0; k < taps; ++k) {
        const int64_t s = t - kept + k;  // the input this tap reads; before the chunk: a carried one
        tap_rows[k] = s >= 0 ? a_data + b * a_batch + s * a_row : carried_data + (b * kept + s + kept) * Di;
      }
      conv_silu_row(Di, taps, tap_rows, weight_by_tap.data_ptr<float>(), bias.data_ptr<float>(), out_data + row * Di);
    }
  });
  const auto tail = T >= kept ? a : torch::cat({carried, a}, 1);
  return {out, tail.narrow(1, tail.size(1) - kept, kept).contiguous()};
}

}  // namespace memmamba
