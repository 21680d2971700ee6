// Collects what a run reports into a Trace: the model calls it as its RunObserver chunk
// by chunk (or token by token in step mode) with plain arrays. Torch-free.
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

#include "model/run_observer.h"
#include "model/trace.h"

namespace memmamba {

// The most entries an attention row keeps: its top-k (at least 1, as the builder keeps), no
// more than the columns it reads (a layer's own pool, or the pools of its cross-layer group).
// The trace budget's estimate and the builder's reservation both count with it.
inline int64_t attention_row_width(const ModelConfig& config, int64_t topk, bool cross_layer) {
  return std::min<int64_t>(std::max<int64_t>(1, topk),
                           cross_layer ? config.pool_slots * config.cross_layer_groups : config.pool_slots);
}

class TraceBuilder : public RunObserver {
 public:
  TraceBuilder(const ModelConfig& config, const TraceOptions& options);
  ~TraceBuilder() override;
  TraceBuilder(const TraceBuilder&) = delete;
  TraceBuilder& operator=(const TraceBuilder&) = delete;

  // A run of `tokens` tokens is coming: reserves the most attention rows it can report, so
  // that chunks append without moving what came before, and has a thread of its own make
  // their pages ready while the model computes (first writes to fresh pages were half of the
  // time to take a traced GPU chunk's rows in). Call before the first report.
  void expect_tokens(int64_t tokens);

  const TraceOptions& options() const { return trace_.options; }
  bool wants_attention(int64_t position) const {
    return trace_.options.record_attention && position >= trace_.options.detail_begin &&
           position < trace_.options.detail_end;
  }
  int64_t attention_width() const override {
    return trace_.options.record_attention ? trace_.options.attention_topk : 0;
  }
  void layer_tokens(int32_t layer, int64_t pos0, int64_t n, const float* importance, const float* istate,
                    const uint8_t* flags, const float* token_norm, const float* layer_norm,
                    const float* log_decay) override;
  void notes_made(int32_t layer, const std::vector<NoteMade>& notes) override;
  void pool_events(int32_t layer, const std::vector<PoolEventRecord>& events) override;
  // Rows outside the detail range are left out; padding entries are skipped.
  void attention_rows(int32_t layer, bool cross_layer, const AttentionRowsIn& rows) override;
  void retention(int32_t layer, int64_t source, std::vector<float> values) override;
  void losses(int64_t pos0, const std::vector<float>& loss);

  // Sorts what needs sorting and hands the trace over.
  Trace finish();
  Trace& trace() { return trace_; }

 private:
  void ensure_length(int64_t n);
  void join_pages();
  Trace trace_;
  std::vector<bool> cross_layer_reads_;  // per layer: whether it reads the pools across layers
  int64_t row_width_[2] = {0, 0};        // attention_row_width of a token / cross-layer row
  std::thread pages_;
  std::vector<uint32_t> row_entries_;  // attention_rows' scratch: entries kept per row
  std::vector<size_t> row_starts_;     // and where each row's go
  std::vector<std::vector<int64_t>> local_to_global_;
};

}  // namespace memmamba
