// Running the model over a tokenized text into a Trace, with per-token loss, and
// the throughput benchmark. Shared by the CLI and the app.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "model/memmamba.h"
#include "model/tokenizer.h"
#include "model/trace.h"

namespace memmamba {

struct TraceRunRequest {
  std::string text;                      // may be empty when only tokens are known
  std::vector<int32_t> tokens;
  std::vector<int64_t> char_begin, char_end;
  RunOptions options;                    // memory settings, chunking, retention sources, progress
  TraceOptions trace_options;
  Json run_info = Json::object();        // recorded in the trace as given (checkpoint, device, ...)
};

// Bytes a trace of `tokens` tokens will hold with these options (per-token signals plus
// attention rows at their kept width; an upper bound, as if every token triggered).
uint64_t estimate_trace_bytes(const ModelConfig& config, int64_t tokens, const TraceOptions& options);

// Bounded mode: narrows the options until the estimate fits `budget_bytes`, first by
// keeping fewer slots per attention row (down to 2), then by keeping attention rows only
// for the last tokens. Returns a sentence describing what was narrowed (empty if nothing).
std::string fit_trace_to_budget(const ModelConfig& config, int64_t tokens, uint64_t budget_bytes,
                                TraceOptions& options);

// Runs the parallel mode with tracing and per-token loss. Throws Cancelled when progress says so.
Trace trace_tokens(const MemMambaModel& model, TraceRunRequest request);

// Mean next-token loss per position (NaN at the last), without tracing.
std::vector<float> token_losses(const MemMambaModel& model, const std::vector<int32_t>& tokens,
                                const RunOptions& options);

struct BenchRow {
  std::string mode;      // "parallel+trace", "parallel", "step"
  int64_t tokens;
  double seconds;
  double tokens_per_second;
  double peak_rss_mb;    // peak resident memory during this row
  double bandwidth_gbs = 0;  // scan rows: bytes the scan must move (inputs once, y once) per second
  std::string detail = "";   // what else the row measured (pool rows: notes per layer)
  std::string profile = "";  // time per section of the forward rows (MEMMAMBA_PROFILE=1)
};

// Times the model at each length on random tokens, or on text_tokens repeated to the length;
// step mode over step_tokens tokens. On a GPU it also times the selective scan alone and the
// note pool's two walks (sequential and by events) on each layer's own summaries.
std::vector<BenchRow> run_benchmark(const MemMambaModel& model, const RunOptions& options, const std::vector<int64_t>& lengths,
                                    int64_t step_tokens, bool traced, uint64_t seed,
                                    const std::function<void(const BenchRow&)>& on_row = {},
                                    const std::vector<int32_t>& text_tokens = {});

double current_peak_rss_mb();
void reset_peak_rss();

}  // namespace memmamba
