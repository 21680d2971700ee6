// The MemMamba model: embedding, L layers (the memory of model/memory/, then the Mamba
// mixer), final norm, tied LM head; run as a parallel chunked forward or one token at a
// time, with the same answer.
#pragma once
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <vector>

#include "model/config.h"
#include "model/cuda/chunk_graph.h"
#include "model/mamba_mixer.h"
#include "model/memory/layer_pool.h"
#include "model/run_options.h"
#include "model/weights.h"

namespace memmamba {

class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("cancelled") {}
};

// Everything one run carries from token to token: O(1) in the sequence length.
struct RunState {
  int64_t batch = 1;
  int64_t position = 0;
  torch::Tensor device_position;  // int64 [1] on the model's GPU: the position the kernels read
  std::shared_ptr<void> step_graph;  // GPU step mode's captured CUDA graph (model/cuda/step_graph.h)
  std::vector<MixerState> mixers;
  std::vector<std::unique_ptr<LayerPool>> pools;  // per layer; empty until the memory first runs
  std::shared_ptr<const MemoryEdits> edits;        // the edits the pools were made with
  std::vector<std::map<int64_t, torch::Tensor>> retention_sums;  // per layer: source -> summed dt [Di]
};

class MemMambaModel {
 public:
  MemMambaModel(ModelConfig config, Weights weights);
  static MemMambaModel random(const ModelConfig& config, uint64_t seed);

  const ModelConfig& config() const { return config_; }
  const Weights& weights() const { return weights_; }
  Weights& mutable_weights() { return weights_; }
  torch::Device device() const;
  void to(const torch::Device& device) { weights_.to(device); }
  RunOptions default_options() const;

  RunState new_state(int64_t batch) const;
  // tokens: [B, T] int64. Returns the final hidden states [B, T, D] (after the final norm),
  // or an empty tensor when options.keep_hidden is off.
  torch::Tensor forward(const torch::Tensor& tokens, RunState& state, const RunOptions& options) const;
  // tokens: [B]. Returns logits [B, V].
  torch::Tensor step(const torch::Tensor& tokens, RunState& state, const RunOptions& options) const;
  torch::Tensor logits(const torch::Tensor& hidden) const;
  // The Note Block's inputs of layer `layer` for its input x [B, T, D]: the candidate summaries
  // s = W_N RMSNorm(x) (what the pool compares and stores) and, with `learned_rule`, the learned
  // rule's importances [B, T] (the weights must hold the rule).
  NoteInputs note_block_inputs(int64_t layer, const torch::Tensor& x, bool learned_rule) const;

 private:
  torch::Tensor layer_forward(int64_t layer, const torch::Tensor& x, RunState& state, const RunOptions& options,
                              const torch::Tensor& ssm_input_mask, std::vector<LayerBank>& banks) const;
  torch::Tensor forward_impl(const torch::Tensor& tokens, RunState& state, const RunOptions& options,
                             bool tokens_checked) const;
  // DeciMamba (options.decimation): the whole context layer by layer, tokens dropped at the
  // decimating layers; the hidden states of dropped tokens are NaN.
  torch::Tensor forward_decimated(const torch::Tensor& tokens, RunState& state, const RunOptions& options) const;
  torch::Tensor layer_step(int64_t layer, const torch::Tensor& x, RunState& state, const RunOptions& options,
                           std::vector<LayerBank>& banks) const;
  // The chunk's final hidden states [B, n, D] from its tokens [B, n] on the model's device.
  torch::Tensor chunk_forward(const torch::Tensor& tokens, RunState& state, const RunOptions& options,
                              const torch::Tensor& ssm_input_mask) const;
  // Whether a chunk of these options and shape runs as a captured CUDA graph (model/cuda/chunk_graph.h).
  bool chunk_graph_applies(const RunOptions& options, int64_t batch, int64_t tokens) const;
  void record_retention(int64_t layer, int64_t pos0, const torch::Tensor& dt, RunState& state,
                        const RunOptions& options) const;
  // Makes the state's pools when the memory first runs, and makes them follow options.edits
  // (at a run's start only).
  void prepare_pools(RunState& state, const RunOptions& options) const;

  ModelConfig config_;
  Weights weights_;
  // Captured CUDA graphs of short chunks without memory, shared by copies of the model (a
  // graph's key names the weights it reads).
  std::shared_ptr<cuda_ops::ChunkGraphs> chunk_graphs_ = cuda_ops::new_chunk_graphs();
};

// Greedy decoding in step mode after a parallel pass over the prompt.
std::vector<int64_t> generate_greedy(const MemMambaModel& model, const std::vector<int64_t>& prompt,
                                     int64_t max_new_tokens, const RunOptions& options,
                                     const std::function<bool(int64_t)>& stop = {});

}  // namespace memmamba
