// One pipeline from what a user gives (a text or a passkey case, a checkpoint or the bundled
// model, a tokenizer, a device, thresholds, memory edits, a trace budget) to a trace or a
// loaded model. The CLI and the Explorer's worker both run it; they keep only their flags,
// dialogs, progress and threads.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "model/book/book.h"
#include "model/eval/passkey.h"
#include "model/json.h"
#include "model/memmamba.h"
#include "model/memory/memory_edits.h"
#include "model/tokenizer.h"
#include "model/trace.h"

namespace memmamba {

// A choice that cannot be honoured (a device that is not there, a missing bundled file,
// settings that do not go together): the CLI answers it as a usage error (exit 2).
class ChoiceError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Which model to run.
struct ModelChoice {
  std::string checkpoint;               // empty: the bundled model
  std::optional<uint64_t> random_seed;  // untrained random weights instead of a checkpoint
  std::string config;                   // with random_seed: a config JSON (empty: the small model)
  std::string device = "cpu";           // cpu or cuda
  // Said after "no checkpoint given and no bundled model found" (how this front end chooses one).
  std::string missing_hint = "pass --checkpoint FILE or --random-init SEED";
  // What the loaded model is keyed by (a front end reloads only when it changes).
  std::string key() const;
};

// "cpu" or "cuda" (when this build and machine have a GPU); anything else is a ChoiceError.
torch::Device parse_device(const std::string& name);

struct LoadedModel {
  MemMambaModel model;
  std::string source;  // the checkpoint's path, or "random-init:SEED"
  std::string hash;    // the checkpoint file's hash ("" for random weights)
  bool trained = false;
  std::string describe() const;  // for titles and logs: the source and the device
};

LoadedModel load_model(const ModelChoice& choice);

// The tokenizer at `path` (empty: the bundled one), checked against the model's vocabulary.
// `missing_hint` says how to choose one when none is given and none is bundled.
Tokenizer load_tokenizer(const std::string& path, const ModelConfig& config,
                         const std::string& missing_hint = "pass --tokenizer FILE");

// Which model produced a result: recorded in every trace and result file.
Json model_identity(const LoadedModel& model, const Tokenizer& tokenizer);

// Run-time changes to the model's memory settings; unset fields keep the checkpoint's.
struct MemoryOverrides {
  bool memory = true;  // false: Mamba-only (Note Block and attentions off)
  std::optional<double> tau_note, tau_retrieve, fusion_gain;
  std::optional<ImportanceRule> importance;
  std::optional<PoolPolicy> policy;
  std::optional<int64_t> chunk_tokens;
};
RunOptions run_options(const MemMambaModel& model, const MemoryOverrides& overrides);

// Memory edits from a file (docs/interventions.md), checked against the model and, where
// known (length >= 0), the positions a run reaches; each is logged.
std::shared_ptr<const MemoryEdits> load_edit_file(const std::string& path, const ModelConfig& config, int64_t length);

// What a trace run is doing, for a front end's progress line.
enum class TraceStage { Tokenizing, Running, Fidelity };

struct TraceJob {
  std::string text;                      // the text to run (UTF-8)
  std::optional<BookText> book;          // the book it was read from: its record goes into run_info
  std::string source_file;               // that file, recorded absolute (and relative to trace_file's folder)
  std::string trace_file;                // where the trace will be written ("" when not known)
  RunOptions options;                    // memory settings, chunking, retention sources, progress
  TraceOptions trace_options;
  int64_t max_tokens = INT64_MAX;        // the text is cut to its first max_tokens tokens
  uint64_t trace_budget_bytes = uint64_t{2048} << 20;
  // Memory edits: a JSON list, or a file holding one (the file wins when both are given).
  Json edits;
  std::string edits_file;
  int64_t edit_positions_after_text = 0;  // positions a later generation reaches past the text
  int64_t fidelity_tokens = 0;            // >= 2: also measure ETMF / ECLMF on this many tokens
  std::function<bool()> keep_going;       // asked while tokenizing; false cancels (throws Cancelled)
  std::function<void(TraceStage)> stage;
};

// Tokenizes, fits the trace to its budget, runs the model with tracing and records what ran
// (model identity, book, source file, edits, fidelity) in the trace's run_info.
Trace trace_text(const LoadedModel& model, const Tokenizer& tokenizer, TraceJob job);

// One passkey case, traced and answered as the evaluation answers it.
struct PasskeyCaseJob {
  int64_t length = 4096;
  double depth = 0.5;
  std::string key;               // a key of the case's kind in place of the generator's; empty keeps it
  uint64_t seed = 0;
  eval::CaseSpec spec;           // key kind and length, wording, facts (a grid's cases: its own spec)
  bool filler_haystack = false;  // the repeated filler instead of book sentences
  std::string haystack_book;     // empty: the bundled sample book (the filler where none is bundled)
  int64_t answer_tokens = 8;
  TraceJob trace;                // options, budget, edits and callbacks for the prompt's run
};
struct PasskeyCaseRun {
  Trace trace;
  Json record;  // the evaluation's case record: answer, truth, where the key was noted
};
PasskeyCaseRun trace_passkey_case(const LoadedModel& model, const Tokenizer& tokenizer, PasskeyCaseJob job);

}  // namespace memmamba
