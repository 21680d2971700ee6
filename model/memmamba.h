// The MemMamba model: embedding, L layers (Note Block, retrieval trigger, cross-token
// and cross-layer attention, fusion, Mamba mixer), final norm, tied LM head; run as a
// parallel chunked forward or one token at a time, with the same answer.
#pragma once
#include <torch/types.h>

#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <vector>

#include "model/config.h"
#include "model/cuda/note_pool_op.h"
#include "model/mamba_mixer.h"
#include "model/note_block.h"
#include "model/weights.h"

namespace memmamba {

class TraceBuilder;

class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("cancelled") {}
};

struct LayerMemoryState {
  // One entry per sequence of the batch.
  std::vector<NoteTaker> takers;
  std::vector<torch::Tensor> pool_vectors;   // [K, S], zero rows for empty slots
  std::vector<torch::Tensor> pool_priority;  // [K], 1 for empty slots (masked anyway)
  // Step mode's cache of each slot's key and value under this layer's token attention
  // ([K * S] floats per sequence); rebuilt after a parallel chunk changed the pool.
  std::vector<std::vector<float>> slot_keys, slot_values;
  std::vector<char> slot_cache_valid;
  // On a GPU with windows of one token, the bookkeeping runs there (takers stay unused).
  cuda_ops::DevicePool device_pool;
};

// Everything one run carries from token to token: O(1) in the sequence length.
struct RunState {
  int64_t batch = 1;
  int64_t position = 0;
  torch::Tensor device_position;  // int64 [1] on the model's GPU: the position the kernels read
  std::shared_ptr<void> step_graph;  // GPU step mode's captured CUDA graph (model/cuda/step_graph.h)
  std::vector<MixerState> mixers;
  std::vector<LayerMemoryState> memory;
  std::vector<std::map<int64_t, torch::Tensor>> retention_sums;  // per layer: source -> summed dt [Di]
};

// One attention's weights over the state-pool slots, as the parallel mode computed them
// (differentiable when training): for the trainer's retrieval loss and for diagnostics.
struct AttentionTap {
  int64_t layer = 0;
  bool cross_layer = false;  // false: cross-token attention over the layer's own pool
  int64_t sequence = 0;      // row of the batch
  int64_t pos0 = 0;          // absolute position of the chunk's first token
  torch::Tensor rows;        // [n] int64: chunk rows that attended
  torch::Tensor weights;     // [n, M] attention weights, 0 where nothing is visible
  // [n, M] int64: the position each visible slot's note came from (its priority source);
  // -1 for empty slots and for notes carried in from an earlier chunk.
  torch::Tensor source;
  torch::Tensor applied;     // [n] bool: the context reached the stream (retrieval trigger)
};

struct RunOptions {
  MemorySettings memory;                 // thresholds and switches; MemorySettings::from(config) by default
  int64_t chunk_tokens = 4096;           // parallel mode works on this many tokens at a time
  TraceBuilder* trace = nullptr;         // batch 1 only
  std::vector<int64_t> retention_sources;  // exact retention curves for these positions
  int64_t retention_horizon = 4096;
  bool keep_hidden = true;               // return all hidden states (off for very long inputs)
  // Called with each chunk's final hidden states [B, n, D] and its first position.
  std::function<void(int64_t pos0, const torch::Tensor& hidden)> on_hidden;
  // Called with each layer's output (the residual stream) [B, n, D] in parallel mode.
  std::function<void(int64_t layer, int64_t pos0, const torch::Tensor& x)> on_layer_output;
  // Called, in parallel mode, for every cross-token and cross-layer attention of each sequence.
  std::function<void(const AttentionTap&)> on_attention;
  // Called, in parallel mode, with each layer's importance [T] for one sequence (differentiable
  // when training): what the note threshold tau1 is compared with.
  std::function<void(int64_t layer, int64_t sequence, int64_t pos0, const torch::Tensor& importance)> on_importance;
  // Called after each chunk; returning false cancels (throws Cancelled).
  std::function<bool(int64_t done, int64_t total)> progress;
  // Training only: [B, T] of this forward's tokens, 0 where the SSM must not take the token in
  // (mixer_forward); every layer applies it. Undefined: no mask.
  torch::Tensor ssm_input_mask;
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
  // The Note Block's candidate summaries s = W_N RMSNorm(x) of layer `layer` for its input x
  // [B, T, D] (what the pool compares and stores).
  torch::Tensor note_summaries(int64_t layer, const torch::Tensor& x) const;

 private:
  torch::Tensor layer_forward(int64_t layer, const torch::Tensor& x, RunState& state, const RunOptions& options,
                              const torch::Tensor& ssm_input_mask,
                              std::vector<struct ChunkBank>& banks) const;
  torch::Tensor forward_impl(const torch::Tensor& tokens, RunState& state, const RunOptions& options,
                             bool tokens_checked) const;
  torch::Tensor memory_on_device(int64_t layer, const torch::Tensor& x, RunState& state, const RunOptions& options,
                                 std::vector<struct ChunkBank>& banks, struct LayerRecords& records) const;
  torch::Tensor layer_step(int64_t layer, const torch::Tensor& x, RunState& state, const RunOptions& options,
                           std::vector<struct ChunkBank>& banks) const;
  torch::Tensor step_token_attention(int64_t layer, const torch::Tensor& x_row, LayerMemoryState& mem, int64_t b,
                                     const std::vector<int64_t>& visible_slots, const std::vector<float>& priorities,
                                     std::vector<float>* weights_out) const;
  void update_slot_cache(int64_t layer, LayerMemoryState& mem, int64_t b, int64_t slot, const float* note) const;
  void record_retention(int64_t layer, int64_t pos0, const torch::Tensor& dt, RunState& state,
                        const RunOptions& options) const;

  ModelConfig config_;
  Weights weights_;
};

// Greedy decoding in step mode after a parallel pass over the prompt.
std::vector<int64_t> generate_greedy(const MemMambaModel& model, const std::vector<int64_t>& prompt,
                                     int64_t max_new_tokens, const RunOptions& options,
                                     const std::function<bool(int64_t)>& stop = {});

}  // namespace memmamba
