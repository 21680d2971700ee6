#include "model/cuda/chunk_graph.h"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/torch.h>

#include <atomic>
#include <list>
#include <mutex>
#include <optional>

#include "model/autocast.h"

namespace memmamba::cuda_ops {

namespace {
struct ChunkGraph {
  std::string key;
  bool warmed = false, captured = false;
  at::cuda::CUDAGraph graph;
  torch::Tensor tokens, hidden;                     // fixed addresses the graph reads and writes
  std::vector<torch::Tensor> state_in, state_out;  // likewise, for the carried state
};
constexpr size_t kGraphsKept = 4;
std::atomic<int64_t> replays{0};
}  // namespace

int64_t chunk_graph_replays() { return replays.load(); }

class ChunkGraphs {
 public:
  std::mutex mutex;
  std::list<ChunkGraph> graphs;  // most recently used first
  std::optional<c10::cuda::CUDAStream> stream;  // warm-up and capture run here (made at first use)
};

std::shared_ptr<ChunkGraphs> new_chunk_graphs() { return std::make_shared<ChunkGraphs>(); }

torch::Tensor run_chunk_graph(ChunkGraphs& graphs, const std::string& key_in, const torch::Tensor& tokens,
                              const std::function<torch::Tensor(const torch::Tensor&)>& chunk,
                              const std::vector<torch::Tensor*>& state) {
  // Inside another capture (a captured step) the chunk is simply part of that graph.
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(c10::cuda::getCurrentCUDAStream(), &capture) != cudaSuccess ||
      capture != cudaStreamCaptureStatusNone)
    return chunk(tokens);
  std::unique_lock<std::mutex> lock(graphs.mutex, std::try_to_lock);
  if (!lock.owns_lock()) return chunk(tokens);
  // A graph holds the casts of the autocast state it was captured under.
  const std::optional<at::ScalarType> autocast = cuda_autocast_type();
  const std::string key = key_in + (autocast ? "/autocast " + std::string(c10::toString(*autocast)) : "");
  auto it = graphs.graphs.begin();
  while (it != graphs.graphs.end() && it->key != key) ++it;
  if (it == graphs.graphs.end()) {
    if (graphs.graphs.size() >= kGraphsKept) graphs.graphs.pop_back();
    graphs.graphs.emplace_front();
    graphs.graphs.front().key = key;
  } else if (it != graphs.graphs.begin()) {
    graphs.graphs.splice(graphs.graphs.begin(), graphs.graphs, it);
  }
  ChunkGraph& g = graphs.graphs.front();
  if (!graphs.stream) graphs.stream = c10::cuda::getStreamFromPool();
  const c10::cuda::CUDAStream stream = *graphs.stream;
  auto hand_back = [&] {  // the caller's copies of the graph's outputs
    for (size_t i = 0; i < state.size(); ++i) *state[i] = g.state_out[i].clone();
    return g.hidden.clone();
  };
  if (g.captured) {
    g.tokens.copy_(tokens);
    for (size_t i = 0; i < state.size(); ++i) g.state_in[i].copy_(*state[i]);
    g.graph.replay();
    ++replays;
    return hand_back();
  }
  torch::cuda::synchronize();  // the inputs may still be being written on another stream
  if (!g.warmed) {
    g.warmed = true;
    torch::Tensor out;
    {
      const c10::cuda::CUDAStreamGuard guard(stream);
      out = chunk(tokens);
    }
    stream.synchronize();
    return out;
  }
  g.tokens = tokens.clone();
  g.state_in.clear();
  for (torch::Tensor* s : state) {
    g.state_in.push_back(s->contiguous().clone());
    *s = g.state_in.back();
  }
  {
    const c10::cuda::CUDAStreamGuard guard(stream);
    g.graph.capture_begin();
    g.hidden = chunk(g.tokens);
    g.state_out.clear();
    for (torch::Tensor* s : state) g.state_out.push_back(*s);
    g.graph.capture_end();
  }
  g.captured = true;
  g.graph.replay();  // capturing ran nothing
  ++replays;
  return hand_back();
}

}  // namespace memmamba::cuda_ops
