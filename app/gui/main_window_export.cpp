// The main window's figures: every view's plots by name, single and batch exports (PNG, SVG,
// PDF and CSV) with their dialogs, and screenshots of every view.
#include "app/gui/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QDockWidget>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QMessageBox>
#include <QProgressDialog>
#include <QSpinBox>
#include <qcustomplot.h>

#include "views/attention_view.h"
#include "views/book_view.h"
#include "views/decay_view.h"
#include "views/loss_difference_view.h"
#include "views/plot_export.h"
#include "views/pool_view.h"
#include "views/retrieval_panel.h"
#include "views/trace_document.h"
#include "views/trigger_view.h"

namespace memmamba::app {

std::vector<std::pair<QString, views::PlotPanel*>> MainWindow::panels() const {
  return {{QStringLiteral("pool"), pool_}, {QStringLiteral("thresholds"), triggers_}, {QStringLiteral("attention"), attention_},
          {QStringLiteral("decay"), decay_}, {QStringLiteral("passkey"), retrieval_},
          {QStringLiteral("loss-difference"), loss_difference_}};
}

QStringList MainWindow::figureNames() const {
  QStringList out;
  for (const auto& [name, panel] : panels())
    for (const views::Figure& f : panel->figures()) out << name + QLatin1Char('/') + f.name;
  return out;
}

QString MainWindow::exportFigure(const QString& name, const QString& path, int width, int height, double scale,
                                 views::CsvDetail csv_detail) {
  for (const auto& [panel_name, panel] : panels())
    for (const views::Figure& f : panel->figures())
      if (panel_name + QLatin1Char('/') + f.name == name) {
        if (views::figureIsEmpty(f.plot))
          return tr("%1 is empty: nothing is drawn in it yet (load a trace, a grid or a measurement first)").arg(name);
        if (path.endsWith(QLatin1String(".csv"), Qt::CaseInsensitive)) return views::writeTextAtomically(path, panel->csv(f.name, csv_detail));
        bool known = false;
        const auto format = views::formatForPath(path, &known);
        if (!known) return tr("%1: choose a .png, .svg, .pdf or .csv file name").arg(path);
        return views::exportFigure(f.plot, path, format, {width, height, scale});
      }
  return tr("no figure named %1").arg(name);
}

QString MainWindow::exportAll(const QString& directory, int width, int height, double scale,
                              const std::function<bool(int, int)>& progress, views::CsvDetail csv_detail) {
  QDir dir(directory);
  if (!dir.exists() && !QDir().mkpath(directory)) return tr("cannot create %1").arg(directory);
  QStringList errors;
  const QString stem = QStringLiteral("t%1-L%2-").arg(document_->position()).arg(document_->layer());
  // Figures with nothing drawn yet (no grid loaded, no measurement) are left out, and said so.
  QStringList names, empty;
  for (const auto& [panel_name, panel] : panels())
    for (const views::Figure& f : panel->figures())
      (views::figureIsEmpty(f.plot) ? empty : names) << panel_name + QLatin1Char('/') + f.name;
  if (!empty.isEmpty()) appendLog(tr("export all: left out %1, with nothing drawn yet").arg(empty.join(QStringLiteral(", "))));
  const char* const extensions[] = {".png", ".svg", ".pdf", ".csv"};
  const int total = static_cast<int>(names.size()) * 4;
  int done = 0;
  for (const QString& name : names) {
    const QString base = dir.filePath(stem + QString(name).replace(QLatin1Char('/'), QLatin1Char('-')));
    for (const char* ext : extensions) {
      // Each file is written whole (QSaveFile) before the next starts: cancelling leaves
      // complete files only.
      if (progress && !progress(done, total)) {
        errors << tr("cancelled after %1 of %2 files").arg(done).arg(total);
        return errors.join(QLatin1Char('\n'));
      }
      const QString e = exportFigure(name, base + QLatin1String(ext), width, height, scale, csv_detail);
      if (!e.isEmpty()) errors << e;
      ++done;
    }
  }
  if (progress) progress(done, total);
  return errors.join(QLatin1Char('\n'));
}

void MainWindow::exportDialog() {
  QDialog dialog(this);
  dialog.setWindowTitle(tr("Export figure"));
  auto* form = new QFormLayout(&dialog);
  auto* figure = new QComboBox(&dialog);
  figure->addItems(figureNames());
  auto* width = new QSpinBox(&dialog);
  width->setRange(100, 20000);
  width->setValue(QSettings().value(QStringLiteral("export/width"), 1600).toInt());
  auto* height = new QSpinBox(&dialog);
  height->setRange(100, 20000);
  height->setValue(QSettings().value(QStringLiteral("export/height"), 900).toInt());
  auto* scale = new QDoubleSpinBox(&dialog);
  scale->setRange(0.5, 8);
  scale->setValue(QSettings().value(QStringLiteral("export/scale"), 2.0).toDouble());
  scale->setToolTip(tr("PNG pixel ratio: 2 gives 192 dpi at the same layout"));
  auto* csv_full = new QCheckBox(tr("every value (per token), not what the figure draws"), &dialog);
  csv_full->setChecked(QSettings().value(QStringLiteral("export/csv_full"), false).toBool());
  csv_full->setToolTip(tr("A CSV holds the figure's points as drawn (its bins, averages and bands); checked, it holds "
                          "every value behind them, which for a book's raster is tens of megabytes"));
  form->addRow(tr("Figure"), figure);
  form->addRow(tr("Width (px / pt)"), width);
  form->addRow(tr("Height (px / pt)"), height);
  form->addRow(tr("PNG scale"), scale);
  form->addRow(tr("CSV data"), csv_full);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Save | QDialogButtonBox::Cancel, &dialog);
  form->addRow(buttons);
  connect(buttons, &QDialogButtonBox::accepted, &dialog, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, &dialog, &QDialog::reject);
  if (dialog.exec() != QDialog::Accepted) return;
  QSettings s;
  s.setValue(QStringLiteral("export/width"), width->value());
  s.setValue(QStringLiteral("export/height"), height->value());
  s.setValue(QStringLiteral("export/scale"), scale->value());
  s.setValue(QStringLiteral("export/csv_full"), csv_full->isChecked());
  const QString path = QFileDialog::getSaveFileName(this, tr("Export figure"), QString(figure->currentText()).replace(QLatin1Char('/'), QLatin1Char('-')) + QStringLiteral(".png"),
                                                    tr("PNG (*.png);;SVG (*.svg);;PDF (*.pdf);;CSV data (*.csv)"));
  if (path.isEmpty()) return;
  const QString error = exportFigure(figure->currentText(), path, width->value(), height->value(), scale->value(),
                                     csv_full->isChecked() ? views::CsvDetail::Full : views::CsvDetail::Figure);
  if (!error.isEmpty()) QMessageBox::warning(this, tr("Export"), error);
  else appendLog(tr("exported %1").arg(path));
}

void MainWindow::exportAllDialog() {
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Export all figures into"));
  if (dir.isEmpty()) return;
  QSettings s;
  // Settings may hold anything: sizes are clamped to what the export dialog allows.
  const int width = std::clamp(s.value(QStringLiteral("export/width"), 1600).toInt(), 100, 20000);
  const int height = std::clamp(s.value(QStringLiteral("export/height"), 900).toInt(), 100, 20000);
  double scale = s.value(QStringLiteral("export/scale"), 2.0).toDouble();
  if (!(scale >= 0.5 && scale <= 8.0)) scale = 2.0;
  QProgressDialog dialog(tr("Exporting every figure..."), tr("Cancel"), 0, 1, this);
  dialog.setWindowModality(Qt::WindowModal);
  dialog.setMinimumDuration(300);
  const auto csv_detail = s.value(QStringLiteral("export/csv_full"), false).toBool() ? views::CsvDetail::Full : views::CsvDetail::Figure;
  const QString error = exportAll(dir, width, height, scale, [&dialog](int done, int total) {
    dialog.setMaximum(total);
    dialog.setValue(done);  // processes events: the Cancel button works between files
    return !dialog.wasCanceled();
  }, csv_detail);
  if (!error.isEmpty()) QMessageBox::warning(this, tr("Export"), error);
  else appendLog(tr("exported every figure to %1").arg(dir));
}

void MainWindow::saveScreenshots(const QString& directory) {
  QDir().mkpath(directory);
  grab().save(QDir(directory).filePath(QStringLiteral("main-window.png")));
  // Each panel on its own at a readable size (docked, the bottom ones are a strip), then put back.
  for (QDockWidget* d : findChildren<QDockWidget*>()) {
    if (!d->widget()) continue;
    const bool was_floating = d->isFloating(), was_visible = d->isVisible();
    d->setVisible(true);
    d->setFloating(true);
    d->resize(1100, 700);
    QApplication::processEvents();
    d->widget()->grab().save(QDir(directory).filePath(d->objectName() + QStringLiteral(".png")));
    d->setFloating(was_floating);
    d->setVisible(was_visible);
  }
  QApplication::processEvents();
  // The window after a switch to the dark palette and back to the one it had (a teacher's
  // projector): both must draw every view in readable colours.
  QAction* dark = nullptr;
  for (QAction* a : findChildren<QAction*>())
    if (a->isCheckable() && a->text().remove(QLatin1Char('&')) == tr("Dark palette")) dark = a;
  if (!dark) return;
  const bool was_dark = dark->isChecked();
  dark->trigger();  // as View > Dark palette does it
  QApplication::processEvents();
  grab().save(QDir(directory).filePath(was_dark ? QStringLiteral("main-window-light.png") : QStringLiteral("main-window-dark.png")));
  dark->trigger();
  QApplication::processEvents();
}

}  // namespace memmamba::app
