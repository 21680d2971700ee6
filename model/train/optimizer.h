// AdamW with decoupled weight decay (matrices only: not norms, biases, D, A_log, dt bias,
// fusion scales), and the learning rate: a linear warm-up, then cosine down to
// min_lr_ratio x lr, or constant.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model/train/train_options.h"

namespace memmamba {

struct AdamW {
  std::vector<std::string> names;
  std::vector<torch::Tensor> params, m, v;  // fp32 moments beside each parameter
  int64_t step = 0;

  // Takes `param` (which must require grad) into the optimizer with zero moments.
  void add(const std::string& name, const torch::Tensor& param);
  void step_with(double lr, const TrainOptions& o);
};

double learning_rate_at(int64_t step, const TrainOptions& o);

}  // namespace memmamba
