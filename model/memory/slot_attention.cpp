#include "model/memory/slot_attention.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

#include "model/cuda/note_pool_op.h"
#include "model/mamba_mixer.h"

namespace memmamba {

namespace {
// The same attention without autograd, as loops over the visible slots: no [n, M, S]
// gathers, which dominate the tensor version's time on the CPU.
void attend_rows_inference(const torch::Tensor& queries, const torch::Tensor& keys, const torch::Tensor& values,
                           const torch::Tensor& log_priority, const torch::Tensor& visible, double scale,
                           torch::Tensor& context, torch::Tensor& weights) {
  const int64_t n = queries.size(0), S = queries.size(1), M = visible.size(1);
  auto q = queries.contiguous(), k = keys.contiguous(), v = values.contiguous(), lp = log_priority.contiguous();
  auto vis = visible.contiguous();
  context = torch::zeros({n, S}, queries.options());
  weights = torch::zeros({n, M}, queries.options());
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  const float* lpp = lp.data_ptr<float>();
  const int64_t* visp = vis.data_ptr<int64_t>();
  float* cp = context.data_ptr<float>();
  float* wp = weights.data_ptr<float>();
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* qr = qp + r * S;
      float* wr = wp + r * M;
      float best = -std::numeric_limits<float>::infinity();
      for (int64_t m = 0; m < M; ++m) {
        const int64_t idx = visp[r * M + m];
        if (idx < 0) continue;
        const float* kr = kp + idx * S;
        float dot = 0.f;
        for (int64_t i = 0; i < S; ++i) dot += qr[i] * kr[i];
        wr[m] = dot * static_cast<float>(scale) + lpp[idx];
        best = std::max(best, wr[m]);
      }
      if (best == -std::numeric_limits<float>::infinity()) continue;  // nothing visible
      float total = 0.f;
      for (int64_t m = 0; m < M; ++m) {
        if (visp[r * M + m] < 0) continue;
        wr[m] = std::exp(wr[m] - best);
        total += wr[m];
      }
      float* cr = cp + r * S;
      for (int64_t m = 0; m < M; ++m) {
        const int64_t idx = visp[r * M + m];
        if (idx < 0) continue;
        wr[m] /= total;
        const float* vr = vp + idx * S;
        for (int64_t i = 0; i < S; ++i) cr[i] += wr[m] * vr[i];
      }
    }
  });
}
}  // namespace

SlotAttentionOutput slot_attention(const ModelConfig& c, const Weights& w, const std::string& prefix,
                                   const torch::Tensor& x_rows, const torch::Tensor& bank,
                                   const torch::Tensor& bank_priority, const torch::Tensor& visible) {
  const int64_t n = x_rows.size(0), M = visible.size(1), S = c.summary_dim;
  auto keys = torch::matmul(bank, w[prefix + "k.weight"].t());    // [nb, S]
  auto values = torch::matmul(bank, w[prefix + "v.weight"].t());  // [nb, S]
  auto log_priority = torch::log(bank_priority.clamp_min(1e-6));
  auto queries = project(rms_norm(x_rows, w[prefix + "norm.weight"], c.norm_eps), w[prefix + "q.weight"]);
  const double scale = 1.0 / std::sqrt(static_cast<double>(S));
  const bool needs_grad = needs_autograd({queries, keys, log_priority});
  if (!needs_grad && x_rows.device().is_cpu() && x_rows.scalar_type() == torch::kFloat32) {
    torch::Tensor context, weights;
    attend_rows_inference(queries, keys, values, log_priority, visible, scale, context, weights);
    return {project(context, w[prefix + "o.weight"]), weights};
  }
  if (!needs_grad && cuda_ops::slot_attention_available(queries, M)) {
    auto rows = cuda_ops::slot_attention_rows(queries, keys, values, log_priority, visible, scale);
    const auto type = x_rows.scalar_type();
    return {project(rows.context.to(type), w[prefix + "o.weight"]), rows.weights.to(type)};
  }
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

GatedRead gated_slot_attention(const ModelConfig& c, const Weights& w, const std::string& prefix, const torch::Tensor& x,
                               const torch::Tensor& bank, const torch::Tensor& bank_priority, const torch::Tensor& visible,
                               const torch::Tensor& gate) {
  const int64_t T = x.size(0);
  GatedRead read;
  if (x.is_cuda()) {
    auto out = slot_attention(c, w, prefix, x, bank, bank_priority, visible);
    read.context = gate.defined() ? out.context * gate.unsqueeze(-1).to(out.context.dtype()) : out.context;
    read.rows = torch::arange(T, visible.options());
    read.weights = out.weights;
    read.visible = visible;
    read.applied = gate.defined() ? gate : visible.ge(0).any(1);
    return read;
  }
  auto wanted = visible.ge(0).any(1);
  if (gate.defined()) wanted = wanted & gate;
  read.rows = wanted.nonzero().squeeze(1);
  read.context = torch::zeros({T, c.d_model}, x.options());
  read.visible = visible.index_select(0, read.rows);
  read.applied = torch::ones({read.rows.size(0)}, torch::TensorOptions().dtype(torch::kBool).device(x.device()));
  if (read.rows.numel() == 0) {
    read.weights = torch::zeros({0, visible.size(1)}, x.options());
    return read;
  }
  auto out = slot_attention(c, w, prefix, x.index_select(0, read.rows), bank, bank_priority, read.visible);
  read.context = read.context.index_put({read.rows}, out.context);
  read.weights = out.weights;
  return read;
}

}  // namespace memmamba
