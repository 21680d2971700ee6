// memmamba: the command-line front end of the model library.
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <unistd.h>

#include "app/cli/cli_args.h"
#include "model/checkpoint.h"
#include "model/eval/passkey_eval.h"
#include "model/eval/perplexity.h"
#include "model/eval/fidelity.h"
#include "model/eval/documents_eval.h"
#include "model/eval/transformer_baseline.h"
#include "model/file_io.h"
#include "model/log.h"
#include "model/memmamba.h"
#include "model/runner.h"
#include "model/sample_files.h"
#include "model/train/token_shards.h"
#include "model/train/trainer.h"
#include "model/safetensors.h"
#include "model/selective_scan.h"
#include "model/book/book.h"
#include "model/memory/memory_edits.h"
#include "model/text_input.h"
#include "model/autocast.h"
#include "model/tokenizer.h"
#include "model/trace.h"

namespace fs = std::filesystem;
using namespace memmamba;
using memmamba::cli::Args;
using memmamba::cli::UsageError;

namespace {

enum ExitCode { kOk = 0, kFailure = 1, kUsage = 2, kBadInput = 3, kInterrupted = 130 };

std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }

const char* kMainHelp = R"(memmamba: run, trace and measure MemMamba models

usage: memmamba <command> [options]      (memmamba <command> --help for details)

commands:
  info             summarise a checkpoint or a trace file
  run              trace a text file and write the trace
  generate         greedy generation in step mode after a prompt
  bench            tokens/s over sequence lengths (parallel traced, step)
  tokenizer-train  train a SentencePiece tokenizer on text files
  data             tokenize books into training shards (train / held-out split by book)
  train            train a model on shards (AdamW, warm-up + cosine, checkpoints, resume)
  convert          rewrite a checkpoint in another storage type (f32, bf16, f16)
  init             write a checkpoint of untrained random weights for a config
  eval passkey     passkey retrieval over a grid of lengths x depths
  eval ppl         perplexity by context length on a book
  eval fidelity    ETMF (and ETMF_delta) and ECLMF on a book
  eval docs        noisy multi-document retrieval (book paragraphs)

exit codes: 0 success, 1 failure while running, 2 bad command line,
            3 bad input file (text, checkpoint, tokenizer, trace), 130 interrupted
)";

const char* kModelOptionsHelp = R"(model options:
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
)";

const std::set<std::string> kModelOptions = {"checkpoint", "random-init", "config", "tokenizer", "device",
                                             "tau-note",   "tau-retrieve", "importance", "policy", "chunk",
                                             "fusion-gain"};

std::set<std::string> with(std::set<std::string> base, std::initializer_list<std::string> more) {
  base.insert(more.begin(), more.end());
  return base;
}

struct LoadedModel {
  MemMambaModel model;
  std::string source;   // checkpoint path or "random-init:SEED"
  std::string hash;
  bool trained;
};

LoadedModel load_model(const Args& args) {
  torch::Device device(torch::kCPU);
  const std::string dev = args.get("device", "cpu");
  if (dev == "cuda") {
    if (!torch::cuda::is_available()) throw UsageError("--device cuda: no CUDA device is available to this build");
    device = torch::Device(torch::kCUDA);
  } else if (dev != "cpu") {
    throw UsageError("--device must be cpu or cuda, not \"" + dev + "\"");
  }
  if (args.has("checkpoint") && args.has("random-init")) throw UsageError("give --checkpoint or --random-init, not both");
  if (args.has("random-init")) {
    const int64_t seed = args.get_int("random-init", 0, 0, INT64_MAX);
    ModelConfig cfg = args.has("config") ? ModelConfig::load(args.get("config", "")) : ModelConfig{};
    log::warn("using untrained random weights (seed " + std::to_string(seed) +
              "): outputs show the mechanism, not a trained model");
    MemMambaModel m = MemMambaModel::random(cfg, static_cast<uint64_t>(seed));
    m.to(device);
    return {std::move(m), "random-init:" + std::to_string(seed), "", false};
  }
  if (args.has("config")) throw UsageError("--config only applies to --random-init (a checkpoint carries its config)");
  std::string path = args.get("checkpoint", "");
  if (path.empty()) {
    path = find_sample_file("memmamba-small.safetensors");
    if (path.empty())
      throw UsageError("no checkpoint given and no bundled model found: pass --checkpoint FILE or --random-init SEED");
  }
  Checkpoint ck = load_checkpoint(path);
  MemMambaModel m(ck.config, std::move(ck.weights));
  m.to(device);
  return {std::move(m), path, file_hash(path), true};
}

// Which model produced a result: recorded in every trace and result file.
Json model_identity(const LoadedModel& lm, const Tokenizer& tok) {
  Json j = Json::object();
  j["checkpoint"] = lm.source;
  j["checkpoint_hash"] = lm.hash;
  j["trained"] = lm.trained;
  j["tokenizer"] = tok.path();
  return j;
}

Tokenizer load_tokenizer(const Args& args, const ModelConfig& config) {
  std::string path = args.get("tokenizer", "");
  if (path.empty()) {
    path = find_sample_file("tokenizer.model");
    if (path.empty()) throw UsageError("no tokenizer given and no bundled tokenizer found: pass --tokenizer FILE");
  }
  Tokenizer t = Tokenizer::load(path);
  if (t.vocab_size() > config.vocab_size)
    throw TokenizerError("tokenizer " + path + " has " + std::to_string(t.vocab_size()) +
                         " pieces but the model's vocabulary holds " + std::to_string(config.vocab_size) +
                         ": they do not belong together");
  return t;
}

// Parses every numeric or named model flag once, so a bad value is a usage error (exit 2)
// before any file is read.
void check_model_flags(const Args& args) {
  if (args.has("checkpoint") && args.has("random-init")) throw UsageError("give --checkpoint or --random-init, not both");
  if (args.has("config") && !args.has("random-init"))
    throw UsageError("--config only applies to --random-init (a checkpoint carries its config)");
  args.get_double("tau-note", 0, -1.0, 2.0);
  args.get_double("tau-retrieve", 0, -1.0, 2.0);
  args.get_double("fusion-gain", 1, 0.0, 100.0);
  args.get_int("chunk", 4096, 1, 1 << 20);
  args.get_int("random-init", 0, 0, INT64_MAX);
  try {
    if (args.has("importance")) importance_rule_from_string(args.get("importance", ""));
    if (args.has("policy")) pool_policy_from_string(args.get("policy", ""));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  const std::string dev = args.get("device", "cpu");
  if (dev != "cpu" && dev != "cuda") throw UsageError("--device must be cpu or cuda, not \"" + dev + "\"");
}

RunOptions run_options(const Args& args, const MemMambaModel& model) {
  RunOptions o = model.default_options();
  if (args.flag("no-memory")) o.memory.enabled = false;
  o.memory.tau_note = args.get_double("tau-note", o.memory.tau_note, -1.0, 2.0);
  o.memory.tau_retrieve = args.get_double("tau-retrieve", o.memory.tau_retrieve, -1.0, 2.0);
  o.memory.fusion_gain = args.get_double("fusion-gain", o.memory.fusion_gain, 0.0, 100.0);
  try {
    if (args.has("importance")) o.memory.importance = importance_rule_from_string(args.get("importance", ""));
    if (args.has("policy")) o.memory.policy = pool_policy_from_string(args.get("policy", ""));
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  o.chunk_tokens = args.get_int("chunk", o.chunk_tokens, 1, 1 << 20);
  return o;
}

class ProgressBar {
 public:
  explicit ProgressBar(std::string label, std::string unit = "tokens")
      : label_(std::move(label)), unit_(std::move(unit)), tty_(::isatty(2)), start_(clock::now()) {}
  // Redraws in place on a terminal; elsewhere (logs, pipes) prints a line at most every 2 s.
  bool update(int64_t done, int64_t total) {
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

 private:
  using clock = std::chrono::steady_clock;
  std::string label_, unit_;
  bool tty_;
  bool printed_ = false;
  clock::time_point start_, last_;
};

void print_trace_summary(const Trace& t) {
  const int64_t T = t.length();
  std::printf("tokens            %lld\n", static_cast<long long>(T));
  double loss_sum = 0;
  int64_t loss_n = 0;
  for (float l : t.loss)
    if (std::isfinite(l)) { loss_sum += l; ++loss_n; }
  if (loss_n) std::printf("mean loss         %.4f nats (perplexity %.1f)\n", loss_sum / loss_n, std::exp(loss_sum / loss_n));
  std::printf("notes             %zu   pool events %zu\n", t.notes.size(), t.events.size());
  std::printf("run               %s\n", t.run_info.dump().c_str());
  std::printf("\nlayer  noted%%  triggered%%  mean I   notes  evictions  drops  attn rows  x-layer rows  mean log-decay\n");
  for (size_t l = 0; l < t.layers.size(); ++l) {
    const LayerTrace& lt = t.layers[l];
    int64_t noted = 0, trig = 0, notes = 0, evict = 0, drop = 0;
    double imp = 0, decay = 0;
    for (int64_t i = 0; i < T; ++i) {
      noted += (lt.flags[i] & kNoted) != 0;
      trig += (lt.flags[i] & kTriggered) != 0;
      imp += lt.importance[i];
      decay += lt.log_decay[i];
    }
    for (const NoteInfo& n : t.notes) notes += n.layer == static_cast<int32_t>(l);
    for (const PoolEvent& e : t.events) {
      if (e.layer != static_cast<int32_t>(l)) continue;
      evict += e.kind == 1;
      drop += e.kind == 2;
    }
    std::printf("%5zu  %6.2f  %10.2f  %6.3f  %6lld  %9lld  %5lld  %9zu  %12zu  %14.4f\n", l, 100.0 * noted / T,
                100.0 * trig / T, imp / T, static_cast<long long>(notes), static_cast<long long>(evict),
                static_cast<long long>(drop), lt.token_attention.rows(), lt.layer_attention.rows(), decay / T);
  }
}

int cmd_info(const std::vector<std::string>& argv) {
  Args args(argv, {}, {"help"});
  if (args.flag("help") || args.positionals().size() != 1) {
    std::printf("usage: memmamba info FILE\n\nSummarises a checkpoint (config, parameters, dtypes) or a trace.\n");
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string path = args.positionals()[0];
  SafetensorsFile f = SafetensorsFile::load(path);
  auto fmt = f.metadata().find("format");
  if (fmt != f.metadata().end() && fmt->second == "memmamba-trace") {
    Trace t = Trace::load(path);
    std::printf("trace             %s\n", path.c_str());
    std::printf("config            %s\n", t.config.dump().c_str());
    print_trace_summary(t);
    return kOk;
  }
  Checkpoint ck = parse_checkpoint(read_file(path, uint64_t{1} << 34), path);
  std::printf("checkpoint        %s\n", path.c_str());
  std::printf("hash              %s\n", file_hash(path).c_str());
  std::printf("parameters        %lld\n", static_cast<long long>(parameter_count(ck.config)));
  std::printf("storage dtype     %s\n", dtype_name(f.tensors().begin()->second.dtype));
  std::printf("config\n%s\n", ck.config.to_json().dump(2).c_str());
  for (const auto& [k, v] : ck.metadata) std::printf("%-17s %s\n", k.c_str(), v.c_str());
  return kOk;
}

// --edit FILE: memory edits checked against the model and, where known, the text's length.
std::shared_ptr<const MemoryEdits> load_edits(const Args& args, const ModelConfig& config, int64_t length) {
  if (!args.has("edit")) return nullptr;
  auto edits = std::make_shared<const MemoryEdits>(MemoryEdits::load(args.get("edit", ""), config, length));
  for (const MemoryEdit& e : edits->edits()) log::info("memory edit: " + e.describe());
  return edits;
}

const char* kEditHelp =
    "  --edit FILE           memory edits, a JSON list (docs/interventions.md): drop, drop_from, pin,\n"
    "                        plant, thresholds, mask_read\n";

int cmd_run(const std::vector<std::string>& argv) {
  Args args(argv, with(kModelOptions, {"out", "topk", "detail-begin", "detail-end", "retention-sources", "retention-horizon", "max-tokens", "trace-budget-mb", "fidelity", "encoding", "edit"}),
            {"help", "no-memory", "keep-boilerplate", "strip-markdown"});
  if (args.flag("help") || args.positionals().size() != 1) {
    std::printf("usage: memmamba run TEXT_FILE --out TRACE [options]\n\n"
                "Tokenizes the text, runs the model in parallel mode with tracing, writes the trace\n"
                "(atomically: Ctrl-C or an error leave no partial file) and prints a summary.\n\n%s"
                "trace options:\n"
                "  --out FILE                 trace file to write (required)\n"
                "  --topk N                   attention entries kept per token (default 8)\n"
                "  --detail-begin/--detail-end P   attention rows only for tokens in [begin, end)\n"
                "  --retention-sources P,...  exact retention curves for these token positions\n"
                "  --retention-horizon N      length of those curves (default 4096)\n"
                "  --max-tokens N             stop after the first N tokens of the text\n"
                "  --trace-budget-mb N        bound the trace's memory (default 2048): fewer slots per\n"
                "                             attention row, then rows only for the last tokens\n"
                "  --fidelity N               also measure ETMF / ECLMF per layer on the first N tokens\n"
                "                             (kept in the trace; the Explorer's decay view draws them)\n"
                "book options (TEXT_FILE may be text, Markdown, HTML, EPUB or PDF):\n"
                "  --encoding E               auto (default: a BOM, else UTF-8, else CP-1252), utf-8,\n"
                "                             utf-16le, utf-16be, latin-1 or cp1252\n"
                "  --keep-boilerplate         keep a Project Gutenberg file's licence header and footer\n"
                "  --strip-markdown           drop Markdown markup (headings stay as lines)\n"
                "memory edits:\n%s",
                kModelOptionsHelp, kEditHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string out = args.require("out");
  check_model_flags(args);
  const int64_t topk = args.get_int("topk", 8, 1, 4096);
  const int64_t detail_begin = args.get_int("detail-begin", 0, 0, INT64_MAX);
  const int64_t detail_end = args.get_int("detail-end", INT64_MAX, 0, INT64_MAX);
  const auto retention_sources = args.get_int_list("retention-sources", {}, 0, INT64_MAX);
  const int64_t retention_horizon = args.get_int("retention-horizon", 4096, 1, 1 << 24);
  const int64_t max_tokens = args.get_int("max-tokens", INT64_MAX, 1, INT64_MAX);
  const int64_t budget_mb = args.get_int("trace-budget-mb", 2048, 1, 1 << 24);
  const int64_t fidelity_tokens = args.get_int("fidelity", 0, 0, 1 << 20);
  BookOptions book_options;
  book_options.encoding = args.get("encoding", "auto");
  book_options.keep_boilerplate = args.flag("keep-boilerplate");
  book_options.strip_markdown = args.flag("strip-markdown");
  const BookText book_text = load_book(args.positionals()[0], book_options);
  log::info(args.positionals()[0] + ": " + book_text.format + ", " + book_text.encoding +
            (book_text.boilerplate_removed ? ", Project Gutenberg boilerplate skipped" : "") + ", " +
            std::to_string(book_text.chapters.size()) + " chapters");
  const std::string& text = book_text.text;
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  TraceRunRequest req;
  req.options = run_options(args, lm.model);
  req.trace_options.attention_topk = static_cast<int32_t>(topk);
  req.trace_options.detail_begin = detail_begin;
  req.trace_options.detail_end = detail_end;
  req.options.retention_sources = retention_sources;
  req.options.retention_horizon = retention_horizon;
  Encoding enc = tok.encode(text);
  if (static_cast<int64_t>(enc.ids.size()) > max_tokens) {
    enc.ids.resize(max_tokens);
    enc.begin.resize(max_tokens);
    enc.end.resize(max_tokens);
  }
  if (enc.ids.empty()) throw TextError(args.positionals()[0] + " gives no tokens");
  const std::string narrowed = fit_trace_to_budget(lm.model.config(), static_cast<int64_t>(enc.ids.size()),
                                                   static_cast<uint64_t>(budget_mb) << 20, req.trace_options);
  if (!narrowed.empty()) log::warn(narrowed);
  req.text = text;
  req.tokens = std::move(enc.ids);
  req.char_begin = std::move(enc.begin);
  req.char_end = std::move(enc.end);
  req.run_info = model_identity(lm, tok);
  req.run_info["book"] = book_text.record(req.char_end);
  req.options.edits = load_edits(args, lm.model.config(), static_cast<int64_t>(req.tokens.size()));
  if (req.options.edits) req.run_info["memory_edits"] = req.options.edits->to_json();
  // Where the book is, absolute and relative to the trace's folder, so that a trace moved
  // with its book, or opened from another folder, still finds it.
  {
    namespace fs = std::filesystem;
    const fs::path book = fs::absolute(args.positionals()[0]).lexically_normal();
    const fs::path trace_dir = fs::absolute(args.get("out", "")).lexically_normal().parent_path();
    req.run_info["source_file"] = book.string();
    const fs::path relative = book.lexically_relative(trace_dir);
    if (!relative.empty()) req.run_info["source_file_relative"] = relative.string();
  }
  ProgressBar bar("tracing");
  req.options.progress = [&](int64_t done, int64_t total) { return bar.update(done, total); };
  const auto t0 = std::chrono::steady_clock::now();
  const RunOptions fidelity_run = req.options;
  Trace trace = trace_tokens(lm.model, std::move(req));
  if (fidelity_run.edits) fidelity_run.edits->check_note_ids(trace);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (fidelity_tokens >= 2) {
    eval::FidelityOptions fo;
    fo.run = fidelity_run;
    fo.run.progress = nullptr;
    const int64_t n = std::min<int64_t>(fidelity_tokens, trace.length());
    trace.run_info["fidelity"] =
        eval::memory_fidelity(lm.model, std::vector<int32_t>(trace.tokens.begin(), trace.tokens.begin() + n), fo);
  }
  trace.save(out);
  std::printf("wrote %s (%.1f MB) in %.2f s, %.0f tokens/s\n", out.c_str(), trace.memory_bytes() / 1e6, secs,
              trace.length() / secs);
  print_trace_summary(trace);
  return kOk;
}

int cmd_generate(const std::vector<std::string>& argv) {
  Args args(argv, with(kModelOptions, {"prompt", "prompt-file", "max-new", "edit"}), {"help", "no-memory"});
  if (args.flag("help") || (!args.has("prompt") && !args.has("prompt-file"))) {
    std::printf("usage: memmamba generate (--prompt TEXT | --prompt-file FILE) [--max-new N] [options]\n\n"
                "Runs the prompt in parallel mode, then generates greedily in step mode.\n\n%s"
                "  --max-new N           tokens to generate (default 32)\n%s",
                kModelOptionsHelp, kEditHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  check_model_flags(args);
  const int64_t max_new_checked = args.get_int("max-new", 32, 1, 1 << 20);
  (void)max_new_checked;
  const std::string prompt = args.has("prompt-file") ? load_text_file(args.get("prompt-file", ""))
                                                     : normalize_text(args.get("prompt", ""), "--prompt");
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  const int64_t max_new = args.get_int("max-new", 32, 1, 1 << 20);
  Encoding enc = tok.encode(prompt);
  std::vector<int64_t> ids(enc.ids.begin(), enc.ids.end());
  RunOptions o = run_options(args, lm.model);
  o.edits = load_edits(args, lm.model.config(), static_cast<int64_t>(ids.size()) + max_new);
  ProgressBar bar("prompt");
  o.progress = [&](int64_t done, int64_t total) { return bar.update(done, total); };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> out = generate_greedy(lm.model, ids, max_new, o, [](int64_t) { return g_interrupted.load(); });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<int32_t> out32(out.begin(), out.end());
  std::printf("%s\n", tok.decode(out32).c_str());
  std::fprintf(stderr, "%zu prompt tokens, %zu generated in %.2f s\n", ids.size(), out.size(), secs);
  return g_interrupted ? kInterrupted : kOk;
}

// The paper's efficiency claim: forward speed of MemMamba, the same model without memory
// (Mamba-only) and a causal Transformer of the same width and depth, batch 1, the same work
// for each (no LM head). On a GPU all three run under bf16 autocast and the Transformer on
// LibTorch's scaled_dot_product_attention (flash kernels), the field's own code.
int bench_compare(const MemMambaModel& model, const RunOptions& options, const std::vector<int64_t>& lengths,
                  int64_t transformer_max) {
  torch::NoGradGuard no_grad;
  const bool cuda = model.device().is_cuda();
  eval::TransformerBaseline transformer(model.config(), 1);
  transformer.to(model.device());
  AutocastGuard autocast(cuda);
  auto seconds_of = [&](const std::function<void(const torch::Tensor&)>& fn, int64_t T) {
    auto tokens = torch::randint(0, model.config().vocab_size, {1, T}, torch::kInt64).to(model.device());
    if (cuda) torch::cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    fn(tokens);
    if (cuda) torch::cuda::synchronize();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  RunOptions with_memory = options, without = options;
  without.memory.enabled = false;
  with_memory.keep_hidden = without.keep_hidden = true;
  auto memmamba = [&](const RunOptions& o) {
    return [&model, o](const torch::Tensor& t) {
      RunState s = model.new_state(1);
      model.forward(t, s, o);
    };
  };
  auto tf = [&](const torch::Tensor& t) { transformer.forward(t); };
  for (int i = 0; i < 2; ++i) {  // warm-up: kernels chosen, caches filled
    seconds_of(memmamba(with_memory), 4096);
    seconds_of(memmamba(without), 4096);
    seconds_of(tf, 4096);
  }
  std::printf("forward, batch 1, %s, %s; Transformer: %lld parameters, attention: %s\n", model.device().str().c_str(),
              cuda ? "bf16 autocast" : "fp32", static_cast<long long>(transformer.parameter_count()),
              eval::TransformerBaseline::uses_sdpa() ? "scaled_dot_product_attention" : "blocked (no SDPA in this LibTorch)");
  std::printf("%9s %14s %14s %15s %22s %22s\n", "tokens", "MemMamba tok/s", "Mamba-only tok/s", "Transformer tok/s",
              "MemMamba / Mamba-only", "MemMamba / Transformer");
  // On a GPU the first run at a new length also pays first allocations: the faster of two.
  auto best_of = [&](const std::function<void(const torch::Tensor&)>& fn, int64_t T) {
    const double first = seconds_of(fn, T);
    return cuda ? std::min(first, seconds_of(fn, T)) : first;
  };
  for (int64_t T : lengths) {
    const double a = T / best_of(memmamba(with_memory), T);
    const double b = T / best_of(memmamba(without), T);
    const double c = T <= transformer_max ? T / best_of(tf, T) : 0;
    char tf_speed[32] = "-", tf_ratio[32] = "-";
    if (c > 0) {
      std::snprintf(tf_speed, sizeof tf_speed, "%.0f", c);
      std::snprintf(tf_ratio, sizeof tf_ratio, "%.2f", a / c);
    }
    std::printf("%9lld %14.0f %16.0f %17s %22.2f %22s\n", static_cast<long long>(T), a, b, tf_speed, a / b, tf_ratio);
    std::fflush(stdout);
  }
  return kOk;
}

int cmd_bench(const std::vector<std::string>& argv) {
  Args args(argv, with(kModelOptions, {"lengths", "step-tokens", "seed", "compare", "text", "transformer-max"}), {"help", "no-trace", "no-memory", "bf16"});
  if (args.flag("help")) {
    std::printf("usage: memmamba bench [--lengths 1k,4k,16k,64k] [--step-tokens N] [--no-trace] [--text BOOK] [options]\n\n"
                "Times the parallel forward (traced unless --no-trace, with per-token loss) on random\n"
                "tokens at each length (or BOOK's tokens, repeated to the length, with --text), and step\n"
                "mode over --step-tokens tokens (default 256). On a GPU it first times the selective scan\n"
                "alone and the note pool's sequential walk and walk by events on every layer (up to 64k).\n"
                "Without --checkpoint it uses random weights of the default small config (D=256, L=8, V=8192).\n"
                "--bf16: under bf16 autocast (CUDA).\n"
                "--compare transformer: forward speed of MemMamba, Mamba-only and a causal Transformer\n"
                "of the same width and depth (untraced, no LM head) per length, with their ratios; on a\n"
                "GPU under bf16 autocast, the Transformer on scaled_dot_product_attention, up to\n"
                "--transformer-max tokens (default 256k).\n\n%s",
                kModelOptionsHelp);
    return kOk;
  }
  // Without a model named, the default small config with random weights: speed does not
  // depend on what the weights learned.
  std::vector<std::string> model_argv = argv;
  if (!args.has("checkpoint") && !args.has("random-init")) model_argv.insert(model_argv.end(), {"--random-init", "0"});
  const Args model_args(model_argv, with(kModelOptions, {"lengths", "step-tokens", "seed", "compare", "text", "transformer-max"}), {"help", "no-trace", "no-memory", "bf16"});
  check_model_flags(model_args);
  auto lm = std::make_unique<LoadedModel>(load_model(model_args));
  if (args.flag("bf16") && !lm->model.device().is_cuda()) throw UsageError("--bf16 needs --device cuda");
  const auto lengths = args.get_int_list("lengths", {1024, 4096, 16384, 65536}, 16, 1 << 24);
  const int64_t step_tokens = args.get_int("step-tokens", 256, 0, 1 << 20);
  if (args.has("compare")) {
    if (args.get("compare", "") != "transformer") throw UsageError("--compare takes \"transformer\"");
    return bench_compare(lm->model, run_options(model_args, lm->model), lengths,
                         args.get_int("transformer-max", 262144, 1, 1 << 26));
  }
  const ModelConfig& c = lm->model.config();
  std::printf("model D=%lld L=%lld V=%lld K=%lld w=%lld, %lld parameters, device %s, %d threads\n",
              static_cast<long long>(c.d_model), static_cast<long long>(c.n_layers), static_cast<long long>(c.vocab_size),
              static_cast<long long>(c.pool_slots), static_cast<long long>(c.note_window),
              static_cast<long long>(parameter_count(c)), lm->model.device().str().c_str(), at::get_num_threads());
  std::vector<int32_t> text_tokens;
  if (args.has("text")) {
    const std::string text = load_text_file(args.get("text", ""));
    text_tokens = load_tokenizer(args, c).encode(text).ids;
    if (text_tokens.empty()) throw TextError(args.get("text", "") + " gives no tokens");
    std::printf("tokens: %s (%zu tokens, repeated to each length)\n", args.get("text", "").c_str(), text_tokens.size());
  }
  std::printf("%-15s %9s %10s %12s %12s %12s %10s\n", "mode", "tokens", "seconds", "tokens/s", "us/token", "peak RSS MB",
              "scan GB/s");
  std::fflush(stdout);
  AutocastGuard autocast(args.flag("bf16"));
  run_benchmark(lm->model, run_options(args, lm->model), lengths, step_tokens, !args.flag("no-trace"), static_cast<uint64_t>(args.get_int("seed", 1, 0, INT64_MAX)),
                [](const BenchRow& r) {
                  std::printf("%-15s %9lld %10.4f %12.0f %12.4f %12.0f %10s  %s\n", r.mode.c_str(),
                              static_cast<long long>(r.tokens), r.seconds, r.tokens_per_second,
                              1e6 / r.tokens_per_second, r.peak_rss_mb,
                              r.bandwidth_gbs > 0 ? std::to_string(static_cast<int>(r.bandwidth_gbs)).c_str() : "-",
                              r.detail.c_str());
                  if (!r.profile.empty()) std::printf("%s", r.profile.c_str());
                  std::fflush(stdout);
                }, text_tokens);
  return kOk;
}

std::vector<double> parse_depths(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    double v = -1;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.empty() || !(v >= 0.0 && v <= 1.0))
      throw UsageError("--depths: \"" + item + "\" is not a depth in [0, 1]");
    out.push_back(v);
  }
  if (out.empty()) throw UsageError("--depths needs at least one value");
  return out;
}

int cmd_eval_ppl(const std::vector<std::string>& argv) {
  Args args(argv, with(kModelOptions, {"lengths", "windows", "scored", "out"}), {"help", "no-memory", "by-context"});
  if (args.flag("help") || args.positionals().size() != 2) {
    std::printf("usage: memmamba eval ppl BOOK.txt --out FILE.json [options]\n\n"
                "Perplexity by context length: up to --windows windows of each length from the book,\n"
                "the loss of the last --scored tokens of each; perplexity = exp(mean NLL).\n\n%s"
                "evaluation options:\n"
                "  --lengths 1k,2k,...  context lengths (default 1k,2k,4k,10k,20k,30k,40k,60k)\n"
                "  --windows N          windows per length (default 10)\n"
                "  --scored N           scored tokens at each window's end (default 100)\n"
                "  --by-context         also score the same tokens (the ends of the longest windows)\n"
                "                       after each length of context: rows that differ in context alone\n",
                kModelOptionsHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string out = args.require("out");
  check_model_flags(args);
  eval::PerplexityOptions o;
  o.lengths = args.get_int_list("lengths", o.lengths, 2, 1 << 24);
  o.windows = args.get_int("windows", 10, 1, 100000);
  o.scored = args.get_int("scored", 100, 1, 1 << 20);
  o.by_context = args.flag("by-context");
  for (int64_t L : o.lengths)
    if (L <= o.scored) throw UsageError("--lengths: " + std::to_string(L) + " is not longer than --scored " + std::to_string(o.scored));
  const std::string book = args.positionals()[1];
  const std::string text = load_text_file(book);
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  Encoding enc = tok.encode(text);
  o.run = run_options(args, lm.model);
  o.meta = model_identity(lm, tok);
  o.meta["book"] = book;
  ProgressBar bar("perplexity", "windows");
  Json r = eval::perplexity_by_length(lm.model, enc.ids, o, [&](int64_t d, int64_t t) { return bar.update(d, t); });
  write_file_atomic(out, r.dump(1) + "\n");
  std::printf("%10s %8s %12s %10s\n", "length", "windows", "perplexity", "seconds");
  for (const Json& row : r.at("lengths").as_array())
    std::printf("%10lld %8lld %12.2f %10.2f\n", static_cast<long long>(row.at("length").as_int()),
                static_cast<long long>(row.at("windows").as_int()),
                row.at("perplexity").is_number() ? row.at("perplexity").as_double() : std::nan(""),
                row.at("seconds").as_double());
  if (!r.at("positions").as_array().empty()) {
    std::printf("by position, in the %lld-token windows:\n%10s %8s %12s\n",
                static_cast<long long>(r.at("positions_window_length").as_int()), "position", "windows", "perplexity");
    for (const Json& row : r.at("positions").as_array())
      std::printf("%10lld %8lld %12.2f\n", static_cast<long long>(row.at("position").as_int()),
                  static_cast<long long>(row.at("windows").as_int()), row.at("perplexity").as_double());
  }
  if (r.contains("by_context") && !r.at("by_context").as_array().empty()) {
    std::printf("the same tokens after each length of context:\n%10s %8s %12s\n", "context", "windows", "perplexity");
    for (const Json& row : r.at("by_context").as_array())
      std::printf("%10lld %8lld %12.2f\n", static_cast<long long>(row.at("context").as_int()),
                  static_cast<long long>(row.at("windows").as_int()), row.at("perplexity").as_double());
  }
  std::printf("wrote %s%s\n", out.c_str(), lm.trained ? "" : " (UNTRAINED random weights)");
  return kOk;
}

int cmd_eval_fidelity(const std::vector<std::string>& argv) {
  Args args(argv, with(kModelOptions, {"max-tokens", "out"}), {"help", "no-memory"});
  if (args.flag("help") || args.positionals().size() != 2) {
    std::printf("usage: memmamba eval fidelity BOOK.txt --out FILE.json [--max-tokens N] [options]\n\n"
                "Memory fidelity (paper, appendix A.2) on the first N tokens of the book (default 4096):\n"
                "ETMF and ETMF_delta for delta 8, 16, 32; ECLMF for gaps 2, 5, 10 (null where the model\n"
                "has too few layers).\n\n%s",
                kModelOptionsHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string out = args.require("out");
  check_model_flags(args);
  const int64_t max_tokens = args.get_int("max-tokens", 4096, 64, 1 << 20);
  const std::string book = args.positionals()[1];
  const std::string text = load_text_file(book);
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  Encoding enc = tok.encode(text);
  if (static_cast<int64_t>(enc.ids.size()) > max_tokens) enc.ids.resize(max_tokens);
  eval::FidelityOptions o;
  o.run = run_options(args, lm.model);
  o.meta = model_identity(lm, tok);
  o.meta["book"] = book;
  Json r = eval::memory_fidelity(lm.model, enc.ids, o);
  write_file_atomic(out, r.dump(1) + "\n");
  std::printf("ETMF %.4f   ETMF_delta %s\nECLMF %s\nwrote %s%s\n", r.at("etmf").as_double(), r.at("etmf_delta").dump().c_str(),
              r.at("eclmf").dump().c_str(), out.c_str(), lm.trained ? "" : " (UNTRAINED random weights)");
  return kOk;
}

int cmd_eval_docs(const std::vector<std::string>& argv) {
  Args args(argv, with(kModelOptions, {"noise", "samples", "seed", "book", "out"}), {"help", "no-memory"});
  if (args.flag("help") || args.positionals().size() != 1) {
    std::printf("usage: memmamba eval docs --out FILE.json [--noise 10,20,120,160,200] [--samples N] [options]\n\n"
                "Noisy multi-document retrieval in DeciMamba's format, built from book paragraphs with an\n"
                "inserted fact (SQuAD is not available): exact match of the golden document's id.\n\n%s"
                "  --book FILE   paragraphs (default: the bundled Time Machine)\n",
                kModelOptionsHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string out = args.require("out");
  check_model_flags(args);
  eval::DocumentGridOptions o;
  o.noise_levels = args.get_int_list("noise", o.noise_levels, 0, 999);
  o.samples = args.get_int("samples", 10, 1, 100000);
  o.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0, INT64_MAX));
  std::string book = args.get("book", "");
  if (book.empty()) book = find_sample_file("The-Time-Machine_35.txt");
  if (book.empty()) throw UsageError("no bundled book found: pass --book FILE");
  eval::DocumentRetrievalGenerator generator(eval::split_paragraphs(load_text_file(book)));
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  o.run = run_options(args, lm.model);
  o.meta = model_identity(lm, tok);
  o.meta["book"] = book;
  ProgressBar bar("documents", "cases");
  Json r = eval::run_document_grid(lm.model, tok, generator, o, [&](int64_t d, int64_t t) { return bar.update(d, t); });
  write_file_atomic(out, r.dump(1) + "\n");
  std::printf("%8s %8s %12s\n", "noise", "samples", "exact match");
  for (const Json& l : r.at("levels").as_array())
    std::printf("%8lld %8lld %12.2f\n", static_cast<long long>(l.at("noise_documents").as_int()),
                static_cast<long long>(l.at("samples").as_int()), l.at("exact_match").as_double());
  std::printf("wrote %s%s\n", out.c_str(), lm.trained ? "" : " (UNTRAINED random weights)");
  return kOk;
}

int cmd_eval(const std::vector<std::string>& argv) {
  if (!argv.empty() && argv[0] == "ppl") return cmd_eval_ppl(argv);
  if (!argv.empty() && argv[0] == "docs") return cmd_eval_docs(argv);
  if (!argv.empty() && argv[0] == "fidelity") return cmd_eval_fidelity(argv);
  const std::set<std::string> options = with(kModelOptions, {"lengths", "depths", "samples", "seed", "haystack", "book", "max-new", "out", "edit"});
  Args args(argv, options, {"help", "no-memory", "drop-key-notes"});
  if (args.flag("help") || args.positionals().size() != 1 || args.positionals()[0] != "passkey") {
    std::printf("usage: memmamba eval passkey --out PREFIX [options]\n"
                "       memmamba eval ppl BOOK.txt --out FILE.json [options]   (see eval ppl --help)\n"
                "       memmamba eval fidelity BOOK.txt --out FILE.json        (see eval fidelity --help)\n"
                "       memmamba eval docs --out FILE.json                     (see eval docs --help)\n\n"
                "Passkey retrieval (DeciMamba's format): for each length x depth, --samples prompts with a\n"
                "5-digit key hidden in book sentences (or the repeated filler), answered greedily in step\n"
                "mode. Writes PREFIX.json (every case: key token positions, the notes that held the key\n"
                "and when they entered and left each pool, the answer's slot attention) and PREFIX.csv.\n\n%s"
                "evaluation options:\n"
                "  --lengths 1k,2k,4k      prompt lengths in tokens (default 1k,2k,4k)\n"
                "  --depths 0,0.5,1        needle depths (default 0,0.25,0.5,0.75,1)\n"
                "  --samples N             cases per cell (default 2)\n"
                "  --seed N                (default 0)\n"
                "  --haystack book|filler  book sentences (default) or the Landmark filler\n"
                "  --book FILE             the haystack's book (default: the bundled Time Machine)\n"
                "  --max-new N             answer tokens (default 10)\n"
                "  --drop-key-notes        also answer each case with the notes made of the key's tokens\n"
                "                          never kept (every layer): did the notes carry the key?\n%s",
                kModelOptionsHelp, kEditHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string out = args.require("out");
  check_model_flags(args);
  eval::PasskeyGridOptions grid;
  grid.lengths = args.get_int_list("lengths", grid.lengths, 64, 1 << 24);
  if (args.has("depths")) grid.depths = parse_depths(args.get("depths", ""));
  grid.samples = args.get_int("samples", 2, 1, 100000);
  grid.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0, INT64_MAX));
  grid.max_new_tokens = args.get_int("max-new", 10, 1, 256);
  const std::string haystack = args.get("haystack", "book");
  if (haystack != "book" && haystack != "filler") throw UsageError("--haystack must be book or filler");
  std::string book = args.get("book", "");
  if (book.empty() && haystack == "book") {
    book = find_sample_file("The-Time-Machine_35.txt");
    if (book.empty()) throw UsageError("no bundled book found: pass --book FILE");
  }
  const std::vector<std::string> sentences = haystack == "book" ? eval::split_sentences(load_text_file(book)) : std::vector<std::string>{};
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  eval::PasskeyGenerator generator(tok, sentences, haystack == "book" ? eval::Haystack::BookSentences : eval::Haystack::RepeatedFiller);
  grid.run = run_options(args, lm.model);
  grid.run.edits = load_edits(args, lm.model.config(), -1);
  grid.drop_key_notes = args.flag("drop-key-notes");
  if (grid.drop_key_notes && !lm.model.config().memory) throw UsageError("--drop-key-notes needs a model with memory");
  grid.meta = model_identity(lm, tok);
  grid.meta["haystack"] = haystack;
  grid.meta["book"] = book;
  ProgressBar bar("passkey", "cases");
  const auto t0 = std::chrono::steady_clock::now();
  Json results = eval::run_passkey_grid(lm.model, tok, generator, grid, [&](int64_t d, int64_t t) { return bar.update(d, t); });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  results["meta"]["wall_seconds"] = secs;
  write_file_atomic(out + ".json", results.dump(1) + "\n");
  write_file_atomic(out + ".csv", eval::passkey_results_csv(results));
  const auto& cells = results.at("cells").as_array();
  auto print_table = [&](const char* field) {  // lengths down, depths across
    std::printf("%10s", "length");
    for (double d : grid.depths) std::printf("  %5.2f", d);
    std::printf("\n");
    size_t k = 0;
    for (int64_t length : grid.lengths) {
      std::printf("%10lld", static_cast<long long>(length));
      for (size_t d = 0; d < grid.depths.size(); ++d) std::printf("  %5.2f", cells[k++].at(field).as_double());
      std::printf("\n");
    }
  };
  std::printf("accuracy (%lld samples per cell; %s)\n", static_cast<long long>(grid.samples),
              lm.trained ? "trained model" : "UNTRAINED random weights: expect ~0");
  print_table("accuracy");
  std::printf("key digits in place (share, partial credit)\n");
  print_table("digit_accuracy");
  if (grid.drop_key_notes && !cells.empty() && cells[0].contains("accuracy_notes_dropped")) {
    std::printf("accuracy with the key's notes dropped (every layer)\n");
    print_table("accuracy_notes_dropped");
  }
  std::printf("wrote %s.json and %s.csv in %.1f s\n", out.c_str(), out.c_str(), secs);
  return kOk;
}

int cmd_tokenizer_train(const std::vector<std::string>& argv) {
  Args args(argv, {"out", "vocab", "max-sentences"}, {"help"});
  if (args.flag("help") || args.positionals().empty()) {
    std::printf("usage: memmamba tokenizer-train --out PREFIX [--vocab 8192] FILE_OR_DIR...\n\n"
                "Trains a SentencePiece unigram tokenizer (digits split, byte fallback) on the given\n"
                "UTF-8 text files (directories: every .txt inside); writes PREFIX.model and PREFIX.vocab.\n");
    return args.flag("help") ? kOk : kUsage;
  }
  std::vector<std::string> files;
  for (const std::string& p : args.positionals()) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path().string());
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) load_text_file(f);  // refuse bad inputs with a clear message first
  Tokenizer::train(files, args.require("out"), args.get_int("vocab", 8192, 64, 65535),
                   args.get_int("max-sentences", 2000000, 1000, 100000000));
  std::printf("wrote %s.model and %s.vocab from %zu files\n", args.require("out").c_str(), args.require("out").c_str(), files.size());
  return kOk;
}


// A checkpoint's storage type from --dtype.
DType storage_dtype(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "bf16") return DType::BF16;
  if (name == "f16") return DType::F16;
  throw UsageError("--dtype must be f32, bf16 or f16, not \"" + name + "\"");
}

int cmd_convert(const std::vector<std::string>& argv) {
  Args args(argv, {"dtype", "fusion-gain"}, {"help"});
  if (args.flag("help") || args.positionals().size() != 2) {
    std::printf("usage: memmamba convert IN.safetensors OUT.safetensors [--dtype bf16|f16|f32] [--fusion-gain X]\n\n"
                "Rewrites a checkpoint with its tensors stored as --dtype (default bf16), keeping its metadata;\n"
                "--fusion-gain sets the config's default loudness of the memory's read-out (0 to 100).\n");
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string dtype = args.get("dtype", "bf16");
  const DType storage = storage_dtype(dtype);
  const std::string in = args.positionals()[0], out = args.positionals()[1];
  if (fs::exists(out) && fs::equivalent(in, out)) throw UsageError("OUT must differ from IN");
  const double gain = args.get_double("fusion-gain", 1.0, 0.0, 100.0);
  Checkpoint ck = load_checkpoint(in);
  if (args.has("fusion-gain")) {
    if (!ck.config.memory) throw UsageError("--fusion-gain: " + in + " is a Mamba-only model (no memory to fuse)");
    ck.config.fusion_gain = gain;
  }
  save_checkpoint(out, ck.config, ck.weights, storage, ck.metadata);
  std::printf("wrote %s (%s)\n", out.c_str(), dtype.c_str());
  return kOk;
}

int cmd_init(const std::vector<std::string>& argv) {
  Args args(argv, {"config", "seed", "dtype"}, {"help"});
  if (args.flag("help") || args.positionals().size() != 1) {
    std::printf("usage: memmamba init OUT.safetensors [--config FILE] [--seed 0] [--dtype f32|bf16|f16]\n\n"
                "Writes untrained random weights of the config (default: the small model), e.g. a\n"
                "starting point for `memmamba train --init` or a small checkpoint for tests.\n");
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string dtype = args.get("dtype", "f32");
  const DType storage = storage_dtype(dtype);
  const ModelConfig config = args.has("config") ? ModelConfig::load(args.get("config", "")) : ModelConfig{};
  const int64_t seed = args.get_int("seed", 0, 0, INT64_MAX);
  const MemMambaModel model = MemMambaModel::random(config, static_cast<uint64_t>(seed));
  const std::string out = args.positionals()[0];
  save_checkpoint(out, model.config(), model.weights(), storage,
                  {{"description", "untrained random weights (memmamba init, seed " + std::to_string(seed) + ")"}});
  std::printf("wrote %s (%s, untrained)\n", out.c_str(), dtype.c_str());
  return kOk;
}

int cmd_data(const std::vector<std::string>& argv) {
  Args args(argv, {"out", "tokenizer", "heldout", "seed"}, {"help"});
  if (args.flag("help") || args.positionals().size() != 1) {
    std::printf("usage: memmamba data BOOKS_DIR --out DIR [--tokenizer T] [--heldout 4] [--seed 0]\n\n"
                "Tokenizes every .txt book into DIR/train.tokens and DIR/heldout.tokens (uint16 ids;\n"
                "--heldout books, chosen by a seeded hash of their names, are kept out of training)\n"
                "and writes DIR/manifest.json naming the books of each split.\n");
    return args.flag("help") ? kOk : kUsage;
  }
  std::string tok_path = args.get("tokenizer", "");
  if (tok_path.empty()) tok_path = find_sample_file("tokenizer.model");
  if (tok_path.empty()) throw UsageError("no tokenizer given and none bundled: pass --tokenizer FILE");
  Tokenizer tok = Tokenizer::load(tok_path);
  DataSplitOptions o;
  o.heldout_books = args.get_int("heldout", 4, 0, 100000);
  o.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0, INT64_MAX));
  const std::string out = args.require("out");
  Json m = build_token_shards(tok, args.positionals()[0], out, o, [](const std::string& book, int64_t done, int64_t total) {
    std::fprintf(stderr, "\r[%lld/%lld] %-60s", static_cast<long long>(done + 1), static_cast<long long>(total), book.c_str());
  });
  std::fprintf(stderr, "\n");
  std::printf("wrote %s: %lld training tokens (%zu books), %lld held-out tokens (%zu books)\n", out.c_str(),
              static_cast<long long>(m.at("train_tokens").as_int()), m.at("train_books").as_array().size(),
              static_cast<long long>(m.at("heldout_tokens").as_int()), m.at("heldout_books").as_array().size());
  return kOk;
}

int cmd_train(const std::vector<std::string>& argv) {
  Args args(argv, {"data", "out", "config", "device", "seq-len", "batch", "accumulation", "steps", "lr", "warmup",
                   "schedule", "weight-decay", "clip", "seed", "eval-every", "eval-batches", "checkpoint-every",
                   "passkey-fraction", "tokenizer", "init", "haystack", "tau-note", "init-backbone",
                   "tau-retrieve", "retrieval-loss", "answer-loss", "note-loss", "answer-end",
                   "passkey-min-length", "blind-needles", "blind-margin"},
            {"help", "resume", "fp32", "mamba-only", "freeze-fusion"});
  if (args.flag("help")) {
    std::printf("usage: memmamba train --data DIR --out DIR [options]\n\n"
                "Trains on DIR/train.tokens (from `memmamba data`), evaluating on DIR/heldout.tokens.\n"
                "Writes OUT/model.safetensors, OUT/train-state.safetensors and OUT/metrics.csv.\n\n"
                "  --config FILE         model config (default: the small config); --mamba-only: memory off\n"
                "  --device cpu|cuda     (default cpu); bf16 autocast on CUDA unless --fp32\n"
                "  --seq-len 1024 --batch 8 --accumulation 1 --steps 1000\n"
                "  --lr 1e-3 --warmup 100 --schedule cosine|constant --weight-decay 0.1 --clip 1.0\n"
                "  --eval-every 200 --eval-batches 4 --checkpoint-every 500 --seed 0\n"
                "  --passkey-fraction 0.25  share of sequences that are passkey examples (haystacks\n"
                "                        from the bundled sample books; --tokenizer for their tokens)\n"
                "  --haystack book|filler  passkey haystacks: book sentences (default) or the repeated filler\n"
                "  --passkey-min-length N  shortest passkey example in tokens (default min(256, seq-len / 2));\n"
                "                        lengths are uniform from N to the row, depths uniform\n"
                "  --tau-note X          with --init: train with this note threshold tau1 (saved in the config)\n"
                "  --tau-retrieve X      with --init: train with this retrieval threshold tau2 (saved in the config)\n"
                "  --init-backbone M     with --init: take M's tensors of the same names (e.g. a Mamba's mixers)\n"
                "  --retrieval-loss W    weight of the retrieval loss (memory models, passkey rows): each answer\n"
                "                        piece of the key is taught to attend to that piece's note (default 0)\n"
                "  --answer-loss W       weight of an extra cross-entropy on the passkey answers' key pieces and\n"
                "                        the piece after the key, where the answer stops (default 0)\n"
                "  --answer-end TEXT     what follows the key in a passkey row (default \".\")\n"
                "  --note-loss W         weight of the selection loss: the needle's key tokens are taught to clear\n"
                "                        the note threshold in every layer (memory models, default 0)\n"
                "  --freeze-fusion       hold the memory's fusion scales (its read-out's loudness) as loaded\n"
                "  --blind-needles F     share of passkey rows whose key the SSM does not see (its step size is 0\n"
                "                        from the key to --blind-margin tokens past its second copy): the key\n"
                "                        reaches the answer through the notes alone, as from far beyond the\n"
                "                        SSM's horizon (default 0)\n"
                "  --blind-margin N      tokens hidden past the key (default (conv_kernel - 1) x layers)\n"
                "  --resume              continue OUT's run from its last checkpoint, bit for bit\n"
                "  --init CHECKPOINT     start from a checkpoint's weights and config (fine-tuning)\n"
                "Ctrl-C stops after saving a checkpoint.\n");
    return kOk;
  }
  TrainOptions o;
  o.data_dir = args.require("data");
  o.out_dir = args.require("out");
  if (args.has("config")) o.config = ModelConfig::load(args.get("config", ""));
  if (args.flag("mamba-only")) o.config.memory = false;
  o.config.validate();
  const std::string dev = args.get("device", "cpu");
  if (dev != "cpu" && dev != "cuda") throw UsageError("--device must be cpu or cuda, not \"" + dev + "\"");
  o.cuda = dev == "cuda";
  if (o.cuda && !torch::cuda::is_available()) throw UsageError("--device cuda: no CUDA device is available to this build");
  o.bf16 = !args.flag("fp32");
  o.resume = args.flag("resume");
  o.freeze_fusion_scales = args.flag("freeze-fusion");
  o.init_checkpoint = args.get("init", "");
  if (!o.init_checkpoint.empty() && o.resume) throw UsageError("give --init or --resume, not both");
  if (!o.init_checkpoint.empty() && (args.has("config") || args.flag("mamba-only")))
    throw UsageError("--init takes the checkpoint's config: drop --config and --mamba-only");
  o.seq_len = args.get_int("seq-len", o.seq_len, 8, 1 << 22);
  o.batch = args.get_int("batch", o.batch, 1, 1 << 16);
  o.accumulation = args.get_int("accumulation", o.accumulation, 1, 1 << 16);
  if (o.batch % o.accumulation != 0) throw UsageError("--batch must be a multiple of --accumulation");
  o.steps = args.get_int("steps", o.steps, 1, int64_t{1} << 40);
  o.lr = args.get_double("lr", o.lr, 1e-7, 1.0);
  o.warmup = args.get_int("warmup", o.warmup, 0, int64_t{1} << 40);
  const std::string schedule = args.get("schedule", "cosine");
  if (schedule != "cosine" && schedule != "constant") throw UsageError("--schedule must be cosine or constant");
  o.cosine = schedule == "cosine";
  o.weight_decay = args.get_double("weight-decay", o.weight_decay, 0.0, 10.0);
  o.clip = args.get_double("clip", o.clip, 1e-6, 1e6);
  o.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0, INT64_MAX));
  o.eval_every = args.get_int("eval-every", o.eval_every, 0, int64_t{1} << 40);
  o.eval_batches = args.get_int("eval-batches", o.eval_batches, 1, 1 << 20);
  o.checkpoint_every = args.get_int("checkpoint-every", o.checkpoint_every, 0, int64_t{1} << 40);
  o.passkey_fraction = args.get_double("passkey-fraction", o.passkey_fraction, 0.0, 1.0);
  if (o.passkey_fraction > 0) {
    o.passkey_tokenizer = args.get("tokenizer", "");
    if (o.passkey_tokenizer.empty()) o.passkey_tokenizer = find_sample_file("tokenizer.model");
    if (o.passkey_tokenizer.empty()) throw UsageError("passkey examples need --tokenizer");
    const std::string haystack = args.get("haystack", "book");
    if (haystack != "book" && haystack != "filler") throw UsageError("--haystack must be book or filler");
    if (haystack == "book")
      for (const char* book : {"The-Time-Machine_35.txt", "Alice-s-Adventures-in-Wonderland_11.txt"}) {
        const std::string p = find_sample_file(book);
        if (!p.empty()) o.passkey_books.push_back(p);
      }
  }
  if (args.has("passkey-min-length")) {
    if (o.passkey_fraction <= 0) throw UsageError("--passkey-min-length needs passkey rows (--passkey-fraction > 0)");
    if (o.seq_len < 128) throw UsageError("--passkey-min-length: rows of fewer than 128 tokens hold no passkey example");
    o.passkey_min_tokens = args.get_int("passkey-min-length", 256, 64, o.seq_len - 24);
  }
  if (args.has("blind-needles") || args.has("blind-margin")) {
    if (o.passkey_fraction <= 0) throw UsageError("--blind-needles needs passkey rows (--passkey-fraction > 0)");
    o.blind_needle_fraction = args.get_double("blind-needles", 1.0, 0.0, 1.0);
    o.blind_needle_margin = args.get_int("blind-margin", -1, 0, 1 << 20);
  }
  if (args.has("answer-end")) {
    o.passkey_answer_end = args.get("answer-end", ".");
    if (o.passkey_answer_end.empty() || o.passkey_answer_end.size() > 200 ||
        std::isdigit(static_cast<unsigned char>(o.passkey_answer_end[0])))
      throw UsageError("--answer-end must be 1 to 200 characters that do not begin with a digit (it follows the key)");
  }
  if (args.has("init-backbone")) {
    if (o.init_checkpoint.empty()) throw UsageError("--init-backbone goes with --init");
    o.init_backbone = args.get("init-backbone", "");
  }
  if (args.has("tau-note")) {
    if (o.init_checkpoint.empty()) throw UsageError("--tau-note goes with --init (a fresh model takes tau_note from --config)");
    o.init_tau_note = args.get_double("tau-note", 0.3, -1.0, 2.0);
  }
  if (args.has("tau-retrieve")) {
    if (o.init_checkpoint.empty()) throw UsageError("--tau-retrieve goes with --init (a fresh model takes tau_retrieve from --config)");
    o.init_tau_retrieve = args.get_double("tau-retrieve", 0.5, -1.0, 2.0);
  }
  o.retrieval_loss_weight = args.get_double("retrieval-loss", 0.0, 0.0, 1e3);
  o.answer_loss_weight = args.get_double("answer-loss", 0.0, 0.0, 1e3);
  o.note_loss_weight = args.get_double("note-loss", 0.0, 0.0, 1e3);
  if ((o.retrieval_loss_weight > 0 || o.answer_loss_weight > 0 || o.note_loss_weight > 0) && o.passkey_fraction <= 0)
    throw UsageError("--retrieval-loss, --answer-loss and --note-loss need passkey rows (--passkey-fraction > 0)");
  const int64_t last = train_model(o, [](const TrainProgress& p) {
    std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.2e  |g| %.2f  %.0f tok/s", static_cast<long long>(p.step),
                 static_cast<long long>(p.steps), p.loss, p.lr, p.grad_norm, p.tokens_per_second);
    if (!std::isnan(p.answer_loss)) std::fprintf(stderr, "  answer %.3f", p.answer_loss);
    if (!std::isnan(p.note_loss)) std::fprintf(stderr, "  selection %.3f  key noted %.2f", p.note_loss, p.key_noted);
    if (!std::isnan(p.retrieval_loss))
      std::fprintf(stderr, "  retrieval %.3f  key attention %.3f  coverage %.2f", p.retrieval_loss, p.key_attention,
                   p.retrieval_coverage);
    if (!std::isnan(p.eval_loss)) std::fprintf(stderr, "  held-out %.4f  notes %.3f", p.eval_loss, p.note_rate);
    std::fprintf(stderr, "\n");
    return !g_interrupted.load();
  });
  std::printf("stopped at step %lld; wrote %s/model.safetensors\n", static_cast<long long>(last), o.out_dir.c_str());
  return g_interrupted ? kInterrupted : kOk;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, on_sigint);
  log::use_plain_console_format();
  configure_cpu_runtime();
  std::vector<std::string> rest(argv + std::min(argc, 2), argv + argc);
  const std::string cmd = argc >= 2 ? argv[1] : "";
  try {
    if (cmd == "info") return cmd_info(rest);
    if (cmd == "run") return cmd_run(rest);
    if (cmd == "generate") return cmd_generate(rest);
    if (cmd == "bench") return cmd_bench(rest);
    if (cmd == "tokenizer-train") return cmd_tokenizer_train(rest);
    if (cmd == "data") return cmd_data(rest);
    if (cmd == "convert") return cmd_convert(rest);
    if (cmd == "init") return cmd_init(rest);
    if (cmd == "train") return cmd_train(rest);
    if (cmd == "eval") return cmd_eval(rest);
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      std::printf("%s", kMainHelp);
      return kOk;
    }
    std::fprintf(stderr, "%s", kMainHelp);
    if (!cmd.empty()) std::fprintf(stderr, "\nerror: unknown command \"%s\"\n", cmd.c_str());
    return kUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kUsage;
  } catch (const Cancelled&) {
    std::fprintf(stderr, "\ninterrupted: nothing was written\n");
    return kInterrupted;
  } catch (const FormatError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const TextError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const EditError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const TokenizerError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const FileError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return kFailure;
  }
}
