// Runs the model off the GUI thread: traces a text, or builds, traces and answers a
// passkey case. Torch stays in run_worker.cpp; this header is Qt and the trace only.
// The loaded model and tokenizer are kept between runs (reloaded when the choice changes).
#pragma once
#include <QObject>
#include <QString>
#include <QStringList>

#include <atomic>
#include <memory>

#include "model/book/book.h"
#include "model/eval/retrieval_case.h"
#include "model/trace.h"

namespace memmamba::app {

struct RunRequest {
  enum class Kind { Text, Passkey } kind = Kind::Text;
  QString label;            // shown in the window title and the log
  QString text_path;        // Text: the book; Passkey: the haystack's book
  BookOptions book;         // how the book's text is read (a re-run takes the trace's)
  Json edits = Json::array();  // memory edits (model/memory/memory_edits.h), a JSON list
  QString checkpoint;       // empty: the bundled model (random weights when none is bundled)
  bool own_checkpoint = false;  // the request names its model (a comparison's twin): kept as it is
  QString tokenizer;        // empty: the bundled tokenizer
  bool cuda = false;
  bool cpu_bf16 = false;    // on the CPU: the matrix products in bf16 (`run --bf16`)
  bool memory = true;       // false: Mamba-only at run time
  bool decimate = false;    // DeciMamba (model/decimation.h, its defaults): needs memory off
  bool override_thresholds = false;
  double tau_note = 0.3, tau_retrieve = 0.5, fusion_gain = 1.0;  // with override_thresholds
  qint64 max_tokens = 2'000'000;
  qint64 trace_budget_mb = 2048;
  bool fidelity = false;            // also measure ETMF / ECLMF (run_info "fidelity")
  qint64 fidelity_tokens = 4096;    // on this many leading tokens (hidden states are kept)
  // Passkey.
  qint64 length = 4096;
  double depth = 0.5;
  QString key;              // empty: the generator's key
  eval::CaseSpec spec;      // the case's kind: key, wording, facts (a grid's cases: the grid's)
  quint64 seed = 0;
  bool filler_haystack = false;  // the repeated filler instead of book sentences
};

// Makes `request` (a passkey case of an `eval passkey` grid) run as the grid ran it: the same
// haystack (filler, or the grid's book where that file is here), thresholds, read-out gain
// (1 for grids written before the gain existed) and memory switch. What cannot be matched
// (a missing book, another checkpoint than request.checkpoint, empty meaning the bundled one)
// is returned as notes for the log. A relative book path is also looked for beside the grid
// file (`grid_path`) and among the bundled samples by name.
QStringList applyGridRun(const Json& grid_results, RunRequest& request, const QString& grid_path = QString());

struct RunResult {
  std::shared_ptr<const Trace> trace;
  RunRequest request;
  QString model_description;  // checkpoint (or "untrained random weights") and device
  QString case_json;          // Passkey: the case record (answer, truth, key notes)
  double seconds = 0;
};

class RunWorker : public QObject {
  Q_OBJECT
 public:
  explicit RunWorker(QObject* parent = nullptr);
  ~RunWorker() override;
  void cancel() { cancel_ = true; }

 public Q_SLOTS:
  void run(const memmamba::app::RunRequest& request);

 Q_SIGNALS:
  void progress(qint64 done, qint64 total, double tokens_per_second, const QString& stage);
  void finished(const memmamba::app::RunResult& result);
  void failed(const QString& message, bool cancelled);

 private:
  struct Loaded;
  std::unique_ptr<Loaded> loaded_;
  std::atomic<bool> cancel_{false};
};

// The book a trace was made from, wherever it still is: its recorded path (absolute, or
// relative to the working folder), then relative to the trace's folder, then by name beside
// the trace, then a bundled sample of that name. Empty when none of them is a file.
QString locateTraceBook(const memmamba::Json& run_info, const QString& trace_path);

}  // namespace memmamba::app

Q_DECLARE_METATYPE(memmamba::app::RunRequest)
Q_DECLARE_METATYPE(memmamba::app::RunResult)
