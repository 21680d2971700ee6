#include "model/mamba_mixer.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include "model/selective_scan.h"

namespace memmamba {

namespace F = torch::nn::functional;

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return x * torch::rsqrt(x.pow(2).mean(-1, true) + eps) * weight;
}

torch::Tensor project(const torch::Tensor& x, const torch::Tensor& weight) {
  const int64_t rows = x.numel() / std::max<int64_t>(1, x.size(-1));
  const bool needs_grad = torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad());
  if (needs_grad || !x.device().is_cpu() || rows < 512 || at::get_num_threads() < 2)
    return torch::matmul(x, weight.t());
  auto x2 = x.reshape({rows, x.size(-1)}).contiguous();
  auto wt = weight.t();
  auto out = torch::empty({rows, weight.size(0)}, x.options());
  const int64_t grain = std::max<int64_t>(256, (rows + at::get_num_threads() - 1) / at::get_num_threads());
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    auto o = out.narrow(0, begin, end - begin);
    at::mm_out(o, x2.narrow(0, begin, end - begin), wt);
  });
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return out.view(sizes);
}

MixerState new_mixer_state(const ModelConfig& c, int64_t batch, const torch::Device& device) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  return {torch::zeros({batch, c.conv_kernel - 1, c.inner()}, opts), torch::zeros({batch, c.inner(), c.d_state}, opts)};
}

torch::Tensor mixer_decay_rates(const Weights& w, int64_t layer) {
  return -torch::exp(w[layer_prefix(layer) + "mixer.A_log"]);
}

MixerOutput mixer_forward(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& xf,
                          MixerState& state) {
  const std::string p = layer_prefix(layer) + "mixer.";
  const int64_t Di = c.inner(), N = c.d_state, R = c.rank(), Kc = c.conv_kernel;
  auto h = rms_norm(xf, w[p + "norm.weight"], c.norm_eps);
  auto az = project(h, w[p + "in_proj.weight"]);  // [B, T, 2Di]
  auto a = az.narrow(-1, 0, Di);
  auto z = az.narrow(-1, Di, Di);
  // Causal depthwise conv over [carried inputs, this chunk], as Kc shifted products
  // (cheaper on the CPU than a grouped conv1d and free of transposes).
  const int64_t T = a.size(1);
  auto padded = torch::cat({state.conv.to(a.dtype()), a}, 1);  // [B, Kc-1+T, Di]
  const auto& conv_w = w[p + "conv.weight"];                   // [Di, Kc]
  auto conv = padded.narrow(1, 0, T) * conv_w.select(1, 0) + w[p + "conv.bias"];
  for (int64_t k = 1; k < Kc; ++k) conv = conv + padded.narrow(1, k, T) * conv_w.select(1, k);
  if (Kc > 1) state.conv = padded.narrow(1, padded.size(1) - (Kc - 1), Kc - 1).contiguous();
  auto u = torch::silu(conv);  // [B, T, Di]
  auto xdbc = project(u, w[p + "x_proj.weight"]);
  auto dt = F::softplus(project(xdbc.narrow(-1, 0, R), w[p + "dt_proj.weight"]) + w[p + "dt_proj.bias"]);
  auto Bm = xdbc.narrow(-1, R, N).contiguous();
  auto Cm = xdbc.narrow(-1, R + N, N).contiguous();
  auto scan = selective_scan(u, dt, mixer_decay_rates(w, layer), Bm, Cm, w[p + "D"], state.ssm);
  state.ssm = scan.last_state;
  auto y = scan.y * torch::silu(z);
  return {xf + project(y, w[p + "out_proj.weight"]), dt};
}

MixerOutput mixer_step(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& xf,
                       MixerState& state) {
  const std::string p = layer_prefix(layer) + "mixer.";
  const int64_t Di = c.inner(), N = c.d_state, R = c.rank();
  auto h = rms_norm(xf, w[p + "norm.weight"], c.norm_eps);
  auto az = torch::matmul(h, w[p + "in_proj.weight"].t());  // [B, 2Di]
  auto a = az.narrow(-1, 0, Di);
  auto z = az.narrow(-1, Di, Di);
  auto window = torch::cat({state.conv, a.unsqueeze(1)}, 1);  // [B, Kc, Di]
  auto conv = (window * w[p + "conv.weight"].t()).sum(1) + w[p + "conv.bias"];
  state.conv = window.narrow(1, 1, c.conv_kernel - 1).contiguous();
  auto u = torch::silu(conv);  // [B, Di]
  auto xdbc = torch::matmul(u, w[p + "x_proj.weight"].t());
  auto dt = F::softplus(torch::matmul(xdbc.narrow(-1, 0, R), w[p + "dt_proj.weight"].t()) + w[p + "dt_proj.bias"]);
  auto Bv = xdbc.narrow(-1, R, N);
  auto Cv = xdbc.narrow(-1, R + N, N);
  auto decay = torch::exp(dt.unsqueeze(-1) * mixer_decay_rates(w, layer));  // [B, Di, N]
  state.ssm = decay * state.ssm + (dt * u).unsqueeze(-1) * Bv.unsqueeze(1);
  auto y = (state.ssm * Cv.unsqueeze(1)).sum(-1) + w[p + "D"] * u;
  y = y * torch::silu(z);
  return {xf + torch::matmul(y, w[p + "out_proj.weight"].t()), dt};
}

}  // namespace memmamba
