#include "app/gui/run_worker.h"

#include <torch/torch.h>

#include <QDir>
#include <QFileInfo>

#include <chrono>
#include <optional>

#include "model/checkpoint.h"
#include "model/file_io.h"
#include "model/runtime.h"
#include "model/sample_files.h"
#include "model/session.h"

namespace memmamba::app {

// The last model and tokenizer loaded, kept between runs.
struct RunWorker::Loaded {
  std::optional<LoadedModel> model;
  std::string model_key;
  std::optional<Tokenizer> tokenizer;
  std::string tokenizer_key;
};

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

QStringList applyGridRun(const Json& grid_results, RunRequest& request, const QString& grid_path) {
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
    // Grids record the book as the evaluation named it, often relative to where it ran: look
    // beside the grid, then among the bundled samples by its file name.
    QStringList candidates{path};
    const QString name = QFileInfo(path).fileName();
    if (!grid_path.isEmpty() && QFileInfo(path).isRelative()) {
      const QDir grid_dir = QFileInfo(grid_path).absoluteDir();
      candidates << grid_dir.filePath(path) << grid_dir.filePath(name);
    }
    if (const std::string sample = find_sample_file(name.toStdString()); !name.isEmpty() && !sample.empty())
      candidates << QString::fromStdString(sample);
    QString found;
    for (const QString& c : candidates)
      if (QFileInfo(c).isFile() && QFileInfo(c).isReadable()) {
        found = c;
        break;
      }
    if (!found.isEmpty()) {
      request.text_path = found;
      if (found != path) notes << QObject::tr("the grid's haystack book %1 is read from %2").arg(path, found);
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
  try {
    request.spec = eval::CaseSpec::of_results(grid_results);
  } catch (const std::exception& e) {
    notes << QObject::tr("the grid's case settings are unreadable (%1): the case runs with the default ones")
                 .arg(QString::fromStdString(e.what()));
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

RunWorker::RunWorker(QObject* parent) : QObject(parent), loaded_(std::make_unique<Loaded>()) {}
RunWorker::~RunWorker() = default;

void RunWorker::run(const RunRequest& request) {
  cancel_ = false;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    torch::NoGradGuard no_grad;
    // OpenMP's thread count is per thread: take the one the main thread set (MEMMAMBA_THREADS,
    // the affinity mask) for this worker too.
    at::init_num_threads();
    ModelChoice choice;
    choice.checkpoint = request.checkpoint.toStdString();
    choice.device = request.cuda ? "cuda" : "cpu";
    choice.missing_hint = "choose one under Run > Model";
    if (!loaded_->model || loaded_->model_key != choice.key()) {
      Q_EMIT progress(0, 0, 0, tr("loading the model"));
      loaded_->model.reset();
      loaded_->model.emplace(load_model(choice));
      loaded_->model_key = choice.key();
      loaded_->tokenizer.reset();  // checked again against the new model's vocabulary
    }
    const LoadedModel& model = *loaded_->model;
    const std::string tokenizer_key = request.tokenizer.toStdString();
    if (!loaded_->tokenizer || loaded_->tokenizer_key != tokenizer_key) {
      loaded_->tokenizer.reset();
      loaded_->tokenizer.emplace(load_tokenizer(tokenizer_key, model.model.config(), "choose one under Run > Model"));
      loaded_->tokenizer_key = tokenizer_key;
    }
    const Tokenizer& tokenizer = *loaded_->tokenizer;

    MemoryOverrides overrides;
    overrides.memory = request.memory;
    if (request.override_thresholds) {
      overrides.tau_note = request.tau_note;
      overrides.tau_retrieve = request.tau_retrieve;
      overrides.fusion_gain = request.fusion_gain;
    }
    TraceJob job;
    job.options = run_options(model.model, overrides);
    job.options.cpu_bf16_projections = request.cpu_bf16 && !request.cuda;
    if (request.decimate) {
      if (model.model.config().memory && request.memory)
        throw std::runtime_error("DeciMamba drops tokens from a Mamba-only run: turn the memory off for it");
      job.options.decimation = DecimationSettings::defaults_for(model.model.config());
    }
    job.max_tokens = request.max_tokens;
    job.trace_budget_bytes = static_cast<uint64_t>(request.trace_budget_mb) << 20;
    job.edits = request.edits;
    job.fidelity_tokens = request.fidelity ? std::max<qint64>(2, request.fidelity_tokens) : 0;
    job.keep_going = [this] { return !cancel_.load(); };
    job.stage = [this](TraceStage stage) {
      if (stage == TraceStage::Tokenizing) Q_EMIT progress(0, 0, 0, tr("tokenizing"));
      if (stage == TraceStage::Fidelity) Q_EMIT progress(0, 0, 0, tr("measuring memory fidelity"));
    };
    const auto run_start = std::chrono::steady_clock::now();
    job.options.progress = [&](int64_t done, int64_t total) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
      Q_EMIT progress(done, total, s > 0 ? static_cast<double>(done) / s : 0.0, tr("running the model"));
      return !cancel_.load();
    };

    RunResult result;
    result.request = request;
    result.model_description = QString::fromStdString(model.describe());
    if (request.kind == RunRequest::Kind::Text) {
      Q_EMIT progress(0, 0, 0, tr("reading the book"));
      job.book = load_book(request.text_path.toStdString(), request.book);
      job.text = job.book->text;
      job.source_file = request.text_path.toStdString();
      result.trace = std::make_shared<Trace>(trace_text(model, tokenizer, std::move(job)));
    } else {
      Q_EMIT progress(0, 0, 0, tr("building the passkey prompt"));
      PasskeyCaseJob passkey;
      passkey.length = request.length;
      passkey.depth = request.depth;
      passkey.key = request.key.toStdString();
      passkey.spec = request.spec;
      passkey.seed = request.seed;
      passkey.filler_haystack = request.filler_haystack;
      passkey.haystack_book = request.text_path.toStdString();
      passkey.trace = std::move(job);
      PasskeyCaseRun run = trace_passkey_case(model, tokenizer, std::move(passkey));
      result.trace = std::make_shared<Trace>(std::move(run.trace));
      result.case_json = QString::fromStdString(run.record.dump(1));
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Q_EMIT finished(result);
  } catch (const Cancelled&) {
    Q_EMIT failed(tr("cancelled"), true);
  } catch (const std::exception& e) {
    Q_EMIT failed(QString::fromStdString(e.what()), false);
  }
}

}  // namespace memmamba::app
