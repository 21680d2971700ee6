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
  // One update of every parameter that has a gradient, in a few multi-tensor kernels (the
  // foreach ops) rather than five per parameter: a fixed cost per step that data parallelism
  // cannot divide.
  void step_with(double lr, const TrainOptions& o);
};

// Scales the gradients so that their joint L2 norm is at most `max_norm` (as
// torch::nn::utils::clip_grad_norm_, in multi-tensor kernels); returns the norm before.
double clip_gradients(const std::vector<torch::Tensor>& params, double max_norm);

double learning_rate_at(int64_t step, const TrainOptions& o);

}  // namespace memmamba
