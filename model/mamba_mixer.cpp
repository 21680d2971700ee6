#include "model/mamba_mixer.h"

#include <torch/torch.h>
#include <ATen/ThreadLocalState.h>

#include <ATen/Parallel.h>

#include <optional>

#include "model/causal_conv_cpu.h"
#include "model/cuda/scan_dispatch.h"
#include "model/profile.h"
#include "model/selective_scan.h"

namespace memmamba {

namespace F = torch::nn::functional;

bool needs_autograd(std::initializer_list<torch::Tensor> inputs) {
  if (!torch::GradMode::is_enabled()) return false;
  for (const torch::Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  if (x.is_cuda() && cuda_scan::rms_norm_available(x, weight))
    return needs_autograd({x, weight}) ? cuda_scan::rms_norm_trainable(x, weight, eps) : cuda_scan::rms_norm(x, weight, eps);
  return x * torch::rsqrt(x.pow(2).mean(-1, true) + eps) * weight;
}

namespace {
thread_local bool cpu_bf16_projections = false;
}  // namespace

CpuBf16Projections::CpuBf16Projections(bool on) : previous_(cpu_bf16_projections) { cpu_bf16_projections = on; }
CpuBf16Projections::~CpuBf16Projections() { cpu_bf16_projections = previous_; }
bool CpuBf16Projections::active() { return cpu_bf16_projections; }

torch::Tensor project(const torch::Tensor& x, const torch::Tensor& weight) {
  const int64_t rows = x.numel() / std::max<int64_t>(1, x.size(-1));
  if (cpu_bf16_projections && rows > 1 && x.device().is_cpu() && x.scalar_type() == torch::kFloat32 &&
      !needs_autograd({x, weight})) {
    // oneDNN spreads one product over the intra-op threads itself: no split by rows here.
    auto product = at::mm(x.reshape({rows, x.size(-1)}).to(torch::kBFloat16), weight.to(torch::kBFloat16).t());
    auto sizes = x.sizes().vec();
    sizes.back() = weight.size(0);
    return product.to(torch::kFloat32).view(sizes);
  }
  // One row: a matrix-vector product (BLAS's GEMM would repack the whole weight each call).
  if (rows == 1 && x.dim() >= 1) {
    auto sizes = x.sizes().vec();
    sizes.back() = weight.size(0);
    return at::mv(weight, x.reshape({x.size(-1)})).view(sizes);
  }
  if (needs_autograd({x, weight}) || !x.device().is_cpu() || rows < 512 || at::get_num_threads() < 2)
    return torch::matmul(x, weight.t());
  auto x2 = x.reshape({rows, x.size(-1)}).contiguous();
  auto wt = weight.t();
  auto out = torch::empty({rows, weight.size(0)}, x.options());
  const int64_t grain = std::max<int64_t>(256, (rows + at::get_num_threads() - 1) / at::get_num_threads());
  // Grad mode (like autocast and inference mode) is per thread, and OpenMP's workers start with
  // their defaults: each range runs under the caller's state, or an eval under NoGradGuard would
  // hand mm_out weights that require grad.
  const at::ThreadLocalState caller_state;
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard same_state(caller_state);
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

MixerOutput mixer_forward(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& xf_in,
                          MixerState& state, const torch::Tensor& ssm_input_mask, const TokenSelector& select) {
  torch::Tensor xf = xf_in;
  const std::string p = layer_prefix(layer) + "mixer.";
  const int64_t Di = c.inner(), N = c.d_state, R = c.rank(), Kc = c.conv_kernel;
  std::optional<profile::Section> section(std::in_place, "mixer: norm, in_proj", xf.device());
  auto h = rms_norm(xf, w[p + "norm.weight"], c.norm_eps);
  auto az = project(h, w[p + "in_proj.weight"]);  // [B, T, 2Di]
  section.emplace("mixer: conv, SiLU", xf.device());
  auto a = az.narrow(-1, 0, Di);
  auto z = az.narrow(-1, Di, Di);
  // Causal depthwise conv over [carried inputs, this chunk], as Kc shifted products
  // (cheaper on the CPU than a grouped conv1d and free of transposes).
  const int64_t T = a.size(1);
  const auto& conv_w = w[p + "conv.weight"];  // [Di, Kc]
  torch::Tensor u;                            // [B, T, Di]
  if (causal_conv_silu_cpu_applies(a, state.conv, conv_w, w[p + "conv.bias"])) {
    std::tie(u, state.conv) = causal_conv_silu_cpu(a, state.conv, conv_w, w[p + "conv.bias"]);
  } else if (!needs_autograd({a, state.conv, conv_w, w[p + "conv.bias"]}) && Kc > 1 && cuda_scan::causal_conv_available(a, Kc)) {
    std::tie(u, state.conv) = cuda_scan::causal_conv_silu(a, state.conv, conv_w, w[p + "conv.bias"]);
  } else if (Kc > 1 && cuda_scan::causal_conv_available(a, Kc)) {  // training: one autograd node
    u = cuda_scan::causal_conv_silu_trainable(a, state.conv, conv_w, w[p + "conv.bias"]);
    const auto tail = T >= Kc - 1 ? a : torch::cat({state.conv.to(a.dtype()), a}, 1);
    state.conv = tail.narrow(1, tail.size(1) - (Kc - 1), Kc - 1).contiguous();
  } else {
    auto padded = torch::cat({state.conv.to(a.dtype()), a}, 1);  // [B, Kc-1+T, Di]
    auto conv = padded.narrow(1, 0, T) * conv_w.select(1, 0) + w[p + "conv.bias"];
    for (int64_t k = 1; k < Kc; ++k) conv = conv + padded.narrow(1, k, T) * conv_w.select(1, k);
    if (Kc > 1) state.conv = padded.narrow(1, padded.size(1) - (Kc - 1), Kc - 1).contiguous();
    u = torch::silu(conv);
  }
  section.emplace("mixer: x_proj, dt", xf.device());
  auto xdbc = project(u, w[p + "x_proj.weight"]);
  auto dt = F::softplus(project(xdbc.narrow(-1, 0, R), w[p + "dt_proj.weight"]) + w[p + "dt_proj.bias"]);
  if (ssm_input_mask.defined()) dt = dt * ssm_input_mask.to(dt.options()).unsqueeze(-1);
  auto Bm = xdbc.narrow(-1, R, N).contiguous();
  auto Cm = xdbc.narrow(-1, R + N, N).contiguous();
  torch::Tensor kept;
  if (select) kept = select(dt);
  if (kept.defined()) {
    // DeciMamba: only the kept tokens reach the scan, the gate and the residual stream.
    auto rows = [&kept](const torch::Tensor& t) {
      return t.gather(1, kept.unsqueeze(-1).expand({kept.size(0), kept.size(1), t.size(-1)})).contiguous();
    };
    u = rows(u);
    dt = rows(dt);
    Bm = rows(Bm);
    Cm = rows(Cm);
    z = rows(z);
    xf = rows(xf);
  }
  section.emplace("mixer: selective scan", xf.device());
  auto scan = selective_scan(u, dt, mixer_decay_rates(w, layer), Bm, Cm, w[p + "D"], state.ssm);
  state.ssm = scan.last_state;
  section.emplace("mixer: gate, out_proj", xf.device());
  auto y = scan.y * torch::silu(z);
  return {xf + project(y, w[p + "out_proj.weight"]), dt, kept};
}

MixerOutput mixer_step_tensor_ops(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& xf,
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

namespace memmamba {

MixerOutput mixer_step(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& xf_in,
                       MixerState& state) {
  if (!xf_in.device().is_cpu() || xf_in.scalar_type() != torch::kFloat32 ||
      needs_autograd({xf_in}))
    return mixer_step_tensor_ops(c, w, layer, xf_in, state);
  const std::string p = layer_prefix(layer) + "mixer.";
  const int64_t B = xf_in.size(0), D = c.d_model, Di = c.inner(), N = c.d_state, R = c.rank(), Kc = c.conv_kernel;
  auto xf = xf_in.contiguous();
  // Pre-norm.
  auto h = torch::empty({B, D});
  {
    const float* x = xf.data_ptr<float>();
    const float* g = w[p + "norm.weight"].data_ptr<float>();
    float* o = h.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) {
      double sq = 0;
      for (int64_t i = 0; i < D; ++i) sq += static_cast<double>(x[b * D + i]) * x[b * D + i];
      const float inv = static_cast<float>(1.0 / std::sqrt(sq / D + c.norm_eps));
      for (int64_t i = 0; i < D; ++i) o[b * D + i] = x[b * D + i] * inv * g[i];
    }
  }
  auto az = project(h, w[p + "in_proj.weight"]).contiguous();  // [B, 2Di]
  // Causal conv over the carried window, then SiLU.
  auto u = torch::empty({B, Di});
  {
    state.conv = state.conv.contiguous();
    float* win = state.conv.data_ptr<float>();  // [B, Kc-1, Di]
    const float* cw = w[p + "conv.weight"].data_ptr<float>();
    const float* cb = w[p + "conv.bias"].data_ptr<float>();
    const float* a = az.data_ptr<float>();
    float* uo = u.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) {
      float* wb = win + b * (Kc - 1) * Di;
      for (int64_t d = 0; d < Di; ++d) {
        const float ad = a[b * 2 * Di + d];
        float acc = cb[d] + cw[d * Kc + Kc - 1] * ad;
        for (int64_t k = 0; k < Kc - 1; ++k) acc += cw[d * Kc + k] * wb[k * Di + d];
        for (int64_t k = 0; k + 1 < Kc - 1; ++k) wb[k * Di + d] = wb[(k + 1) * Di + d];
        if (Kc > 1) wb[(Kc - 2) * Di + d] = ad;
        uo[b * Di + d] = acc / (1.f + std::exp(-acc));
      }
    }
  }
  auto xdbc = project(u, w[p + "x_proj.weight"]).contiguous();                           // [B, R+2N]
  auto dt = project(xdbc.narrow(1, 0, R), w[p + "dt_proj.weight"]).contiguous();          // [B, Di]
  auto y = torch::empty({B, Di});
  {
    const float* bias = w[p + "dt_proj.bias"].data_ptr<float>();
    const float* A_log = w[p + "A_log"].data_ptr<float>();
    const float* Dskip = w[p + "D"].data_ptr<float>();
    const float* xd = xdbc.data_ptr<float>();
    const float* uo = u.data_ptr<float>();
    const float* a = az.data_ptr<float>();
    float* dtp = dt.data_ptr<float>();
    float* yo = y.data_ptr<float>();
    state.ssm = state.ssm.contiguous();
    float* hs = state.ssm.data_ptr<float>();  // [B, Di, N]
    for (int64_t b = 0; b < B; ++b) {
      const float* Bv = xd + b * (R + 2 * N) + R;
      const float* Cv = Bv + N;
      for (int64_t d = 0; d < Di; ++d) {
        const float raw = dtp[b * Di + d] + bias[d];
        const float step = raw > 20.f ? raw : std::log1p(std::exp(raw));  // softplus, threshold 20 as in Torch
        dtp[b * Di + d] = step;
        const float ud = uo[b * Di + d];
        float acc = Dskip[d] * ud;
        float* hd = hs + (b * Di + d) * N;
        for (int64_t n = 0; n < N; ++n) {
          hd[n] = std::exp(-step * std::exp(A_log[d * N + n])) * hd[n] + step * ud * Bv[n];
          acc += Cv[n] * hd[n];
        }
        const float z = a[b * 2 * Di + Di + d];
        yo[b * Di + d] = acc * z / (1.f + std::exp(-z));
      }
    }
  }
  return {xf + project(y, w[p + "out_proj.weight"]), dt};
}

}  // namespace memmamba
