// What a run reports while it runs, as plain arrays: each layer's per-token signals, the
// notes made, the pool's events, attention rows and retention curves. The model calls an
// observer and knows nothing of what it builds; TraceBuilder (trace_builder.h) is the one
// that writes traces. Batch 1 only. Torch-free.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/memory/note_block.h"

namespace memmamba {

class RunObserver {
 public:
  virtual ~RunObserver() = default;

  // Attention entries wanted per row, highest weight first (0: no attention rows).
  virtual int64_t attention_width() const = 0;
  // Per-token signals of one layer for tokens [pos0, pos0 + n); flags are TokenFlag bits
  // (model/trace.h: 1 noted, 2 triggered).
  virtual void layer_tokens(int32_t layer, int64_t pos0, int64_t n, const float* importance, const float* istate,
                            const uint8_t* flags, const float* token_norm, const float* layer_norm,
                            const float* log_decay) = 0;
  // Notes in the order of their layer-local ids, then the events they caused.
  virtual void notes_made(int32_t layer, const std::vector<NoteMade>& notes) = 0;
  virtual void pool_events(int32_t layer, const std::vector<PoolEventRecord>& events) = 0;
  // Attention rows reduced to their `width` largest weights, rows at ascending
  // `positions`. Entry e of row r (index r * width + e) names a column of the attention
  // (`column`, -1 for padding), the layer-local note that column held for the row and its
  // weight; column c is slot `column_slot[c]` of layer `column_layer[c]`'s pool.
  virtual void attention_rows(int32_t layer, bool cross_layer, const std::vector<int64_t>& positions, int64_t width,
                              const int32_t* column, const int32_t* local_note, const float* weight,
                              const std::vector<int32_t>& column_layer, const std::vector<int32_t>& column_slot) = 0;
  // The same, with the arrays kept alive by `arrays` for as long as the observer needs them
  // (an observer that works on a thread of its own keeps it until it gets to the rows).
  virtual void attention_rows_held(int32_t layer, bool cross_layer, std::vector<int64_t> positions, int64_t width,
                                   std::shared_ptr<const void> arrays, const int32_t* column, const int32_t* local_note,
                                   const float* weight, std::vector<int32_t> column_layer,
                                   std::vector<int32_t> column_slot) {
    attention_rows(layer, cross_layer, positions, width, column, local_note, weight, column_layer, column_slot);
  }
  // Runs `report` against this observer: at once, or (an observer on a thread of its own) in
  // order with the other reports, on that thread. A report may wait for the GPU there, and
  // may use only what it holds.
  virtual void later(std::function<void(RunObserver&)> report) { report(*this); }
  // More of the retention curve of `source` in `layer` (appended to what came before).
  virtual void retention(int32_t layer, int64_t source, std::vector<float> values) = 0;
};

}  // namespace memmamba
