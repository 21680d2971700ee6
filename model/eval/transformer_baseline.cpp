#include "model/eval/transformer_baseline.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>

#include "model/mamba_mixer.h"

namespace memmamba::eval {

TransformerBaseline::TransformerBaseline(const ModelConfig& c, uint64_t seed) : config_(c) {
  heads_ = std::max<int64_t>(1, c.d_model / 64);
  if (c.d_model % heads_ != 0) heads_ = 1;
  auto gen = at::detail::createCPUGenerator(seed);
  auto uniform = [&](std::vector<int64_t> shape) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(shape.back()));
    return at::empty(shape, torch::kFloat32).uniform_(-bound, bound, gen);
  };
  const int64_t D = c.d_model;
  w_["embedding"] = at::empty({c.vocab_size, D}, torch::kFloat32).normal_(0.0, 0.02, gen);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = std::to_string(l) + ".";
    w_[p + "norm1"] = torch::ones({D});
    w_[p + "qkv"] = uniform({3 * D, D});
    w_[p + "out"] = uniform({D, D});
    w_[p + "norm2"] = torch::ones({D});
    w_[p + "up"] = uniform({4 * D, D});
    w_[p + "down"] = uniform({D, 4 * D});
  }
  w_["norm_f"] = torch::ones({D});
}

int64_t TransformerBaseline::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, t] : w_) n += t.numel();
  return n;
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t block) {
  const int64_t T = q.size(1), d = q.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<torch::Tensor> outs;
  for (int64_t b0 = 0; b0 < T; b0 += block) {
    const int64_t n = std::min(block, T - b0);
    const int64_t keys = b0 + n;  // causal: queries in this block see keys [0, b0 + n)
    auto scores = torch::matmul(q.narrow(1, b0, n), k.narrow(1, 0, keys).transpose(1, 2)) * scale;  // [H, n, keys]
    auto row = torch::arange(b0, b0 + n, torch::kInt64).unsqueeze(1);
    auto col = torch::arange(0, keys, torch::kInt64).unsqueeze(0);
    scores = scores.masked_fill(col.gt(row).unsqueeze(0), -std::numeric_limits<float>::infinity());
    outs.push_back(torch::matmul(torch::softmax(scores, -1), v.narrow(1, 0, keys)));
  }
  return torch::cat(outs, 1);
}

void TransformerBaseline::to(const torch::Device& device) {
  for (auto& [name, t] : w_) t = t.to(device);
}

bool TransformerBaseline::uses_sdpa() {
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
  return true;
#else
  return false;
#endif
}

torch::Tensor TransformerBaseline::forward(const torch::Tensor& tokens_in) const {
  torch::NoGradGuard no_grad;
  const auto& embedding = w_.at("embedding");
  auto tokens = tokens_in.to(embedding.device(), torch::kInt64);
  const int64_t T = tokens.size(1), D = config_.d_model, hd = D / heads_;
  auto x = embedding.index_select(0, tokens.reshape({-1}));  // [T, D]
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    const std::string p = std::to_string(l) + ".";
    auto qkv = project(rms_norm(x, w_.at(p + "norm1"), config_.norm_eps), w_.at(p + "qkv"));  // [T, 3D]
    auto heads = qkv.view({T, 3, heads_, hd}).permute({1, 2, 0, 3});                        // [3, H, T, hd]
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
    // The field's kernels (flash or memory-efficient attention where the device has them).
    auto att = at::scaled_dot_product_attention(heads[0].unsqueeze(0), heads[1].unsqueeze(0), heads[2].unsqueeze(0),
                                                {}, 0.0, /*is_causal=*/true)
                   .squeeze(0);  // [H, T, hd]
#else
    auto att = causal_attention(heads[0], heads[1], heads[2]);  // no SDPA in this LibTorch
#endif
    x = x + project(att.permute({1, 0, 2}).reshape({T, D}), w_.at(p + "out"));
    auto h = project(rms_norm(x, w_.at(p + "norm2"), config_.norm_eps), w_.at(p + "up"));
    x = x + project(torch::gelu(h), w_.at(p + "down"));
  }
  return rms_norm(x, w_.at("norm_f"), config_.norm_eps).unsqueeze(0);
}

}  // namespace memmamba::eval
