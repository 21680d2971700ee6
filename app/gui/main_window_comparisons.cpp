// The main window's comparisons (the same text or passkey case run by the Mamba-small twin,
// by this model with its memory off, or as DeciMamba, one or several side by side), a grid's cases in a window of their
// own, and the keyboard-shortcut help.
#include "app/gui/main_window.h"

#include <QAction>
#include <QCheckBox>
#include <QCoreApplication>
#include <QMenu>
#include <QMenuBar>
#include <QMessageBox>
#include <QProcess>
#include <QPushButton>
#include <QSettings>
#include <QTimer>

#include <algorithm>
#include <functional>

#include "model/sample_files.h"
#include "views/retrieval_panel.h"
#include "views/trace_document.h"

namespace memmamba::app {

QStringList MainWindow::caseWindowArguments(qint64 length, double depth) const {
  QStringList args{QStringLiteral("--grid"), document_->gridSource(), QStringLiteral("--case"),
                   QStringLiteral("%1,%2").arg(length).arg(depth, 0, 'g', 17)};
  if (!checkpoint_.isEmpty()) args << QStringLiteral("--checkpoint") << checkpoint_;
  if (!tokenizer_.isEmpty()) args << QStringLiteral("--tokenizer") << tokenizer_;
  args << QStringLiteral("--device") << (cuda_ ? QStringLiteral("cuda") : QStringLiteral("cpu"));
  return args;
}

bool MainWindow::caseGoesHere(qint64 length, double depth) {
  const bool book_loaded = document_->hasTrace() && last_request_ && last_request_->kind == RunRequest::Kind::Text;
  if (batch_ || !book_loaded || document_->gridSource().isEmpty()) return true;
  QSettings settings;
  QString choice = settings.value(QStringLiteral("grid/case_window")).toString();
  if (choice != QLatin1String("here") && choice != QLatin1String("new")) {
    QMessageBox box(QMessageBox::Question, tr("Open the case"),
                    tr("Running this case replaces the book shown here (%1). Open the case in a new window instead?")
                        .arg(document_->source()),
                    QMessageBox::Cancel, this);
    auto* fresh = box.addButton(tr("New window"), QMessageBox::AcceptRole);
    auto* here = box.addButton(tr("Here"), QMessageBox::DestructiveRole);
    box.setDefaultButton(fresh);
    auto* remember = new QCheckBox(tr("Remember (Settings: grid/case_window)"), &box);
    box.setCheckBox(remember);
    box.exec();
    if (box.clickedButton() != fresh && box.clickedButton() != here) return false;
    choice = box.clickedButton() == fresh ? QStringLiteral("new") : QStringLiteral("here");
    if (remember->isChecked()) settings.setValue(QStringLiteral("grid/case_window"), choice);
  }
  if (choice == QLatin1String("here")) return true;
  const QStringList args = caseWindowArguments(length, depth);
  if (QProcess::startDetached(QCoreApplication::applicationFilePath(), args))
    appendLog(tr("opened the case in a new window: %1 %2").arg(QCoreApplication::applicationFilePath(), args.join(QLatin1Char(' '))));
  else
    complain(tr("Open the case"), tr("could not start another Explorer (%1)").arg(QCoreApplication::applicationFilePath()));
  return false;
}

void MainWindow::runComparisons(const QList<bool>& decimate_each) {
  // A comparison that cannot start says so with runFailed too: batch use waits for one or the other.
  if (running_) {
    complain(tr("Comparison"), tr("A run is in progress: cancel it first."));
    Q_EMIT runFailed(tr("a run is in progress"));
    return;
  }
  const Trace* current = document_->trace();
  RunRequest base;
  if (last_request_ && last_request_->kind == RunRequest::Kind::Passkey) {
    base = *last_request_;  // the same passkey case, run the other way
    base.edits = Json::array();
    base.own_checkpoint = false;
  } else {
    if (!ensureCurrentText(tr("Comparison"), tr("Open a text first."))) {
      Q_EMIT runFailed(tr("no text to compare"));
      return;
    }
    base = textRequest(current_text_);
    // The same tokens as the run beside it, also where that run stopped early (--max-tokens).
    if (current && current->length() > 0) base.max_tokens = std::min<qint64>(base.max_tokens, current->length());
  }
  // Measured for the comparisons too when the current run has it, so they sit side by side.
  base.fidelity = current && current->run_info.is_object() && current->run_info.contains("fidelity");
  const std::string twin = find_sample_file("mamba-small.safetensors");
  comparison_queue_.clear();
  for (const bool decimate : decimate_each) {
    RunRequest r = base;
    r.memory = false;
    r.decimate = decimate;
    r.fidelity = base.fidelity && !decimate;  // fidelity needs every token at every layer
    QString which = decimate ? tr("DeciMamba") : tr("Mamba-only");
    if (twin_action_->isChecked() && !twin.empty()) {
      r.checkpoint = QString::fromStdString(twin);
      r.own_checkpoint = true;
      which = decimate ? tr("DeciMamba on Mamba-small") : tr("Mamba-small");
    }
    r.label += QStringLiteral(" (%1)").arg(which);
    comparison_queue_.push_back({r, which});
  }
  comparison_replaces_ = true;
  startNextComparison();
}

void MainWindow::startNextComparison() {
  if (comparison_queue_.empty()) {
    Q_EMIT comparisonsFinished();
    return;
  }
  PendingComparison next = comparison_queue_.front();
  comparison_queue_.erase(comparison_queue_.begin());
  comparison_pending_ = next.label;
  startRun(next.request);
}

void MainWindow::acceptComparison(const RunResult& result) {
  const QString label = comparison_pending_;
  comparison_pending_.clear();
  // The first of a batch replaces the comparisons before it; the others join it.
  if (comparison_replaces_) document_->setComparison(result.trace, label);
  else document_->addComparison(result.trace, label);
  comparison_replaces_ = false;
  if (result.request.kind == RunRequest::Kind::Passkey && !result.case_json.isEmpty()) {
    // The same case the other way: its answer, and for DeciMamba whether the key survived.
    try {
      const Json record = Json::parse(result.case_json.toStdString());
      QString line = tr("%1 answered \"%2\" (%3)")
                         .arg(label, QString::fromStdString(record.at("answer").as_string()),
                              record.at("hit").as_bool() ? tr("found") : tr("missed"));
      if (record.contains("key_survived_decimation"))
        line += record.at("key_survived_decimation").as_bool() ? tr("; the key survived every decimating layer")
                                                               : tr("; the key was dropped by decimation");
      appendLog(line);
      retrieval_->showComparisonAnswer(record, label);
    } catch (const std::exception&) {
    }
  }
  // Queued: the next run starts once this slot has returned.
  QTimer::singleShot(0, this, &MainWindow::startNextComparison);
}

QString MainWindow::shortcutsHelp() const {
  // Generated from the menus' actions, so that it cannot drift from them.
  QString rows;
  std::function<void(const QMenu*, const QString&)> walk = [&](const QMenu* menu, const QString& path) {
    for (QAction* a : menu->actions()) {
      if (a->menu()) {
        walk(a->menu(), path + QStringLiteral(" > ") + a->menu()->title().remove(QLatin1Char('&')));
        continue;
      }
      if (a->shortcut().isEmpty()) continue;
      rows += QStringLiteral("<tr><td><b>%1</b></td><td>%2 &gt; %3</td></tr>")
                  .arg(a->shortcut().toString(QKeySequence::NativeText).toHtmlEscaped(), path,
                       a->text().remove(QLatin1Char('&')).toHtmlEscaped());
    }
  };
  for (QAction* a : menuBar()->actions())
    if (a->menu()) walk(a->menu(), a->menu()->title().remove(QLatin1Char('&')));
  return tr("<table cellpadding=3>%1</table><p>The timeline's buttons take the same keys; in the book view the "
            "arrow keys move the text cursor.</p>").arg(rows);
}

}  // namespace memmamba::app
