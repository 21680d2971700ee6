#include "model/mamba_mixer.h"

#include <torch/torch.h>

#include "model/selective_scan.h"

namespace memmamba {

namespace F = torch::nn::functional;

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  return x * torch::rsqrt(x.pow(2).mean(-1, true) + eps) * weight;
}

MixerState new_mixer_state(const ModelConfig& c, int64_t batch, const torch::Device& device) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  return {torch::zeros({batch, c.inner(), c.conv_kernel - 1}, opts), torch::zeros({batch, c.inner(), c.d_state}, opts)};
}

torch::Tensor mixer_decay_rates(const Weights& w, int64_t layer) {
  return -torch::exp(w[layer_prefix(layer) + "mixer.A_log"]);
}

MixerOutput mixer_forward(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& xf,
                          MixerState& state) {
  const std::string p = layer_prefix(layer) + "mixer.";
  const int64_t Di = c.inner(), N = c.d_state, R = c.rank(), Kc = c.conv_kernel;
  auto h = rms_norm(xf, w[p + "norm.weight"], c.norm_eps);
  auto az = torch::matmul(h, w[p + "in_proj.weight"].t());  // [B, T, 2Di]
  auto a = az.narrow(-1, 0, Di);
  auto z = az.narrow(-1, Di, Di);
  // Causal depthwise conv over [carried inputs, this chunk].
  auto padded = torch::cat({state.conv.to(a.dtype()), a.transpose(1, 2)}, 2);  // [B, Di, Kc-1+T]
  auto conv = F::conv1d(padded, w[p + "conv.weight"].unsqueeze(1),
                        F::Conv1dFuncOptions().bias(w[p + "conv.bias"]).groups(Di));
  if (Kc > 1) state.conv = padded.narrow(2, padded.size(2) - (Kc - 1), Kc - 1).detach().contiguous();
  auto u = torch::silu(conv).transpose(1, 2).contiguous();  // [B, T, Di]
  auto xdbc = torch::matmul(u, w[p + "x_proj.weight"].t());
  auto dt = F::softplus(torch::matmul(xdbc.narrow(-1, 0, R), w[p + "dt_proj.weight"].t()) + w[p + "dt_proj.bias"]);
  auto Bm = xdbc.narrow(-1, R, N).contiguous();
  auto Cm = xdbc.narrow(-1, R + N, N).contiguous();
  auto scan = selective_scan(u, dt, mixer_decay_rates(w, layer), Bm, Cm, w[p + "D"], state.ssm);
  state.ssm = scan.last_state;
  auto y = scan.y * torch::silu(z);
  return {xf + torch::matmul(y, w[p + "out_proj.weight"].t()), dt};
}

MixerOutput mixer_step(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& xf,
                       MixerState& state) {
  const std::string p = layer_prefix(layer) + "mixer.";
  const int64_t Di = c.inner(), N = c.d_state, R = c.rank();
  auto h = rms_norm(xf, w[p + "norm.weight"], c.norm_eps);
  auto az = torch::matmul(h, w[p + "in_proj.weight"].t());  // [B, 2Di]
  auto a = az.narrow(-1, 0, Di);
  auto z = az.narrow(-1, Di, Di);
  auto window = torch::cat({state.conv, a.unsqueeze(-1)}, -1);  // [B, Di, Kc]
  auto conv = (window * w[p + "conv.weight"]).sum(-1) + w[p + "conv.bias"];
  state.conv = window.narrow(-1, 1, c.conv_kernel - 1).contiguous();
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
