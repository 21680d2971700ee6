// Step mode on the GPU as one CUDA graph: a step is ~60 small kernels per layer, and
// launching them one by one costs more than running them. The first step with a given
// state and settings is captured (after a warm-up step); later steps copy the token in and
// replay. The run state's tensors are kept at fixed addresses: the captured step ends by
// copying its new state into them. Built only with CUDA kernels.
#pragma once
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace memmamba::cuda_ops {

#ifdef MEMMAMBA_WITH_CUDA
bool step_graphs_available();
// Runs `step(tokens)` (which must return logits and may replace the tensors `state_slots`
// lists) either directly or through a captured graph. `state_slots` returns pointers to
// every state tensor handle; `key` identifies the settings the graph was captured for.
// Returns nullopt-equivalent (undefined tensor) when graphs are unavailable.
torch::Tensor run_step_graph(std::shared_ptr<void>& cache, const std::string& key, const torch::Tensor& tokens,
                             const std::function<torch::Tensor(const torch::Tensor&)>& step,
                             const std::function<std::vector<torch::Tensor*>()>& state_slots);
#else
inline bool step_graphs_available() { return false; }
[[noreturn]] inline torch::Tensor run_step_graph(std::shared_ptr<void>&, const std::string&, const torch::Tensor&,
                                                 const std::function<torch::Tensor(const torch::Tensor&)>&,
                                                 const std::function<std::vector<torch::Tensor*>()>&) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels");
}
#endif

}  // namespace memmamba::cuda_ops
