#include "model/memory_attention.h"

#include <torch/torch.h>

#include <cmath>

#include "model/mamba_mixer.h"

namespace memmamba {

SlotAttentionOutput slot_attention(const ModelConfig& c, const Weights& w, const std::string& prefix,
                                   const torch::Tensor& x_rows, const torch::Tensor& bank,
                                   const torch::Tensor& bank_priority, const torch::Tensor& visible) {
  const int64_t n = x_rows.size(0), M = visible.size(1), S = c.summary_dim;
  auto keys = torch::matmul(bank, w[prefix + "k.weight"].t());    // [nb, S]
  auto values = torch::matmul(bank, w[prefix + "v.weight"].t());  // [nb, S]
  auto log_priority = torch::log(bank_priority.clamp_min(1e-6));
  auto queries = torch::matmul(rms_norm(x_rows, w[prefix + "norm.weight"], c.norm_eps), w[prefix + "q.weight"].t());
  const double scale = 1.0 / std::sqrt(static_cast<double>(S));
  constexpr int64_t kRowsPerBlock = 1024;
  std::vector<torch::Tensor> contexts, weights;
  for (int64_t r0 = 0; r0 < n; r0 += kRowsPerBlock) {
    const int64_t rn = std::min(kRowsPerBlock, n - r0);
    auto vis = visible.narrow(0, r0, rn);
    auto mask = vis.ge(0);
    auto idx = vis.clamp_min(0).reshape({-1});
    auto k = keys.index_select(0, idx).view({rn, M, S});
    auto v = values.index_select(0, idx).view({rn, M, S});
    auto q = queries.narrow(0, r0, rn);
    auto logits = torch::matmul(k, q.unsqueeze(-1)).squeeze(-1) * scale + log_priority.index_select(0, idx).view({rn, M});
    logits = logits.masked_fill(mask.logical_not(), -std::numeric_limits<float>::infinity());
    // Rows with nothing visible would be all -inf: give them zero weights instead of NaN.
    auto any = mask.any(-1, true);
    auto att = torch::softmax(logits.masked_fill(any.logical_not(), 0.0), -1) * mask.to(logits.dtype());
    contexts.push_back(torch::matmul(att.unsqueeze(1), v).squeeze(1));
    weights.push_back(att);
  }
  auto ctx = contexts.empty() ? torch::zeros({0, S}, x_rows.options()) : torch::cat(contexts, 0);
  auto att = weights.empty() ? torch::zeros({0, M}, x_rows.options()) : torch::cat(weights, 0);
  return {torch::matmul(ctx, w[prefix + "o.weight"].t()), att};
}

torch::Tensor fusion_term(const ModelConfig& c, const Weights& w, const std::string& prefix, const torch::Tensor& x,
                          const torch::Tensor& context) {
  switch (c.fusion) {
    case FusionKind::Weighted: return context * w[prefix + "fusion.scale"];
    case FusionKind::Residual: return context;
    case FusionKind::Gated:
      return torch::sigmoid(torch::matmul(torch::cat({x, context}, -1), w[prefix + "fusion.gate.weight"].t()) +
                            w[prefix + "fusion.gate.bias"]) *
             context;
  }
  return context;
}

}  // namespace memmamba
