// The memory's part of one layer, in the paper's order: the Note Block (summaries, then
// the pool walk: notes, evictions, retrieval triggers), cross-token attention for the
// triggered tokens and its fusion, then (every p-th layer) cross-layer attention over
// the pools of the last g layers and its fusion. The same code serves parallel chunks
// and single steps; what it decides and reads goes to the run's observer and taps.
#pragma once
#include <torch/types.h>

#include <memory>

#include <vector>

#include "model/memory/layer_pool.h"
#include "model/run_options.h"
#include "model/weights.h"

namespace memmamba {

// Per-token figures of the observed sequence that a layer reports to the observer.
struct LayerSignals {
  explicit LayerSignals(int64_t T)
      : importance(T, 0.f), istate(T, 0.f), token_norm(T, 0.f), layer_norm(T, 0.f), flags(T, 0) {}
  std::vector<float> importance, istate, token_norm, layer_norm;
  std::vector<uint8_t> flags;
};

// The Note Block's inputs s = W_N RMSNorm(x) [B, T, S] (and the learned importance) for x [B, T, D]
// (the context mix's output where the config has one).
NoteInputs note_inputs(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& x, bool learned_rule);

// What the memory's summaries and queries are taken from (ModelConfig::memory_context): x itself,
// or per channel a learned mix of x over the token and the memory_context - 1 before it, a
// causal depthwise convolution that reads `tail` (the inputs before x's first token, [B, k-1, D],
// zeros where undefined). Sets `tail` to the last k - 1 inputs when given.
torch::Tensor memory_inputs(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                            torch::Tensor* tail);

// x: [B, T, D] the layer input at absolute position pos0; banks: this chunk's banks of
// the layers below (this layer's is written). Returns x + F_tok + F_lay. For an observed
// run it hands the observer its reports through RunObserver::later, and those fill `signals`
// (so read them in a report queued after this call).
torch::Tensor memory_forward(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& x, int64_t pos0,
                             LayerPool& pool, std::vector<LayerBank>& banks, const RunOptions& options,
                             const std::shared_ptr<LayerSignals>& signals);

}  // namespace memmamba
