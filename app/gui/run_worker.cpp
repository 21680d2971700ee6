#include "app/gui/run_worker.h"

#include <torch/torch.h>

#include <QDir>
#include <QFileInfo>

#include <chrono>
#include <optional>

#include "model/checkpoint.h"
#include "model/eval/passkey.h"
#include "model/eval/fidelity.h"
#include "model/eval/passkey_eval.h"
#include "model/file_io.h"
#include "model/log.h"
#include "model/memmamba.h"
#include "model/runner.h"
#include "model/selective_scan.h"
#include "model/sample_files.h"
#include "model/book/book.h"
#include "model/memory/memory_edits.h"
#include "model/text_input.h"
#include "model/tokenizer.h"

namespace memmamba::app {

struct RunWorker::Loaded {
  std::optional<MemMambaModel> model;
  std::string checkpoint_key;  // what `model` was loaded from, with its device
  std::string model_source;
  bool trained = false;
  std::optional<Tokenizer> tokenizer;
  std::string tokenizer_path;
};

bool cudaAvailable() { return torch::cuda::is_available(); }

QString locateTraceBook(const Json& run_info, const QString& trace_path) {
  auto text_of = [&](const char* key) {
    return run_info.is_object() && run_info.contains(key) && run_info.at(key).is_string()
               ? QString::fromStdString(run_info.at(key).as_string())
               : QString();
  };
  const QString recorded = text_of("source_file"), relative = text_of("source_file_relative");
  if (recorded.isEmpty() && relative.isEmpty()) return {};
  const QDir trace_dir = QFileInfo(trace_path).absoluteDir();
  QStringList candidates;
  if (!recorded.isEmpty()) candidates << recorded;
  if (!relative.isEmpty()) candidates << trace_dir.filePath(relative);
  if (!recorded.isEmpty() && QFileInfo(recorded).isRelative()) candidates << trace_dir.filePath(recorded);
  const QString name = QFileInfo(recorded.isEmpty() ? relative : recorded).fileName();
  if (!name.isEmpty()) {
    candidates << trace_dir.filePath(name);
    const std::string sample = find_sample_file(name.toStdString());
    if (!sample.empty()) candidates << QString::fromStdString(sample);
  }
  for (const QString& c : candidates)
    if (QFileInfo(c).isFile()) return QFileInfo(c).absoluteFilePath();
  return {};
}

QStringList applyGridRun(const Json& grid_results, RunRequest& request) {
  QStringList notes;
  if (!grid_results.is_object()) return notes;
  auto field = [](const Json& object, const char* key) -> const Json* {
    return object.is_object() && object.contains(key) ? &object.at(key) : nullptr;
  };
  const Json* meta = field(grid_results, "meta");
  const Json* haystack = meta ? field(*meta, "haystack") : nullptr;
  request.filler_haystack = haystack && haystack->is_string() && haystack->as_string() == "filler";
  const Json* book = meta ? field(*meta, "book") : nullptr;
  if (!request.filler_haystack && book && book->is_string()) {
    const QString path = QString::fromStdString(book->as_string());
    if (QFileInfo(path).isReadable()) {
      request.text_path = path;
    } else {
      notes << QObject::tr("the grid's haystack book %1 is not here: the case runs on %2 and may differ")
                   .arg(path, request.text_path.isEmpty() ? QObject::tr("the bundled sample book") : request.text_path);
    }
  }
  if (const Json* settings = field(grid_results, "settings")) {
    auto number = [&](const char* key, double fallback) {
      const Json* v = field(*settings, key);
      return v && v->is_number() ? v->as_double() : fallback;
    };
    request.override_thresholds = true;
    request.tau_note = number("tau_note", request.tau_note);
    request.tau_retrieve = number("tau_retrieve", request.tau_retrieve);
    request.fusion_gain = number("fusion_gain", 1.0);  // grids from before the gain ran at 1
    const Json* memory = field(*settings, "memory_enabled");
    if (memory && memory->is_bool()) request.memory = memory->as_bool();
  }
  const Json* hash = meta ? field(*meta, "checkpoint_hash") : nullptr;
  const std::string loaded = request.checkpoint.isEmpty() ? find_sample_file("memmamba-small.safetensors")
                                                          : request.checkpoint.toStdString();
  std::string loaded_hash;
  try {
    if (!loaded.empty()) loaded_hash = file_hash(loaded);
  } catch (const std::exception&) {
    // An unreadable checkpoint is reported by the run itself.
  }
  if (hash && hash->is_string() && !loaded_hash.empty() && hash->as_string() != loaded_hash)
    notes << QObject::tr("the grid was measured with another checkpoint (%1) than the one chosen (%2): the case may differ")
                 .arg(QString::fromStdString(hash->as_string()), QString::fromStdString(loaded_hash));
  return notes;
}

void configureRuntime() { configure_cpu_runtime(); }

RunWorker::RunWorker(QObject* parent) : QObject(parent), loaded_(std::make_unique<Loaded>()) {}
RunWorker::~RunWorker() = default;

void RunWorker::run(const RunRequest& request) {
  cancel_ = false;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    torch::NoGradGuard no_grad;
    // Model.
    std::string checkpoint = request.checkpoint.toStdString();
    if (checkpoint.empty()) checkpoint = find_sample_file("memmamba-small.safetensors");
    const std::string key = (checkpoint.empty() ? std::string("random:0") : checkpoint) + (request.cuda ? "@cuda" : "@cpu");
    if (!loaded_->model || loaded_->checkpoint_key != key) {
      Q_EMIT progress(0, 0, 0, tr("loading the model"));
      loaded_->model.reset();
      if (request.cuda && !torch::cuda::is_available()) throw std::runtime_error("no CUDA device is available to this build");
      if (checkpoint.empty()) {
        log::warn("no bundled model found: using untrained random weights (seed 0)");
        loaded_->model.emplace(MemMambaModel::random(ModelConfig{}, 0));
        loaded_->model_source = "untrained random weights (seed 0)";
        loaded_->trained = false;
      } else {
        Checkpoint ck = load_checkpoint(checkpoint);
        loaded_->model.emplace(ck.config, std::move(ck.weights));
        loaded_->model_source = checkpoint;
        loaded_->trained = true;
      }
      if (request.cuda) loaded_->model->to(torch::Device(torch::kCUDA));
      loaded_->checkpoint_key = key;
    }
    const MemMambaModel& model = *loaded_->model;
    // Tokenizer.
    std::string tok_path = request.tokenizer.toStdString();
    if (tok_path.empty()) tok_path = find_sample_file("tokenizer.model");
    if (tok_path.empty()) throw std::runtime_error("no tokenizer chosen and none bundled: choose one under Run > Model");
    if (!loaded_->tokenizer || loaded_->tokenizer_path != tok_path) {
      loaded_->tokenizer.reset();
      loaded_->tokenizer.emplace(Tokenizer::load(tok_path));
      loaded_->tokenizer_path = tok_path;
    }
    const Tokenizer& tok = *loaded_->tokenizer;
    if (tok.vocab_size() > model.config().vocab_size)
      throw std::runtime_error("the tokenizer has " + std::to_string(tok.vocab_size()) + " pieces but the model's vocabulary " +
                               std::to_string(model.config().vocab_size) + ": they do not belong together");

    RunOptions run = model.default_options();
    run.memory.enabled = request.memory;
    if (request.override_thresholds) {
      run.memory.tau_note = request.tau_note;
      run.memory.tau_retrieve = request.tau_retrieve;
      run.memory.fusion_gain = request.fusion_gain;
    }
    TraceRunRequest req;
    req.options = run;
    std::string text;
    BookText book_text;
    eval::PasskeyCase passkey;
    if (request.kind == RunRequest::Kind::Text) {
      Q_EMIT progress(0, 0, 0, tr("reading and tokenizing"));
      book_text = load_book(request.text_path.toStdString(), request.book);
      text = book_text.text;
    } else {
      std::string book = request.text_path.isEmpty() || request.filler_haystack ? std::string()
                                                                                 : load_text_file(request.text_path.toStdString());
      if (book.empty() && !request.filler_haystack) {
        const std::string sample = find_sample_file("The-Time-Machine_35.txt");
        if (!sample.empty()) book = load_text_file(sample);
      }
      const auto sentences = eval::split_sentences(book);
      eval::PasskeyGenerator generator(tok, sentences, sentences.empty() ? eval::Haystack::RepeatedFiller
                                                                         : eval::Haystack::BookSentences);
      Q_EMIT progress(0, 0, 0, tr("building the passkey prompt"));
      passkey = generator.make(request.length, request.depth, request.seed);
      if (request.key >= 10000 && request.key <= 99999 && request.key != passkey.key) {
        // The user's key in place of the generated one (same digit count: offsets hold).
        const std::string from = std::to_string(passkey.key), to = std::to_string(request.key);
        for (size_t at = passkey.prompt.find(from); at != std::string::npos; at = passkey.prompt.find(from, at + to.size()))
          passkey.prompt.replace(at, from.size(), to);
        passkey.key = request.key;
      }
      text = passkey.prompt;
    }
    Encoding enc = tok.encode(text, [this](uint64_t, uint64_t) { return !cancel_.load(); });
    if (cancel_) throw Cancelled();
    if (enc.ids.empty()) throw std::runtime_error("the text gives no tokens");
    if (static_cast<qint64>(enc.ids.size()) > request.max_tokens) {
      enc.ids.resize(request.max_tokens);
      enc.begin.resize(request.max_tokens);
      enc.end.resize(request.max_tokens);
      log::warn("the text was cut to its first " + std::to_string(request.max_tokens) + " tokens");
    }
    const int64_t T = static_cast<int64_t>(enc.ids.size());
    const std::string narrowed = fit_trace_to_budget(model.config(), T, static_cast<uint64_t>(request.trace_budget_mb) << 20,
                                                     req.trace_options);
    if (!narrowed.empty()) log::warn(narrowed);
    req.text = std::move(text);
    req.tokens = enc.ids;
    req.char_begin = std::move(enc.begin);
    req.char_end = std::move(enc.end);
    req.run_info["checkpoint"] = loaded_->model_source;
    req.run_info["trained"] = loaded_->trained;
    req.run_info["tokenizer"] = tok_path;
    req.run_info["source_file"] = QFileInfo(request.text_path).absoluteFilePath().toStdString();
    if (request.kind == RunRequest::Kind::Text) req.run_info["book"] = book_text.record(req.char_end);
    if (request.edits.is_array() && !request.edits.as_array().empty()) {
      // Checked against this text (positions past it are errors); generation runs past the
      // prompt, so a passkey run allows the answer's tokens too.
      const int64_t allowed = T + (request.kind == RunRequest::Kind::Passkey ? 8 : 0);
      run.edits = std::make_shared<const MemoryEdits>(MemoryEdits::parse(request.edits, model.config(), allowed));
      req.options.edits = run.edits;
      req.run_info["memory_edits"] = request.edits;
    }
    const auto run_start = std::chrono::steady_clock::now();
    req.options.progress = [&](int64_t done, int64_t total) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
      Q_EMIT progress(done, total, s > 0 ? static_cast<double>(done) / s : 0.0, tr("running the model"));
      return !cancel_.load();
    };
    auto trace = std::make_shared<Trace>(trace_tokens(model, std::move(req)));
    if (run.edits) run.edits->check_note_ids(*trace);
    if (request.fidelity) {
      if (cancel_) throw Cancelled();
      const int64_t n = std::min<int64_t>(trace->length(), std::max<qint64>(2, request.fidelity_tokens));
      Q_EMIT progress(0, 0, 0, tr("measuring memory fidelity on %L1 tokens").arg(n));
      eval::FidelityOptions fo;
      fo.run = run;
      Json fidelity = eval::memory_fidelity(model, std::vector<int32_t>(trace->tokens.begin(), trace->tokens.begin() + n), fo);
      trace->run_info["fidelity"] = fidelity;
    }

    RunResult result;
    result.request = request;
    result.model_description = QString::fromStdString(loaded_->model_source) + QStringLiteral(" on ") +
                               QString::fromStdString(model.device().str());
    if (request.kind == RunRequest::Kind::Passkey) {
      Q_EMIT progress(T, T, 0, tr("generating the answer"));
      std::vector<int64_t> prompt(trace->tokens.begin(), trace->tokens.end());
      const auto out = generate_greedy(model, prompt, 8, run);
      const std::string answer = tok.decode(std::vector<int32_t>(out.begin(), out.end()));
      // Where the key's tokens are and what became of them: the evaluation's own record.
      const Json record = eval::passkey_case_record(
          passkey, *trace, trace->length(), eval::passkey_key_positions(passkey, trace->char_begin, trace->char_end), answer);
      result.case_json = QString::fromStdString(record.dump(1));
    }
    result.trace = std::move(trace);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Q_EMIT finished(result);
  } catch (const Cancelled&) {
    Q_EMIT failed(tr("cancelled"), true);
  } catch (const std::exception& e) {
    Q_EMIT failed(QString::fromStdString(e.what()), false);
  }
}

}  // namespace memmamba::app
