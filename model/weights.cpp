#include "model/weights.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

namespace memmamba {

std::string layer_prefix(int64_t layer) { return "layers." + std::to_string(layer) + "."; }

namespace {
// Context-mix taps [D, k]: 1 on the token (the last tap, as in a causal convolution), `earlier`
// on each token before it.
torch::Tensor context_taps(at::IntArrayRef shape, double earlier, const torch::TensorOptions& options) {
  auto taps = torch::full(shape, earlier, options);
  taps.select(1, shape[1] - 1).fill_(1.0);
  return taps;
}
}  // namespace

void set_earlier_context_taps(Weights& weights, const ModelConfig& config, double earlier) {
  if (!config.memory || config.memory_context < 2) throw std::invalid_argument("the config has no context mix");
  for (int64_t l = 0; l < config.n_layers; ++l) {
    const std::string name = layer_prefix(l) + "memory.context.weight";
    weights.set(name, context_taps(weights[name].sizes(), earlier, weights[name].options()));
  }
}

namespace {
void add_attention(std::vector<ParamSpec>& out, const std::string& p, const ModelConfig& c) {
  const int64_t D = c.d_model, S = c.summary_dim;
  out.push_back({p + "norm.weight", {D}});
  out.push_back({p + "q.weight", {S, D}});
  out.push_back({p + "k.weight", {S, S}});
  out.push_back({p + "v.weight", {S, S}});
  out.push_back({p + "o.weight", {D, S}});
  if (c.fusion == FusionKind::Weighted) out.push_back({p + "fusion.scale", {D}});
  if (c.fusion == FusionKind::Gated) {
    out.push_back({p + "fusion.gate.weight", {D, 2 * D}});
    out.push_back({p + "fusion.gate.bias", {D}});
  }
}
}  // namespace

std::vector<ParamSpec> parameter_specs(const ModelConfig& c) {
  const int64_t V = c.vocab_size, D = c.d_model, Di = c.inner(), N = c.d_state, R = c.rank(), S = c.summary_dim;
  std::vector<ParamSpec> out;
  out.push_back({"embedding.weight", {V, D}});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = layer_prefix(l);
    if (c.memory) {
      out.push_back({p + "note.norm.weight", {D}});
      out.push_back({p + "note.importance.weight", {D}});
      out.push_back({p + "note.importance.bias", {1}});
      out.push_back({p + "note.summary.weight", {S, D}});
      if (c.memory_context > 1) out.push_back({p + "memory.context.weight", {D, c.memory_context}});
      add_attention(out, p + "token_attention.", c);
      if (c.has_cross_layer(l)) add_attention(out, p + "layer_attention.", c);
    }
    out.push_back({p + "mixer.norm.weight", {D}});
    out.push_back({p + "mixer.in_proj.weight", {2 * Di, D}});
    out.push_back({p + "mixer.conv.weight", {Di, c.conv_kernel}});
    out.push_back({p + "mixer.conv.bias", {Di}});
    out.push_back({p + "mixer.x_proj.weight", {R + 2 * N, Di}});
    out.push_back({p + "mixer.dt_proj.weight", {Di, R}});
    out.push_back({p + "mixer.dt_proj.bias", {Di}});
    out.push_back({p + "mixer.A_log", {Di, N}});
    out.push_back({p + "mixer.D", {Di}});
    out.push_back({p + "mixer.out_proj.weight", {D, Di}});
  }
  out.push_back({"norm_f.weight", {D}});
  return out;
}

int64_t parameter_count(const ModelConfig& config) {
  int64_t n = 0;
  for (const auto& s : parameter_specs(config)) {
    int64_t k = 1;
    for (int64_t d : s.shape) k *= d;
    n += k;
  }
  return n;
}

Weights Weights::random(const ModelConfig& c, uint64_t seed) {
  c.validate();
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  auto uniform = [&](std::vector<int64_t> shape, double bound) {
    return at::empty(shape, opts).uniform_(-bound, bound, gen);
  };
  Weights w;
  const int64_t Di = c.inner(), N = c.d_state, R = c.rank();
  for (const ParamSpec& spec : parameter_specs(c)) {
    const std::string& n = spec.name;
    auto ends_with = [&](const std::string& suffix) { return name_ends_with(n, suffix); };
    torch::Tensor t;
    if (n == "embedding.weight") {
      t = at::empty(spec.shape, opts).normal_(0.0, 0.02, gen);
    } else if (ends_with("norm.weight")) {
      t = torch::ones(spec.shape, opts);
    } else if (ends_with("mixer.A_log")) {
      t = torch::log(torch::arange(1, N + 1, opts)).unsqueeze(0).repeat({Di, 1});
    } else if (ends_with("mixer.D")) {
      t = torch::ones(spec.shape, opts);
    } else if (ends_with("mixer.dt_proj.weight")) {
      t = uniform(spec.shape, 1.0 / std::sqrt(static_cast<double>(R)));
    } else if (ends_with("mixer.dt_proj.bias")) {
      // dt = exp(U(log 1e-3, log 1e-1)); bias = softplus^-1(dt).
      auto dt = torch::exp(at::empty(spec.shape, opts).uniform_(std::log(1e-3), std::log(1e-1), gen)).clamp_min(1e-4);
      t = dt + torch::log(-torch::expm1(-dt));
    } else if (ends_with("mixer.conv.weight")) {
      t = uniform(spec.shape, 1.0 / std::sqrt(static_cast<double>(c.conv_kernel)));
    } else if (ends_with("mixer.conv.bias")) {
      t = uniform(spec.shape, 1.0 / std::sqrt(static_cast<double>(c.conv_kernel)));
    } else if (ends_with("mixer.out_proj.weight")) {
      // Scaled down with depth, as in GPT-2 / Mamba, so the residual stream stays bounded.
      t = uniform(spec.shape, 1.0 / std::sqrt(static_cast<double>(spec.shape[1])) / std::sqrt(2.0 * c.n_layers));
    } else if (ends_with("note.importance.bias") || ends_with("fusion.gate.bias")) {
      t = torch::zeros(spec.shape, opts);
    } else if (ends_with("fusion.scale")) {
      t = torch::full(spec.shape, c.fusion_init_scale, opts);
    } else if (ends_with("memory.context.weight")) {
      // The token alone at first: an untrained mix reads as the paper's memory, and training widens it.
      t = context_taps(spec.shape, 0.0, opts);
    } else if (ends_with("note.importance.weight")) {
      t = uniform(spec.shape, 1.0 / std::sqrt(static_cast<double>(spec.shape[0])));
    } else {
      t = uniform(spec.shape, 1.0 / std::sqrt(static_cast<double>(spec.shape.back())));
    }
    w.tensors_[n] = t.contiguous();
  }
  return w;
}

const torch::Tensor& Weights::operator[](const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw std::out_of_range("model has no weight \"" + name + "\"");
  return it->second;
}

std::vector<torch::Tensor> Weights::parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : tensors_) out.push_back(t);
  return out;
}

void Weights::to(const torch::Device& device) {
  for (auto& [name, t] : tensors_) t = t.to(device);
}

void Weights::set_requires_grad(bool on) {
  for (auto& [name, t] : tensors_) t.set_requires_grad(on);
}

}  // namespace memmamba
