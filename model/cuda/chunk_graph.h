// A parallel chunk on the GPU as one CUDA graph, for short chunks without the memory: a
// 4k-token chunk of the bundled model is ~400 operators whose launches take twice as long
// as the kernels run. The first chunk of a shape is run directly (kernels and cuBLAS
// initialise on the capture stream), the second is captured; later ones copy the tokens and
// the carried state in and replay. Shapes are cached, a few at a time. Built only with CUDA
// kernels; MEMMAMBA_NO_CUDA_GRAPHS=1 turns graphs off (model/cuda/step_graph.h).
#pragma once
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace memmamba::cuda_ops {

// Chunks of up to this many tokens (batch x length) run as graphs; longer ones keep the GPU
// busy on their own, and a graph would hold their intermediates for good.
constexpr int64_t kChunkGraphMaxTokens = 16384;

class ChunkGraphs;

#ifdef MEMMAMBA_WITH_CUDA
std::shared_ptr<ChunkGraphs> new_chunk_graphs();
// Chunks replayed from a graph since the program began (for tests and benchmarks).
int64_t chunk_graph_replays();
// Runs `chunk(tokens)` (tokens [B, n] int64 on the GPU; it returns the chunk's hidden states
// and may replace the tensors `state` points to) directly or through a graph captured for
// `key`. The returned hidden states and the new state tensors belong to the caller. When
// another thread is using the cache, runs the chunk directly.
torch::Tensor run_chunk_graph(ChunkGraphs& graphs, const std::string& key, const torch::Tensor& tokens,
                              const std::function<torch::Tensor(const torch::Tensor&)>& chunk,
                              const std::vector<torch::Tensor*>& state);
#else
inline std::shared_ptr<ChunkGraphs> new_chunk_graphs() { return nullptr; }
inline int64_t chunk_graph_replays() { return 0; }
[[noreturn]] inline torch::Tensor run_chunk_graph(ChunkGraphs&, const std::string&, const torch::Tensor&,
                                                  const std::function<torch::Tensor(const torch::Tensor&)>&,
                                                  const std::vector<torch::Tensor*>&) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels");
}
#endif

}  // namespace memmamba::cuda_ops
