// How one forward or step runs: the memory's switches, chunking, the observer that
// records it, and the callbacks the trainer and the evaluations tap.
#pragma once
#include <torch/types.h>

#include <functional>
#include <memory>
#include <vector>

#include "model/decimation.h"
#include "model/memory/memory_edits.h"
#include "model/memory/note_block.h"

namespace memmamba {

class RunObserver;

// One attention's weights over the state-pool slots for the whole batch, as the parallel mode
// computed them (differentiable when training): for the trainer's retrieval loss and for
// diagnostics. One tap per attention, not per sequence: a step issues a few operators per
// layer for it, not a few per row.
struct AttentionTap {
  int64_t layer = 0;
  bool cross_layer = false;  // false: cross-token attention over the layer's own pool
  int64_t pos0 = 0;          // absolute position of the chunk's first token
  int64_t sequences = 0;     // B, the batch's sequences
  int64_t tokens = 0;        // T, the chunk's tokens per sequence
  // [n] int64: the batch's rows that attended; sequence b's chunk token t is row b * T + t.
  torch::Tensor rows;
  torch::Tensor weights;     // [n, M] attention weights, 0 where nothing is visible
  // [n, M] int64: the position each visible slot's note came from (its priority source);
  // -1 for empty slots and for notes carried in from an earlier chunk.
  torch::Tensor source;
  torch::Tensor applied;     // [n] bool: the context reached the stream (retrieval trigger)
};

struct RunOptions {
  MemorySettings memory;                 // thresholds and switches; MemorySettings::from(config) by default
  int64_t chunk_tokens = 4096;           // parallel mode works on this many tokens at a time
  // CPU parallel passes: the matrix products in bf16 (CpuBf16Projections; `run --bf16`).
  bool cpu_bf16_projections = false;
  RunObserver* observer = nullptr;       // records the run (a TraceBuilder); batch 1 only
  // Interventions on the memory (model/memory/memory_edits.h), for inference; set before a
  // run's first token (a state started without them cannot take them later).
  std::shared_ptr<const MemoryEdits> edits;
  std::vector<int64_t> retention_sources;  // exact retention curves for these positions
  int64_t retention_horizon = 4096;
  bool keep_hidden = true;               // return all hidden states (off for very long inputs)
  // Short chunks without memory on the GPU replay a captured CUDA graph (model/cuda/chunk_graph.h).
  bool chunk_graphs = true;
  // Called with each chunk's final hidden states [B, n, D] and its first position.
  std::function<void(int64_t pos0, const torch::Tensor& hidden)> on_hidden;
  // Called with each layer's output (the residual stream) [B, n, D] in parallel mode.
  std::function<void(int64_t layer, int64_t pos0, const torch::Tensor& x)> on_layer_output;
  // Called, in parallel mode, for every cross-token and cross-layer attention (the whole batch).
  std::function<void(const AttentionTap&)> on_attention;
  // Called, in parallel mode, with each layer's importance [B, T] (differentiable when
  // training): what the note threshold tau1 is compared with.
  std::function<void(int64_t layer, int64_t pos0, const torch::Tensor& importance)> on_importance;
  // Called after each chunk; returning false cancels (throws Cancelled).
  std::function<bool(int64_t done, int64_t total)> progress;
  // DeciMamba's token dropping between layers (model/decimation.h), for a model or run without
  // memory; applies to a parallel pass over a whole context from its first token.
  DecimationSettings decimation;
  // Training only: [B, T] of this forward's tokens, 0 where the SSM must not take the token in
  // (mixer_forward); every layer applies it. Undefined: no mask.
  torch::Tensor ssm_input_mask;
};

}  // namespace memmamba
