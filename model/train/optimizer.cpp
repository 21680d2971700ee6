#include "model/train/optimizer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace memmamba {

namespace {

// Weight decay for matrices only (not norms, biases, D, A_log, dt bias, fusion scales).
bool decays(const std::string& name, const torch::Tensor& t) {
  return t.dim() >= 2 && name.find("A_log") == std::string::npos;
}

}  // namespace

void AdamW::add(const std::string& name, const torch::Tensor& param) {
  names.push_back(name);
  params.push_back(param);
  m.push_back(torch::zeros_like(param));
  v.push_back(torch::zeros_like(param));
}

void AdamW::step_with(double lr, const TrainOptions& o) {
  torch::NoGradGuard no_grad;
  ++step;
  const double c1 = 1.0 - std::pow(o.beta1, static_cast<double>(step));
  const double c2 = 1.0 - std::pow(o.beta2, static_cast<double>(step));
  std::vector<torch::Tensor> ps, gs, ms, vs, decayed;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].grad().defined()) continue;
    ps.push_back(params[i]);
    gs.push_back(params[i].grad());
    ms.push_back(m[i]);
    vs.push_back(v[i]);
    if (decays(names[i], params[i])) decayed.push_back(params[i]);
  }
  if (ps.empty()) return;
  at::_foreach_mul_(ms, o.beta1);
  at::_foreach_add_(ms, gs, 1.0 - o.beta1);
  at::_foreach_mul_(vs, o.beta2);
  at::_foreach_addcmul_(vs, gs, gs, 1.0 - o.beta2);
  if (!decayed.empty()) at::_foreach_mul_(decayed, 1.0 - lr * o.weight_decay);
  std::vector<torch::Tensor> denom = at::_foreach_div(vs, c2);
  at::_foreach_sqrt_(denom);
  at::_foreach_add_(denom, o.eps);
  at::_foreach_addcdiv_(ps, ms, denom, -lr / c1);
}

double clip_gradients(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  const double norm = torch::stack(at::_foreach_norm(grads)).norm().item<double>();
  const double scale = max_norm / (norm + 1e-6);
  if (scale < 1.0) at::_foreach_mul_(grads, scale);
  return norm;
}

double learning_rate_at(int64_t step, const TrainOptions& o) {
  if (o.warmup > 0 && step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  if (!o.cosine) return o.lr;
  const double span = std::max<int64_t>(1, o.steps - o.warmup);
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup) / span);
  const double min_lr = o.lr * o.min_lr_ratio;
  return min_lr + 0.5 * (o.lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace memmamba
