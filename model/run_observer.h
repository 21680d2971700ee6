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

// One read's attention rows, each reduced to its `width` largest weights, as the read left
// them (a GPU run's pinned copies): no per-entry pass before the observer's own.
struct AttentionRowsIn {
  std::vector<int64_t> positions;  // ascending: the rows' token positions
  std::vector<int64_t> rows_at;    // row r's entries start at rows_at[r] * width (empty: at r * width)
  int64_t width = 0;
  const int32_t* column = nullptr;  // per entry: a column of the attention, -1 none
  const int32_t* bank = nullptr;    // per entry: the bank index it read, -1 none
  const float* weight = nullptr;    // per entry
  std::vector<int32_t> bank_note;   // bank index -> the layer-local note it held for these rows, -1 none
  // Column c is slot column_slot[c] of layer column_layer[c]'s pool.
  std::vector<int32_t> column_layer, column_slot;

  size_t first_entry(size_t row) const {
    return static_cast<size_t>(rows_at.empty() ? static_cast<int64_t>(row) : rows_at[row]) * static_cast<size_t>(width);
  }
  // An entry's layer-local note, or -1 where the entry is padding (no column, bank or note).
  int32_t note_of(size_t entry) const {
    if (column[entry] < 0) return -1;
    const int32_t b = bank[entry];
    return b >= 0 && static_cast<size_t>(b) < bank_note.size() ? bank_note[static_cast<size_t>(b)] : -1;
  }
};

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
  // One read's attention rows (see AttentionRowsIn).
  virtual void attention_rows(int32_t layer, bool cross_layer, const AttentionRowsIn& rows) = 0;
  // Runs `report` against this observer: at once, or (an observer on a thread of its own) in
  // order with the other reports, on that thread. A report may wait for the GPU there, and
  // may use only what it holds.
  virtual void later(std::function<void(RunObserver&)> report) { report(*this); }
  // More of the retention curve of `source` in `layer` (appended to what came before).
  virtual void retention(int32_t layer, int64_t source, std::vector<float> values) = 0;
};

}  // namespace memmamba
