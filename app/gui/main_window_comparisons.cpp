// The main window's comparisons (the same text or passkey case run by the Mamba-small twin,
// by this model with its memory off, or as DeciMamba) and the keyboard-shortcut help.
#include "app/gui/main_window.h"

#include <QAction>
#include <QMenu>
#include <QMenuBar>

#include <functional>

#include "model/sample_files.h"
#include "views/trace_document.h"

namespace memmamba::app {

void MainWindow::runComparison(bool decimate) {
  RunRequest r;
  if (last_request_ && last_request_->kind == RunRequest::Kind::Passkey) {
    r = *last_request_;  // the same passkey case, run the other way
    r.edits = Json::array();
    r.own_checkpoint = false;
  } else {
    if (!ensureCurrentText(tr("Comparison"), tr("Open a text first."))) return;
    r = textRequest(current_text_);
  }
  r.memory = false;
  r.decimate = decimate;
  QString which = decimate ? tr("DeciMamba") : tr("Mamba-only");
  const std::string twin = find_sample_file("mamba-small.safetensors");
  if (twin_action_->isChecked() && !twin.empty()) {
    r.checkpoint = QString::fromStdString(twin);
    r.own_checkpoint = true;
    which = decimate ? tr("DeciMamba on Mamba-small") : tr("Mamba-small");
  }
  // Measured for the comparison too when the current run has it, so both sit side by side.
  const Trace* current = document_->trace();
  r.fidelity = current && current->run_info.is_object() && current->run_info.contains("fidelity");
  r.label += QStringLiteral(" (%1)").arg(which);
  comparison_pending_ = which;
  startRun(r);
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
