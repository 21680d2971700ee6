// The main window's memory edits (interventions): the edit list, re-runs with the whole list,
// and what the edits changed, reported in the log.
#include "app/gui/main_window.h"

#include <QListWidget>
#include <QPlainTextEdit>

#include <cmath>

#include "model/memory/memory_edits.h"
#include "views/trace_document.h"

namespace memmamba::app {

void MainWindow::addEdit(const Json& edit) {
  if (running_) {
    complain(tr("Edit"), tr("A run is going: wait for it (or cancel it) before editing the memory."));
    return;
  }
  edits_.push_back(edit);
  refreshEditList();
  rerunWithEdits();
}

void MainWindow::setEdits(const Json& edits) {
  if (running_ || !edits.is_array()) return;
  edits_ = Json::array();
  for (const Json& e : edits.as_array()) edits_.push_back(e);
  refreshEditList();
  rerunWithEdits();
}

void MainWindow::removeEdit(int index) {
  if (running_ || index < 0 || index >= static_cast<int>(edits_.as_array().size())) return;
  edits_.mutable_array().erase(edits_.mutable_array().begin() + index);
  refreshEditList();
  rerunWithEdits();
}

void MainWindow::clearEdits() {
  if (running_ || edits_.as_array().empty()) return;
  edits_ = Json::array();
  refreshEditList();
  rerunWithEdits();
}

void MainWindow::refreshEditList() {
  edit_list_->clear();
  ModelConfig config;
  try {
    if (document_->trace()) config = ModelConfig::from_json(document_->trace()->config);
  } catch (const std::exception&) {
  }
  for (const Json& e : edits_.as_array()) {
    try {
      // Described as the model library reads it (a one-edit list checks nothing run-specific).
      Json one = Json::array();
      one.push_back(e);
      edit_list_->addItem(QString::fromStdString(MemoryEdits::parse(one, config).edits()[0].describe()));
    } catch (const std::exception&) {
      edit_list_->addItem(QString::fromStdString(e.dump()));
    }
  }
}

void MainWindow::rerunWithEdits() {
  RunRequest r;
  if (last_request_) {
    r = *last_request_;
  } else {
    if (!ensureCurrentText(tr("Edit the memory"), tr("Open a text first: a loaded trace has no text file to re-run."))) return;
    r = textRequest(current_text_);
  }
  // The run before the first edit stays as the comparison.
  const Trace* current = document_->trace();
  const bool current_unedited = current && !(current->run_info.is_object() && current->run_info.contains("memory_edits"));
  if (current_unedited) {
    unedited_ = document_->sharedTrace();
    unedited_answer_.clear();
    if (last_request_ && last_request_->kind == RunRequest::Kind::Passkey) unedited_answer_ = last_answer_;
  }
  r.edits = edits_;
  const size_t n = edits_.as_array().size();
  QString base = r.label;
  const int cut = base.indexOf(QStringLiteral(" ["));
  if (cut >= 0) base.truncate(cut);
  r.label = n ? tr("%1 [%n memory edit(s)]", nullptr, static_cast<int>(n)).arg(base) : base;
  startRun(r);
}

void MainWindow::reportEditEffect(const RunResult& result) {
  if (!unedited_ || !result.request.edits.is_array()) return;
  const Trace& before = *unedited_;
  const Trace& after = *result.trace;
  if (before.tokens != after.tokens) return;  // another text: nothing to compare token by token
  double sum = 0, largest = 0;
  int64_t counted = 0, at = -1;
  for (size_t t = 0; t < after.loss.size() && t < before.loss.size(); ++t) {
    if (!std::isfinite(after.loss[t]) || !std::isfinite(before.loss[t])) continue;
    const double d = static_cast<double>(after.loss[t]) - static_cast<double>(before.loss[t]);
    sum += d;
    ++counted;
    if (std::abs(d) > std::abs(largest)) { largest = d; at = static_cast<int64_t>(t); }
  }
  if (counted > 0)
    appendLog(tr("edits: next-token loss changed by %1 on average over %L2 tokens; the largest change, %3, predicting token %L4")
                  .arg(sum / static_cast<double>(counted), 0, 'f', 4).arg(counted).arg(largest, 0, 'f', 3).arg(at + 1));
  if (result.request.kind == RunRequest::Kind::Passkey && !unedited_answer_.isEmpty())
    appendLog(tr("edits: the answer was \"%1\", now \"%2\"").arg(unedited_answer_, last_answer_));
}

}  // namespace memmamba::app
