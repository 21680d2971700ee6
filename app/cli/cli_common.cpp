#include "app/cli/cli_common.h"

#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include "model/log.h"
#include "model/runtime.h"

namespace memmamba::cli {

std::atomic<bool> g_interrupted{false};

const char* const kModelOptionsHelp = R"(model options:
  --checkpoint FILE     weights (safetensors); default: the bundled sample model
  --random-init SEED    untrained random weights instead of a checkpoint
  --config FILE         model config JSON for --random-init (default: the small model)
  --tokenizer FILE      SentencePiece model; default: the bundled tokenizer
  --device cpu|cuda     where to run (default cpu)
  --no-memory           run as Mamba only (Note Block and attentions off)
  --tau-note X          note threshold tau1 (default: the checkpoint's)
  --tau-retrieve X      retrieval threshold tau2 (default: the checkpoint's)
  --fusion-gain X       loudness of the memory's read-out, 0 to 100 (default: the checkpoint's)
  --importance learned|novelty   importance rule
  --policy priority|fifo         pool eviction policy
  --chunk N             tokens per parallel chunk (default 4096 on the CPU, 65536 on a GPU)
  --decimate            DeciMamba: drop tokens between layers (a Mamba-only model, or --no-memory);
                        at each decimating layer the tokens with the largest step sizes are kept
  --decimate-layers L,...  decimating layers (default: 3/4 of the depth, layer 6 of 8); implies --decimate
  --decimate-base N     L_base, tokens kept at the first decimating layer (default 2000)
  --decimate-beta X     each later decimating layer keeps X times as many (default 0.5)
  --decimate-min N      never fewer tokens than N (default 20)
  --decimate-tail N     the context's last N tokens are never dropped (default 16)
)";

const char* const kEditHelp =
    "  --edit FILE           memory edits, a JSON list (docs/interventions.md): drop, drop_from, pin,\n"
    "                        plant, thresholds, mask_read\n";

const std::set<std::string> kModelOptions = {"checkpoint", "random-init", "config", "tokenizer", "device",
                                             "tau-note",   "tau-retrieve", "importance", "policy", "chunk",
                                             "fusion-gain", "decimate-layers", "decimate-base", "decimate-beta",
                                             "decimate-min", "decimate-tail"};

std::set<std::string> with(std::set<std::string> base, std::initializer_list<std::string> more) {
  base.insert(more.begin(), more.end());
  return base;
}

void check_model_flags(const Args& args) {
  if (args.has("checkpoint") && args.has("random-init")) throw UsageError("give --checkpoint or --random-init, not both");
  if (args.has("config") && !args.has("random-init"))
    throw UsageError("--config only applies to --random-init (a checkpoint carries its config)");
  memory_overrides(args);
  args.get_int("random-init", 0, 0, INT64_MAX);
  // The name only: whether a GPU is there is asked when the model loads.
  const std::string device = args.get("device", "cpu");
  if (device != "cuda" && !device_choice_error(device).empty()) throw UsageError(device_choice_error(device));
}

ModelChoice model_choice(const Args& args) {
  ModelChoice choice;
  choice.checkpoint = args.get("checkpoint", "");
  if (args.has("random-init")) choice.random_seed = static_cast<uint64_t>(args.get_int("random-init", 0, 0, INT64_MAX));
  choice.config = args.get("config", "");
  choice.device = args.get("device", "cpu");
  return choice;
}

MemoryOverrides memory_overrides(const Args& args) {
  MemoryOverrides o;
  o.memory = !args.flag("no-memory");
  if (args.has("tau-note")) o.tau_note = args.get_double("tau-note", 0, -1.0, 2.0);
  if (args.has("tau-retrieve")) o.tau_retrieve = args.get_double("tau-retrieve", 0, -1.0, 2.0);
  if (args.has("fusion-gain")) o.fusion_gain = args.get_double("fusion-gain", 1, 0.0, 100.0);
  if (args.has("chunk")) o.chunk_tokens = args.get_int("chunk", 4096, 1, 1 << 20);
  try {
    if (args.has("importance")) o.importance = importance_rule_from_string(args.get("importance", ""));
    if (args.has("policy")) o.policy = pool_policy_from_string(args.get("policy", ""));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return o;
}

LoadedModel load_model(const Args& args) { return memmamba::load_model(model_choice(args)); }

Tokenizer load_tokenizer(const Args& args, const ModelConfig& config) {
  return memmamba::load_tokenizer(args.get("tokenizer", ""), config);
}

DecimationSettings decimation_settings(const Args& args, const ModelConfig& config) {
  const bool any = args.flag("decimate") || args.has("decimate-layers") || args.has("decimate-base") ||
                   args.has("decimate-beta") || args.has("decimate-min") || args.has("decimate-tail");
  if (!any) return {};
  DecimationSettings d = DecimationSettings::defaults_for(config);
  if (args.has("decimate-layers")) d.layers = args.get_int_list("decimate-layers", {}, 0, 1 << 20);
  d.base_length = args.get_int("decimate-base", d.base_length, 1, int64_t{1} << 40);
  d.beta = args.get_double("decimate-beta", d.beta, 1e-6, 1.0);
  d.min_length = args.get_int("decimate-min", d.min_length, 1, int64_t{1} << 40);
  d.protected_tail = args.get_int("decimate-tail", d.protected_tail, 0, int64_t{1} << 40);
  try {
    d.validate(config);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--decimate-layers: ") + e.what());
  }
  if (config.memory && !args.flag("no-memory"))
    throw UsageError("--decimate drops tokens from a Mamba-only run: give a Mamba-only checkpoint or --no-memory");
  return d;
}

RunOptions run_options(const Args& args, const MemMambaModel& model) {
  RunOptions o = memmamba::run_options(model, memory_overrides(args));
  o.decimation = decimation_settings(args, model.config());
  if (o.decimation.enabled())
    memmamba::log::info("decimation: " + o.decimation.to_json().dump() + " (DeciMamba: the context in one pass, tokens dropped between layers)");
  return o;
}

ProgressBar::ProgressBar(std::string label, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), tty_(::isatty(2)), start_(clock::now()) {}

bool ProgressBar::update(int64_t done, int64_t total) {
  const auto now = clock::now();
  const double secs = std::chrono::duration<double>(now - start_).count();
  const bool finished = done >= total;
  if (!tty_ && !finished && printed_ && std::chrono::duration<double>(now - last_).count() < 2.0) return !g_interrupted;
  last_ = now;
  printed_ = true;
  const double rate = secs > 0 ? done / secs : 0;
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * done / total) : 0;
  std::fprintf(stderr, "%s%s [%s%s] %3d%% %lld/%lld %s  %.1f/s%s", tty_ ? "\r" : "", label_.c_str(),
               std::string(filled, '#').c_str(), std::string(width - filled, ' ').c_str(),
               total > 0 ? static_cast<int>(100 * done / total) : 0, static_cast<long long>(done),
               static_cast<long long>(total), unit_.c_str(), rate, finished || !tty_ ? "\n" : "");
  std::fflush(stderr);
  return !g_interrupted;
}

}  // namespace memmamba::cli
