#include "model/memory/slot_attention.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <optional>

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
// The whole gated read for inference on the CPU, as loops over the gated rows: the
// query's norm and projection, the attention over the visible slots, the output
// projection. A step reads one row; op by op, the tensor version spent its time in
// dispatch, not arithmetic.
GatedRead gated_read_cpu_inference(const ModelConfig& c, const Weights& w, const std::string& prefix,
                                   const torch::Tensor& x_in, const torch::Tensor& bank, const torch::Tensor& bank_priority,
                                   const torch::Tensor& visible_in, const torch::Tensor& gate_in) {
  const int64_t T = x_in.size(0), D = x_in.size(1), M = visible_in.size(1), S = c.summary_dim;
  auto visible_all = visible_in.contiguous();
  const int64_t* vis_all = visible_all.data_ptr<int64_t>();
  torch::Tensor gate = gate_in.defined() ? gate_in.contiguous() : torch::Tensor();
  const bool* gp = gate.defined() ? gate.data_ptr<bool>() : nullptr;
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < T; ++t) {
    if (gp && !gp[t]) continue;
    for (int64_t m = 0; m < M; ++m)
      if (vis_all[t * M + m] >= 0) { rows.push_back(t); break; }
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  GatedRead read;
  read.rows = torch::from_blob(rows.data(), {n}, torch::kInt64).clone();
  read.context = torch::zeros({T, D}, x_in.options());
  read.applied = torch::ones({n}, torch::kBool);
  read.visible = torch::empty({n, M}, torch::kInt64);
  if (n == 0) {
    read.weights = torch::zeros({0, M}, x_in.options());
    return read;
  }
  for (int64_t r = 0; r < n; ++r)
    std::copy(vis_all + rows[r] * M, vis_all + (rows[r] + 1) * M, read.visible.data_ptr<int64_t>() + r * M);
  // Queries of the gated rows: RMSNorm in place, then one matrix product.
  auto x = x_in.contiguous();
  auto normed = torch::empty({n, D}, x.options());
  {
    const float* xp = x.data_ptr<float>();
    const float* norm_w = w[prefix + "norm.weight"].data_ptr<float>();
    float* up = normed.data_ptr<float>();
    for (int64_t r = 0; r < n; ++r) {
      const float* xr = xp + rows[r] * D;
      double sq = 0;
      for (int64_t i = 0; i < D; ++i) sq += static_cast<double>(xr[i]) * xr[i];
      const float inv = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(D) + c.norm_eps));
      for (int64_t i = 0; i < D; ++i) up[r * D + i] = xr[i] * inv * norm_w[i];
    }
  }
  // project(): the rows split over the threads (a plain mm runs on one: BLAS is single-threaded).
  auto queries = project(normed, w[prefix + "q.weight"]).contiguous();  // [n, S]
  auto keys = torch::mm(bank, w[prefix + "k.weight"].t()).contiguous();       // [nb, S]
  auto values = torch::mm(bank, w[prefix + "v.weight"].t()).contiguous();     // [nb, S]
  auto log_priority = torch::log(bank_priority.clamp_min(1e-6)).contiguous();
  torch::Tensor contexts;
  attend_rows_inference(queries, keys, values, log_priority, read.visible, 1.0 / std::sqrt(static_cast<double>(S)), contexts,
                        read.weights);
  auto out = project(contexts, w[prefix + "o.weight"]).contiguous();  // [n, D]
  const float* op = out.data_ptr<float>();
  float* dst = read.context.data_ptr<float>();
  for (int64_t r = 0; r < n; ++r) std::copy(op + r * D, op + (r + 1) * D, dst + rows[r] * D);
  return read;
}
}  // namespace

namespace {
// The attention as gathers of each row's visible slots ([rows, M, S]): memory bounded by
// blocks of rows whatever the bank's size. Its backward scatters every row's gradient onto
// the few bank rows it read, which is slow on a GPU (atomic adds on the same addresses).
SlotAttentionOutput attend_gathered(const torch::Tensor& queries, const torch::Tensor& keys, const torch::Tensor& values,
                                    const torch::Tensor& log_priority, const torch::Tensor& visible, double scale) {
  const int64_t n = queries.size(0), M = visible.size(1), S = queries.size(1);
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
  auto ctx = contexts.empty() ? torch::zeros({0, S}, queries.options()) : torch::cat(contexts, 0);
  auto att = weights.empty() ? torch::zeros({0, M}, queries.options()) : torch::cat(weights, 0);
  return {ctx, att};
}

// The same attention over the bank entries that some row sees, as two matrix products:
// logits [n, nb'] = q k^T masked to each row's visible entries, context = softmax v. A
// chunk of a trained model sees its K carried slots and a few notes, so nb' is tens to a
// few hundred and the products (and their backward) cost less than the gathers' copies.
// Each bank index appears at most once in a row (a note holds one slot). Returns nothing
// when the entries seen exceed max_entries.
std::optional<SlotAttentionOutput> attend_dense(const torch::Tensor& queries, const torch::Tensor& keys,
                                                const torch::Tensor& values, const torch::Tensor& log_priority,
                                                const torch::Tensor& visible, double scale, int64_t max_entries) {
  const int64_t n = queries.size(0), nb = keys.size(0);
  auto mask = visible.ge(0);
  auto long_opts = visible.options();
  // Entry nb+... : index 0 of `seen` stands for "-1, nothing".
  auto seen = torch::zeros({nb + 1}, long_opts).index_fill_(0, (visible + 1).reshape({-1}), 1).narrow(0, 1, nb);
  auto used = seen.nonzero().squeeze(1);  // the one host sync: the dense width
  const int64_t nc = used.size(0);
  if (nc > max_entries) return std::nullopt;
  auto compact = torch::full({nb}, nc, long_opts).index_put_({used}, torch::arange(nc, long_opts));
  // Column nc collects the empty slots and is dropped.
  auto column = torch::where(mask, compact.index_select(0, visible.clamp_min(0).reshape({-1})).view_as(visible),
                             torch::full({}, nc, long_opts));
  auto dense_mask = torch::zeros({n, nc + 1}, mask.options()).scatter_(1, column, true).narrow(1, 0, nc);
  auto k = keys.index_select(0, used), v = values.index_select(0, used);
  auto logits = torch::matmul(queries, k.t()) * scale + log_priority.index_select(0, used);
  logits = logits.masked_fill(dense_mask.logical_not(), -std::numeric_limits<float>::infinity());
  auto any = dense_mask.any(-1, true);
  auto att = torch::softmax(logits.masked_fill(any.logical_not(), 0.0), -1) * dense_mask.to(logits.dtype());
  auto ctx = torch::matmul(att, v);
  // The weights in slot order, as the trace and the retrieval loss read them.
  auto padded = torch::cat({att, torch::zeros({n, 1}, att.options())}, 1);
  return SlotAttentionOutput{ctx, padded.gather(1, column)};
}
}  // namespace

SlotAttentionOutput slot_attention(const ModelConfig& c, const Weights& w, const std::string& prefix,
                                   const torch::Tensor& x_rows, const torch::Tensor& bank,
                                   const torch::Tensor& bank_priority, const torch::Tensor& visible) {
  const int64_t M = visible.size(1), S = c.summary_dim;
  auto keys = torch::matmul(bank, w[prefix + "k.weight"].t());    // [nb, S]
  auto values = torch::matmul(bank, w[prefix + "v.weight"].t());  // [nb, S]
  auto log_priority = torch::log(bank_priority.clamp_min(1e-6));
  auto queries = project(rms_norm(x_rows, w[prefix + "norm.weight"], c.norm_eps), w[prefix + "q.weight"]);
  const double scale = 1.0 / std::sqrt(static_cast<double>(S));
  // (CPU reads without autograd never come here: gated_slot_attention fuses them.)
  const bool needs_grad = needs_autograd({queries, keys, log_priority});
  if (!needs_grad && cuda_ops::slot_attention_available(queries, M)) {
    auto rows = cuda_ops::slot_attention_rows(queries, keys, values, log_priority, visible, scale);
    const auto type = x_rows.scalar_type();
    return {project(rows.context.to(type), w[prefix + "o.weight"]), rows.weights.to(type)};
  }
  std::optional<SlotAttentionOutput> out;
  if (needs_grad)
    out = attend_dense(queries, keys, values, log_priority, visible, scale,
                       kDenseSlotAttentionMaxLogits / std::max<int64_t>(1, queries.size(0)));
  if (!out) out = attend_gathered(queries, keys, values, log_priority, visible, scale);
  return {torch::matmul(out->context, w[prefix + "o.weight"].t()), out->weights};
}

SlotAttentionOutput attend_slots(const torch::Tensor& queries, const torch::Tensor& keys, const torch::Tensor& values,
                                 const torch::Tensor& log_priority, const torch::Tensor& visible, double scale,
                                 SlotAttentionPath path) {
  if (path == SlotAttentionPath::Dense)
    return *attend_dense(queries, keys, values, log_priority, visible, scale, keys.size(0));
  return attend_gathered(queries, keys, values, log_priority, visible, scale);
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
  if (x.scalar_type() == torch::kFloat32 && w[prefix + "q.weight"].scalar_type() == torch::kFloat32 &&
      !needs_autograd({x, bank, bank_priority, w[prefix + "norm.weight"], w[prefix + "q.weight"], w[prefix + "k.weight"],
                       w[prefix + "v.weight"], w[prefix + "o.weight"]}))
    return gated_read_cpu_inference(c, w, prefix, x, bank, bank_priority, visible, gate);
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
