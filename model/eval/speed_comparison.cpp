#include "model/eval/speed_comparison.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "model/autocast.h"
#include "model/eval/transformer_baseline.h"

namespace memmamba::eval {

void compare_forward_speed(const MemMambaModel& model, const RunOptions& options, const std::vector<int64_t>& lengths,
                           int64_t transformer_max_tokens, const std::function<void(const SpeedComparisonSetup&)>& on_setup,
                           const std::function<void(const SpeedComparisonRow&)>& on_row) {
  torch::NoGradGuard no_grad;
  const bool cuda = model.device().is_cuda();
  TransformerBaseline transformer(model.config(), 1);
  transformer.to(model.device());
  AutocastGuard autocast(cuda);
  auto seconds_of = [&](const std::function<void(const torch::Tensor&)>& fn, int64_t T) {
    auto tokens = torch::randint(0, model.config().vocab_size, {1, T}, torch::kInt64).to(model.device());
    if (cuda) torch::cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    fn(tokens);
    if (cuda) torch::cuda::synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  RunOptions with_memory = options, without = options;
  without.memory.enabled = false;
  with_memory.keep_hidden = without.keep_hidden = true;
  with_memory.decimation = without.decimation = DecimationSettings{};
  RunOptions decimated = without;
  decimated.decimation = DecimationSettings::defaults_for(model.config());
  auto memmamba = [&](const RunOptions& o) {
    return [&model, o](const torch::Tensor& t) {
      RunState s = model.new_state(1);
      model.forward(t, s, o);
    };
  };
  auto tf = [&](const torch::Tensor& t) { transformer.forward(t); };
  for (int i = 0; i < 2; ++i) {  // warm-up: kernels chosen, caches filled
    seconds_of(memmamba(with_memory), 4096);
    seconds_of(memmamba(without), 4096);
    seconds_of(memmamba(decimated), 4096);
    seconds_of(tf, 4096);
  }
  if (on_setup)
    on_setup({model.device().str(), cuda, transformer.parameter_count(), TransformerBaseline::uses_sdpa()});
  // On a GPU the first run at a new length also pays first allocations: the faster of two.
  auto best_of = [&](const std::function<void(const torch::Tensor&)>& fn, int64_t T) {
    const double first = seconds_of(fn, T);
    return cuda ? std::min(first, seconds_of(fn, T)) : first;
  };
  for (int64_t T : lengths) {
    SpeedComparisonRow row;
    row.tokens = T;
    row.memmamba = T / best_of(memmamba(with_memory), T);
    row.mamba_only = T / best_of(memmamba(without), T);
    row.decimamba = T / best_of(memmamba(decimated), T);
    row.transformer = T <= transformer_max_tokens ? T / best_of(tf, T) : 0;
    if (on_row) on_row(row);
  }
}

}  // namespace memmamba::eval
