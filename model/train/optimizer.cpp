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
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor& p = params[i];
    if (!p.grad().defined()) continue;
    const torch::Tensor g = p.grad();
    m[i].mul_(o.beta1).add_(g, 1.0 - o.beta1);
    v[i].mul_(o.beta2).addcmul_(g, g, 1.0 - o.beta2);
    if (decays(names[i], p)) p.mul_(1.0 - lr * o.weight_decay);
    auto denom = (v[i] / c2).sqrt_().add_(o.eps);
    p.addcdiv_(m[i], denom, -lr / c1);
  }
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
