#include "model/cuda/step_graph.h"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>

#include <cstdlib>

namespace memmamba::cuda_ops {

// Off with MEMMAMBA_NO_CUDA_GRAPHS=1 (for comparison and as an escape hatch).
bool step_graphs_available() {
  static const bool on = [] {
    const char* env = std::getenv("MEMMAMBA_NO_CUDA_GRAPHS");
    return !(env && env[0] == '1');
  }();
  return on;
}

class StepGraph {
 public:
  std::string key;
  at::cuda::CUDAGraph graph;
  torch::Tensor tokens, logits;
  std::vector<torch::Tensor> statics;  // the state tensors at their fixed addresses
  int warm_steps = 0;
  bool captured = false;
  c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool();  // warm-up and capture run here
};

torch::Tensor run_step_graph(std::shared_ptr<void>& cache, const std::string& key, const torch::Tensor& tokens_in,
                             const std::function<torch::Tensor(const torch::Tensor&)>& step,
                             const std::function<std::vector<torch::Tensor*>()>& state_slots) {
  auto g = std::static_pointer_cast<StepGraph>(cache);
  if (!g || g->key != key) {
    g = std::make_shared<StepGraph>();
    g->key = key;
    cache = g;
  }
  const torch::Tensor tokens = tokens_in.to(torch::kCUDA, torch::kInt64);
  if (g->captured) {
    g->tokens.copy_(tokens);
    g->graph.replay();
    return g->logits.clone();
  }
  if (g->warm_steps < 1) {  // one ordinary step first, on the capture stream: kernels and cuBLAS initialise there
    ++g->warm_steps;
    torch::cuda::synchronize();  // the state may still be being written on another stream
    torch::Tensor out;
    {
      const c10::cuda::CUDAStreamGuard guard(g->stream);
      out = step(tokens);
    }
    g->stream.synchronize();
    return out;
  }
  // Fix the state tensors' addresses: the graph reads them and its last kernels write them.
  const std::vector<torch::Tensor*> slots = state_slots();
  g->statics.clear();
  for (torch::Tensor* s : slots) {
    *s = s->contiguous().clone();
    g->statics.push_back(*s);
  }
  g->tokens = tokens.clone();
  {
    torch::cuda::synchronize();
    const c10::cuda::CUDAStreamGuard guard(g->stream);
    g->graph.capture_begin();
    g->logits = step(g->tokens);
    const std::vector<torch::Tensor*> after = state_slots();
    for (size_t i = 0; i < after.size(); ++i) {
      g->statics[i].copy_(*after[i]);
      *after[i] = g->statics[i];
    }
    g->graph.capture_end();
    g->stream.synchronize();
  }
  // Capturing ran nothing: replay once for this step's result.
  g->captured = true;
  g->graph.replay();
  return g->logits.clone();
}

}  // namespace memmamba::cuda_ops
