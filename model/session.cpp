#include "model/session.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>

#include "model/checkpoint.h"
#include "model/eval/fidelity.h"
#include "model/eval/passkey_eval.h"
#include "model/file_io.h"
#include "model/log.h"
#include "model/runner.h"
#include "model/runtime.h"
#include "model/sample_files.h"
#include "model/text_input.h"

namespace memmamba {

namespace {

constexpr const char* kBundledModel = "memmamba-small.safetensors";
constexpr const char* kBundledTokenizer = "tokenizer.model";
constexpr const char* kBundledBook = "The-Time-Machine_35.txt";

}  // namespace

std::string ModelChoice::key() const {
  std::string what = random_seed ? "random:" + std::to_string(*random_seed) + ":" + config : checkpoint;
  return what + "@" + device;
}

torch::Device parse_device(const std::string& name) {
  if (const std::string error = device_choice_error(name); !error.empty()) throw ChoiceError(error);
  return torch::Device(name == "cuda" ? torch::kCUDA : torch::kCPU);
}

std::string LoadedModel::describe() const {
  return (trained ? source : "untrained random weights (" + source + ")") + " on " + model.device().str();
}

LoadedModel load_model(const ModelChoice& choice) {
  const torch::Device device = parse_device(choice.device);
  if (!choice.checkpoint.empty() && choice.random_seed) throw ChoiceError("give --checkpoint or --random-init, not both");
  if (choice.random_seed) {
    const ModelConfig config = choice.config.empty() ? ModelConfig{} : ModelConfig::load(choice.config);
    log::warn("using untrained random weights (seed " + std::to_string(*choice.random_seed) +
              "): outputs show the mechanism, not a trained model");
    MemMambaModel model = MemMambaModel::random(config, *choice.random_seed);
    model.to(device);
    return {std::move(model), "random-init:" + std::to_string(*choice.random_seed), "", false};
  }
  if (!choice.config.empty()) throw ChoiceError("--config only applies to --random-init (a checkpoint carries its config)");
  std::string path = choice.checkpoint;
  if (path.empty()) {
    path = find_sample_file(kBundledModel);
    if (path.empty()) throw ChoiceError("no checkpoint given and no bundled model found: " + choice.missing_hint);
  }
  Checkpoint checkpoint = load_checkpoint(path);
  MemMambaModel model(checkpoint.config, std::move(checkpoint.weights));
  model.to(device);
  return {std::move(model), path, file_hash(path), true};
}

Tokenizer load_tokenizer(const std::string& given, const ModelConfig& config, const std::string& missing_hint) {
  std::string path = given;
  if (path.empty()) {
    path = find_sample_file(kBundledTokenizer);
    if (path.empty()) throw ChoiceError("no tokenizer given and no bundled tokenizer found: " + missing_hint);
  }
  Tokenizer tokenizer = Tokenizer::load(path);
  if (tokenizer.vocab_size() > config.vocab_size)
    throw TokenizerError("tokenizer " + path + " has " + std::to_string(tokenizer.vocab_size()) +
                         " pieces but the model's vocabulary holds " + std::to_string(config.vocab_size) +
                         ": they do not belong together");
  return tokenizer;
}

Json model_identity(const LoadedModel& model, const Tokenizer& tokenizer) {
  Json j = Json::object();
  j["checkpoint"] = model.source;
  j["checkpoint_hash"] = model.hash;
  j["trained"] = model.trained;
  j["tokenizer"] = tokenizer.path();
  return j;
}

RunOptions run_options(const MemMambaModel& model, const MemoryOverrides& overrides) {
  RunOptions o = model.default_options();
  if (!overrides.memory) o.memory.enabled = false;
  if (overrides.tau_note) o.memory.tau_note = *overrides.tau_note;
  if (overrides.tau_retrieve) o.memory.tau_retrieve = *overrides.tau_retrieve;
  if (overrides.fusion_gain) o.memory.fusion_gain = *overrides.fusion_gain;
  if (overrides.importance) o.memory.importance = *overrides.importance;
  if (overrides.policy) o.memory.policy = *overrides.policy;
  if (overrides.chunk_tokens) o.chunk_tokens = *overrides.chunk_tokens;
  return o;
}

std::shared_ptr<const MemoryEdits> load_edit_file(const std::string& path, const ModelConfig& config, int64_t length) {
  auto edits = std::make_shared<const MemoryEdits>(MemoryEdits::load(path, config, length));
  for (const MemoryEdit& e : edits->edits()) log::info("memory edit: " + e.describe());
  return edits;
}

namespace {

// The trace run; `ran_with` (when given) receives the run's options with its edits and
// without progress, for a generation that continues the run.
Trace run_trace_job(const LoadedModel& loaded, const Tokenizer& tokenizer, TraceJob job, RunOptions* ran_with) {
  namespace fs = std::filesystem;
  const MemMambaModel& model = loaded.model;
  if (job.stage) job.stage(TraceStage::Tokenizing);
  const auto keep_going = job.keep_going;
  Encoding enc = tokenizer.encode(job.text, [&keep_going](uint64_t, uint64_t) { return !keep_going || keep_going(); });
  if (keep_going && !keep_going()) throw Cancelled();
  if (static_cast<int64_t>(enc.ids.size()) > job.max_tokens) {
    enc.ids.resize(job.max_tokens);
    enc.begin.resize(job.max_tokens);
    enc.end.resize(job.max_tokens);
    log::info("the text was cut to its first " + std::to_string(job.max_tokens) + " tokens");
  }
  if (enc.ids.empty())
    throw TextError((job.source_file.empty() ? std::string("the text") : job.source_file) + " gives no tokens");
  const int64_t tokens = static_cast<int64_t>(enc.ids.size());

  TraceRunRequest request;
  request.options = std::move(job.options);
  request.trace_options = job.trace_options;
  const std::string narrowed = fit_trace_to_budget(model.config(), tokens, job.trace_budget_bytes, request.trace_options);
  if (!narrowed.empty()) log::warn(narrowed);
  request.run_info = model_identity(loaded, tokenizer);
  if (job.book) request.run_info["book"] = job.book->record(enc.end);
  // Memory edits are checked against this text: positions past it (and past what a later
  // generation reaches) are errors before anything runs.
  const int64_t reach = tokens + job.edit_positions_after_text;
  if (!job.edits_file.empty()) {
    request.options.edits = load_edit_file(job.edits_file, model.config(), reach);
  } else if (job.edits.is_array() && !job.edits.as_array().empty()) {
    request.options.edits = std::make_shared<const MemoryEdits>(MemoryEdits::parse(job.edits, model.config(), reach));
  }
  if (request.options.edits) request.run_info["memory_edits"] = request.options.edits->to_json();
  // Where the text is, absolute and relative to the trace's folder, so that a trace moved
  // with its book, or opened from another folder, still finds it.
  // Fidelity reads every layer's output at every token; a decimated run has dropped some by
  // then. Said before the run, not after it.
  if (job.fidelity_tokens >= 2 && request.options.decimation.enabled())
    throw std::invalid_argument("memory fidelity (ETMF, ECLMF) needs every token at every layer: it cannot be measured on a "
                                "decimated (DeciMamba) run; measure the model without decimation");
  if (!job.source_file.empty()) {
    const fs::path source = fs::absolute(job.source_file).lexically_normal();
    request.run_info["source_file"] = source.string();
    if (!job.trace_file.empty()) {
      const fs::path relative = source.lexically_relative(fs::absolute(job.trace_file).lexically_normal().parent_path());
      if (!relative.empty()) request.run_info["source_file_relative"] = relative.string();
    }
  }
  request.text = std::move(job.text);
  request.tokens = std::move(enc.ids);
  request.char_begin = std::move(enc.begin);
  request.char_end = std::move(enc.end);

  RunOptions after = request.options;  // for the fidelity run: the same settings, no progress
  after.progress = nullptr;
  if (job.stage) job.stage(TraceStage::Running);
  Trace trace = trace_tokens(model, std::move(request));
  if (after.edits) after.edits->check_note_ids(trace);
  if (job.fidelity_tokens >= 2) {
    if (keep_going && !keep_going()) throw Cancelled();
    if (job.stage) job.stage(TraceStage::Fidelity);
    eval::FidelityOptions fidelity;
    fidelity.run = after;
    const int64_t n = std::min<int64_t>(job.fidelity_tokens, trace.length());
    trace.run_info["fidelity"] =
        eval::memory_fidelity(model, std::vector<int32_t>(trace.tokens.begin(), trace.tokens.begin() + n), fidelity);
  }
  if (ran_with) *ran_with = std::move(after);
  return trace;
}

}  // namespace

Trace trace_text(const LoadedModel& loaded, const Tokenizer& tokenizer, TraceJob job) {
  return run_trace_job(loaded, tokenizer, std::move(job), nullptr);
}

PasskeyCaseRun trace_passkey_case(const LoadedModel& loaded, const Tokenizer& tokenizer, PasskeyCaseJob job) {
  std::string book;
  if (!job.filler_haystack) {
    std::string path = job.haystack_book.empty() ? find_sample_file(kBundledBook) : job.haystack_book;
    if (!path.empty()) book = load_text_file(path);
    job.trace.source_file = path;
  }
  const auto sentences = eval::split_sentences(book);
  const eval::PasskeyGenerator generator(tokenizer, sentences,
                                         sentences.empty() ? eval::Haystack::RepeatedFiller : eval::Haystack::BookSentences);
  const eval::PasskeyCase passkey = generator.make(job.length, job.depth, job.seed, job.spec, job.key);
  job.trace.text = passkey.prompt;
  job.trace.book.reset();
  job.answer_tokens = eval::answer_token_budget(passkey, job.answer_tokens);
  job.trace.edit_positions_after_text = job.answer_tokens;
  const int32_t attention_topk = job.trace.trace_options.attention_topk;
  RunOptions answer_options;
  PasskeyCaseRun run{run_trace_job(loaded, tokenizer, std::move(job.trace), &answer_options), Json()};
  // The answer and the record as the evaluation makes them (the prompt again, then the answer's
  // steps with their reads): what a grid file holds for the same case.
  eval::PasskeyGridOptions answer;
  answer.run = answer_options;
  answer.max_new_tokens = job.answer_tokens;
  answer.attention_topk = attention_topk;
  run.record = eval::run_passkey_case(loaded.model, tokenizer, passkey, answer);
  return run;
}

}  // namespace memmamba
