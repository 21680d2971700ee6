#include "app/gui/main_window.h"

#include <QApplication>
#include <QCloseEvent>
#include <QComboBox>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QDockWidget>
#include <QHBoxLayout>
#include <QListWidget>
#include <QDoubleSpinBox>
#include <QDragEnterEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QFutureWatcher>
#include <QLabel>
#include <QLineEdit>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QProgressDialog>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStatusBar>
#include <QStyleFactory>
#include <QTextBrowser>
#include <QToolBar>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>
#include <qcustomplot.h>

#include <algorithm>
#include <cmath>

#include <cstdio>

#include "model/log.h"
#include "model/runtime.h"
#include "model/sample_files.h"
#include "model/memory/memory_edits.h"
#include "views/attention_view.h"
#include "views/book_view.h"
#include "views/decay_view.h"
#include "views/loss_difference_view.h"
#include "views/noted_list_view.h"
#include "views/plot_export.h"
#include "views/pool_view.h"
#include "views/retrieval_panel.h"
#include "views/timeline_bar.h"
#include "views/trace_document.h"
#include "views/trigger_view.h"

namespace memmamba::app {

namespace {

constexpr int kMaxRecent = 10;

const char* kTour =
    "<h3>A short tour</h3>"
    "<ol>"
    "<li><b>The book</b> (centre): orange tokens are the notes of the current layer, darker = more important; "
    "dotted underlines mark tokens where the retrieval trigger fired. Click any token to select it everywhere.</li>"
    "<li><b>Timeline</b> (bottom): drag, step with the arrows, or press Play to watch the pools fill and evict. "
    "Change the layer there too.</li>"
    "<li><b>State pool</b>: the K slots of this layer at the current token, what text each holds, its priority and age. "
    "Green rows just changed. Below: which note held each slot over the whole run.</li>"
    "<li><b>Thresholds</b>: where notes (tau1) and retrievals (tau2) fire in every layer. Move tau1/tau2 and "
    "re-run to see the effect.</li>"
    "<li><b>Attention</b>: what the current token read from the pool, by slot and by the source position of each note.</li>"
    "<li><b>Most noted</b>: the texts this layer noted most; double-click one to step through where it was noted. "
    "Ctrl+Right and Ctrl+Left jump to the next and previous note (Help &gt; Keyboard shortcuts lists every key).</li>"
    "<li><b>Decay</b>: how fast the SSM forgets the selected token, per layer; the paper's |A|^k view beside it.</li>"
    "<li><b>Passkey</b>: hide a key in a long text, run it, and see whether it was noted, kept and attended to. "
    "Load an evaluation grid and click a cell to open that case. Run &gt; Add a Mamba-only comparison runs the "
    "bundled Mamba-small, trained on the same rows, on the same case or book.</li>"
    "<li><b>Edits</b>: right-click a pool slot to drop or pin its note, or a token of the book to plant one; the run "
    "is redone and compared with the run before the edits: the answer in the log, the change in each token's loss "
    "below the edit list, the reads outlined beside the new ones in Attention, the old pool in the State pool table.</li>"
    "<li><b>Export</b> (File menu): any figure as PNG, SVG or PDF at a chosen size, with its data as CSV.</li>"
    "</ol>";

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  setWindowTitle(tr("MemMamba Explorer"));
  setAcceptDrops(true);
  setDockOptions(QMainWindow::AnimatedDocks | QMainWindow::AllowTabbedDocks | QMainWindow::AllowNestedDocks);
  document_ = new views::TraceDocument(this);
  book_ = new views::BookView(document_, this);
  setCentralWidget(book_);
  timeline_ = new views::TimelineBar(document_, this);
  auto* timeline_bar = new QToolBar(tr("Timeline"), this);
  timeline_bar->setObjectName(QStringLiteral("timeline"));
  timeline_bar->addWidget(timeline_);
  addToolBar(Qt::BottomToolBarArea, timeline_bar);

  pool_ = new views::PoolView(document_, this);
  triggers_ = new views::TriggerView(document_, this);
  attention_ = new views::AttentionView(document_, this);
  decay_ = new views::DecayView(document_, this);
  loss_difference_ = new views::LossDifferenceView(document_, this);
  retrieval_ = new views::RetrievalPanel(document_, this);
  noted_ = new views::NotedListView(document_, this);
  log_ = new QPlainTextEdit(this);
  log_->setReadOnly(true);
  log_->setMaximumBlockCount(5000);
  tour_ = new QTextBrowser(this);
  tour_->setHtml(QString::fromUtf8(kTour));
  auto dock = [this](QWidget* w, const QString& title, const QString& name, Qt::DockWidgetArea area) {
    auto* d = new QDockWidget(title, this);
    d->setObjectName(name);
    d->setWidget(w);
    addDockWidget(area, d);
    return d;
  };
  auto* pool_dock = dock(pool_, tr("State pool"), QStringLiteral("pool"), Qt::RightDockWidgetArea);
  auto* trig_dock = dock(triggers_, tr("Thresholds"), QStringLiteral("triggers"), Qt::BottomDockWidgetArea);
  auto* att_dock = dock(attention_, tr("Attention"), QStringLiteral("attention"), Qt::RightDockWidgetArea);
  auto* decay_dock = dock(decay_, tr("Decay"), QStringLiteral("decay"), Qt::BottomDockWidgetArea);
  auto* ret_dock = dock(retrieval_, tr("Passkey"), QStringLiteral("retrieval"), Qt::LeftDockWidgetArea);
  auto* noted_dock = dock(noted_, tr("Most noted"), QStringLiteral("most-noted"), Qt::RightDockWidgetArea);
  auto* log_dock = dock(log_, tr("Log"), QStringLiteral("log"), Qt::BottomDockWidgetArea);
  tour_dock_ = dock(tour_, tr("Tour"), QStringLiteral("tour"), Qt::LeftDockWidgetArea);
  // Memory edits: what was changed, undoable one by one.
  auto* edits_panel = new QWidget(this);
  {
    auto* layout = new QVBoxLayout(edits_panel);
    auto* hint = new QLabel(tr("Right-click a slot of the state pool to drop or pin its note, or a token of the book to "
                               "plant a note of it. Each change re-runs; the run before the first edit is the comparison."),
                            edits_panel);
    hint->setWordWrap(true);
    layout->addWidget(hint);
    edit_list_ = new QListWidget(edits_panel);
    edit_list_->setObjectName(QStringLiteral("edit-list"));
    layout->addWidget(edit_list_, 1);
    auto* buttons = new QHBoxLayout;
    auto* remove = new QPushButton(tr("Undo selected"), edits_panel);
    auto* clear = new QPushButton(tr("Clear all"), edits_panel);
    buttons->addWidget(remove);
    buttons->addWidget(clear);
    layout->addLayout(buttons);
    connect(remove, &QPushButton::clicked, this, [this] { removeEdit(edit_list_->currentRow()); });
    connect(clear, &QPushButton::clicked, this, &MainWindow::clearEdits);
  }
  auto* edits_dock = dock(edits_panel, tr("Edits"), QStringLiteral("edits"), Qt::LeftDockWidgetArea);
  loss_dock_ = dock(loss_difference_, tr("Loss difference"), QStringLiteral("loss-difference"), Qt::BottomDockWidgetArea);
  // A new comparison (the run before the edits, or Mamba-only) brings its per-token effect forward.
  connect(document_, &views::TraceDocument::comparisonChanged, this, [this] {
    if (document_->comparison()) loss_dock_->raise();
  });
  connect(pool_, &views::PoolView::editRequested, this, [this](const QString& kind, int layer, qint64 note, qint64 position) {
    Json e = Json::object();
    e["layer"] = static_cast<int64_t>(layer);
    e["note"] = static_cast<int64_t>(note);
    if (kind == QLatin1String("pin")) {
      e["kind"] = "pin";
    } else {
      e["kind"] = "drop";
      if (kind == QLatin1String("drop_after")) e["position"] = static_cast<int64_t>(position);
    }
    addEdit(e);
  });
  connect(book_, &views::BookView::plantRequested, this, [this](int layer, qint64 source, qint64 position) {
    Json e = Json::object();
    e["kind"] = "plant";
    e["layer"] = static_cast<int64_t>(layer);
    e["source"] = static_cast<int64_t>(source);
    e["position"] = static_cast<int64_t>(position);
    addEdit(e);
  });
  tabifyDockWidget(pool_dock, att_dock);
  tabifyDockWidget(att_dock, noted_dock);
  tabifyDockWidget(ret_dock, edits_dock);
  tabifyDockWidget(trig_dock, decay_dock);
  tabifyDockWidget(decay_dock, loss_dock_);
  tabifyDockWidget(loss_dock_, log_dock);
  tabifyDockWidget(tour_dock_, ret_dock);
  pool_dock->raise();
  trig_dock->raise();
  tour_dock_->raise();

  device_label_ = new QLabel(this);
  speed_label_ = new QLabel(this);
  progress_ = new QProgressBar(this);
  progress_->setMaximumWidth(240);
  progress_->setVisible(false);
  cancel_ = new QPushButton(tr("Cancel"), this);
  cancel_->setVisible(false);
  statusBar()->addWidget(device_label_);
  statusBar()->addPermanentWidget(speed_label_);
  statusBar()->addPermanentWidget(progress_);
  statusBar()->addPermanentWidget(cancel_);
  connect(cancel_, &QPushButton::clicked, this, &MainWindow::cancelRun);

  qRegisterMetaType<RunRequest>();
  qRegisterMetaType<RunResult>();
  worker_ = new RunWorker;
  worker_->moveToThread(&worker_thread_);
  connect(&worker_thread_, &QThread::finished, worker_, &QObject::deleteLater);
  connect(this, &MainWindow::runRequested, worker_, &RunWorker::run, Qt::QueuedConnection);
  connect(worker_, &RunWorker::finished, this, &MainWindow::onRunFinished, Qt::QueuedConnection);
  connect(worker_, &RunWorker::failed, this, &MainWindow::onRunFailed, Qt::QueuedConnection);
  connect(worker_, &RunWorker::progress, this,
          [this](qint64 done, qint64 total, double tps, const QString& stage) {
            progress_->setRange(0, total > 0 ? 1000 : 0);
            if (total > 0) progress_->setValue(static_cast<int>(1000.0 * static_cast<double>(done) / static_cast<double>(total)));
            progress_->setFormat(stage + QStringLiteral(" %p%"));
            speed_label_->setText(tps > 0 ? tr("%L1 tok/s").arg(tps, 0, 'f', 0) : stage);
          },
          Qt::QueuedConnection);
  worker_thread_.start();

  connect(triggers_, &views::TriggerView::rerunRequested, this, [this](double t1, double t2, double gain) {
    if (!ensureCurrentText(tr("Re-run"), tr("Open a text first: a loaded trace has no text file to re-run."))) return;
    RunRequest r = textRequest(current_text_);
    r.override_thresholds = true;
    r.tau_note = t1;
    r.tau_retrieve = t2;
    r.fusion_gain = gain;
    r.label += tr(" (tau1 %1, tau2 %2, gain %3)").arg(t1).arg(t2).arg(gain);
    startRun(r);
  });
  connect(retrieval_, &views::RetrievalPanel::caseRequested, this, &MainWindow::runPasskey);
  connect(retrieval_, &views::RetrievalPanel::caseSelected, this, &MainWindow::runGridCase);
  connect(retrieval_, &views::RetrievalPanel::gridLoadRequested, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Load passkey grid"), QString(), tr("JSON (*.json)"));
    if (path.isEmpty()) return;
    const QString error = loadGrid(path);
    if (!error.isEmpty()) complain(tr("Passkey grid"), error);
  });
  connect(retrieval_, &views::RetrievalPanel::comparisonGridLoadRequested, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Grid to draw beside this one"), QString(), tr("JSON (*.json)"));
    if (path.isEmpty()) return;
    const QString error = loadComparisonGrid(path);
    if (!error.isEmpty()) complain(tr("Passkey grid"), error);
  });

  memmamba::log::set_extra_sink([this](memmamba::log::Level level, const std::string& message) {
    const char* names[] = {"debug", "info", "warning", "error"};
    const QString line = QStringLiteral("%1: %2").arg(QLatin1String(names[static_cast<int>(level)]), QString::fromStdString(message));
    QMetaObject::invokeMethod(this, [this, line] { appendLog(line); }, Qt::QueuedConnection);
  });

  buildMenus();
  QSettings settings;
  // Settings are a file the user (or a crash) may have mangled: a saved model path that no
  // longer names a readable file falls back to the bundled one, with a note in the log.
  auto savedFile = [&](const QString& key) {
    const QVariant v = settings.value(key);
    const QString path = v.typeId() == QMetaType::QString ? v.toString() : QString();
    if (!path.isEmpty() && !(QFileInfo(path).isFile() && QFileInfo(path).isReadable())) {
      appendLog(tr("warning: the saved %1 %2 is not a readable file; using the bundled one").arg(key, path));
      settings.remove(key);
      return QString();
    }
    if (v.isValid() && path.isEmpty()) settings.remove(key);
    return path;
  };
  checkpoint_ = savedFile(QStringLiteral("model/checkpoint"));
  tokenizer_ = savedFile(QStringLiteral("model/tokenizer"));
  cuda_ = settings.value(QStringLiteral("model/cuda"), cuda_available()).toBool() && cuda_available();
  cpu_bf16_ = settings.value(QStringLiteral("model/cpu_bf16"), false).toBool();
  resize(1500, 950);
  restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray());
  restoreState(settings.value(QStringLiteral("window/state")).toByteArray());
  setDarkPalette(settings.value(QStringLiteral("view/dark"), false).toBool());
  setModelChoice(checkpoint_, tokenizer_, cuda_);
}

MainWindow::~MainWindow() {
  memmamba::log::set_extra_sink({});
  worker_->cancel();
  worker_thread_.quit();
  worker_thread_.wait();
}

void MainWindow::setModelChoice(const QString& checkpoint, const QString& tokenizer, bool cuda) {
  checkpoint_ = checkpoint;
  tokenizer_ = tokenizer;
  cuda_ = cuda && cuda_available();
  device_label_->setText(tr("Device: %1%2   Model: %3")
                             .arg(cuda_ ? tr("CUDA GPU") : cpu_bf16_ ? tr("CPU (bf16 products)") : tr("CPU"))
                             .arg(cuda_available() || cuda_ ? QString() : tr(" (no CUDA GPU found)"))
                             .arg(checkpoint_.isEmpty() ? tr("bundled") : QFileInfo(checkpoint_).fileName()));
}

void MainWindow::buildMenus() {
  QMenu* file = menuBar()->addMenu(tr("&File"));
  file->addAction(tr("&Open text..."), QKeySequence::Open, this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open a text"), QString(),
                                                      tr("Books (*.txt *.md *.markdown *.html *.htm *.xhtml *.epub *.pdf);;All files (*)"));
    if (!path.isEmpty()) runText(path);
  });
  file->addAction(tr("Open &trace..."), QKeySequence(tr("Ctrl+Shift+O")), this, [this] {
    const QString path = QFileDialog::getOpenFileName(this, tr("Open a trace"), QString(), tr("Traces (*.trace);;All files (*)"));
    if (!path.isEmpty()) openTrace(path);
  });
  recent_menu_ = file->addMenu(tr("Open &recent"));
  rebuildRecentMenu();
  file->addAction(tr("&Save trace as..."), QKeySequence::SaveAs, this, &MainWindow::saveTraceAs);
  file->addSeparator();
  file->addAction(tr("&Export figure..."), QKeySequence(tr("Ctrl+E")), this, &MainWindow::exportDialog);
  file->addAction(tr("Export &all figures..."), QKeySequence(tr("Ctrl+Shift+E")), this, &MainWindow::exportAllDialog);
  file->addSeparator();
  file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);

  QMenu* run = menuBar()->addMenu(tr("&Run"));
  run->addAction(tr("&Model, tokenizer and device..."), this, &MainWindow::chooseModel);
  run->addAction(tr("&Re-run the current text"), QKeySequence(tr("F5")), this, [this] {
    if (ensureCurrentText(tr("Re-run"), tr("Open a text first."))) runText(current_text_);
  });
  run->addAction(tr("Add a &Mamba-only comparison"), this, [this] { runComparisons({false}); });
  // Which Mamba the comparisons run: the bundled twin trained on the same rows (the fair
  // baseline), or the current model with its memory switched off (what the memory adds at run time).
  twin_action_ = run->addAction(tr("Comparisons run the bundled Mamba-small &twin (else: this model, memory off)"));
  twin_action_->setCheckable(true);
  twin_action_->setChecked(QSettings().value(QStringLiteral("run/compare_with_twin"), true).toBool());
  connect(twin_action_, &QAction::toggled, this, [](bool on) { QSettings().setValue(QStringLiteral("run/compare_with_twin"), on); });
  run->addAction(tr("Add a &DeciMamba comparison (memory off, tokens dropped between layers)"), this,
                 [this] { runComparisons({true}); });
  // The teaching demo's three ways of keeping the far past: notes (this run), forgetting
  // (Mamba-only) and dropped tokens (DeciMamba), on the same text or case.
  run->addAction(tr("Compare all &three: Mamba-only and DeciMamba beside this run"), QKeySequence(tr("Ctrl+Shift+M")), this,
                 [this] { runComparisons({false, true}); });
  run->addAction(tr("Run this text as DeciMam&ba (see which tokens each layer keeps)"), this, [this] {
    if (!ensureCurrentText(tr("DeciMamba"), tr("Open a text first."))) return;
    RunRequest r = textRequest(current_text_);
    r.memory = false;
    r.decimate = true;
    r.label += tr(" (DeciMamba)");
    startRun(r);
  });
  run->addAction(tr("Measure memory &fidelity (ETMF, ECLMF)"), this, [this] {
    if (!ensureCurrentText(tr("Memory fidelity"), tr("Open a text first."))) return;
    RunRequest r = textRequest(current_text_);
    r.fidelity = true;
    startRun(r);
  });
  run->addAction(tr("&Cancel"), QKeySequence(tr("Esc")), this, &MainWindow::cancelRun);

  QMenu* view = menuBar()->addMenu(tr("&View"));
  for (QDockWidget* d : findChildren<QDockWidget*>()) view->addAction(d->toggleViewAction());
  view->addSeparator();
  auto* play = view->addAction(tr("&Play / pause"), QKeySequence(Qt::Key_Space), this,
                               [this] { timeline_->setPlaying(!timeline_->playing()); });
  play->setShortcutContext(Qt::ApplicationShortcut);
  // Alt+arrows: plain arrows move the cursor of the book view and the spin boxes.
  QAction* forward = view->addAction(tr("Step &forward"), QKeySequence(Qt::ALT | Qt::Key_Right), this,
                                     [this] { timeline_->stepBy(1); });
  QAction* back = view->addAction(tr("Step &back"), QKeySequence(Qt::ALT | Qt::Key_Left), this,
                                  [this] { timeline_->stepBy(-1); });
  timeline_->setShortcuts(back->shortcut(), play->shortcut(), forward->shortcut());
  view->addAction(tr("Next &layer"), QKeySequence(tr("Ctrl+Down")), this, [this] { document_->setLayer(document_->layer() + 1); });
  view->addAction(tr("Previous la&yer"), QKeySequence(tr("Ctrl+Up")), this, [this] { document_->setLayer(document_->layer() - 1); });
  // The notes of the current layer, one after another (a book's notes are rare and far apart).
  auto jumpToNote = [this](int direction) {
    const int64_t at = document_->nextNoted(document_->layer(), document_->position(), direction);
    if (at >= 0) document_->setPosition(at);
    else statusBar()->showMessage(direction > 0 ? tr("no note of layer %1 after this token").arg(document_->layer())
                                                : tr("no note of layer %1 before this token").arg(document_->layer()), 4000);
  };
  view->addAction(tr("Next &note"), QKeySequence(tr("Ctrl+Right")), this, [jumpToNote] { jumpToNote(1); });
  view->addAction(tr("Previous n&ote"), QKeySequence(tr("Ctrl+Left")), this, [jumpToNote] { jumpToNote(-1); });
  view->addSeparator();
  auto* dark = view->addAction(tr("&Dark palette"));
  dark->setCheckable(true);
  dark->setChecked(QSettings().value(QStringLiteral("view/dark"), false).toBool());
  connect(dark, &QAction::toggled, this, &MainWindow::setDarkPalette);

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&Tour"), this, [this] { showTour(true); });
  help->addAction(tr("&Keyboard shortcuts"), this, [this] {
    QMessageBox box(QMessageBox::NoIcon, tr("Keyboard shortcuts"), shortcutsHelp(), QMessageBox::Close, this);
    box.setTextFormat(Qt::RichText);
    box.exec();
  });
  help->addAction(tr("&About MemMamba Explorer"), this, [this] {
    QMessageBox::about(this, tr("About MemMamba Explorer"),
                       tr("<h3>MemMamba Explorer %1</h3><p>Runs the MemMamba model (a Mamba state-space model that "
                          "takes notes while it reads) on long texts and shows what its memory does: state pools, "
                          "note and retrieval thresholds, attention to notes, forgetting, passkey retrieval.</p>"
                          "<p>Qt %2, QCustomPlot, LibTorch, SentencePiece.</p>")
                           .arg(QApplication::applicationVersion(), QLatin1String(qVersion())));
  });
}

void MainWindow::showTour(bool show) {
  tour_dock_->setVisible(show);
  if (show) tour_dock_->raise();
}

void MainWindow::setDarkPalette(bool dark) {
  QApplication::setStyle(QStyleFactory::create(QStringLiteral("Fusion")));
  QPalette p = QApplication::style()->standardPalette();
  if (dark) {
    p.setColor(QPalette::Window, QColor(45, 45, 48));
    p.setColor(QPalette::WindowText, QColor(230, 230, 230));
    p.setColor(QPalette::Base, QColor(30, 30, 32));
    p.setColor(QPalette::AlternateBase, QColor(45, 45, 48));
    p.setColor(QPalette::Text, QColor(230, 230, 230));
    p.setColor(QPalette::Button, QColor(55, 55, 58));
    p.setColor(QPalette::ButtonText, QColor(230, 230, 230));
    p.setColor(QPalette::Highlight, QColor(60, 120, 200));
    p.setColor(QPalette::ToolTipBase, QColor(60, 60, 60));
    p.setColor(QPalette::ToolTipText, QColor(230, 230, 230));
  }
  QApplication::setPalette(p);
  QSettings().setValue(QStringLiteral("view/dark"), dark);
  // Every panel colours its plots on the palette change (PlotPanel::changeEvent); a view that
  // rebuilds its layout later colours the new elements itself.
  if (document_->hasTrace()) Q_EMIT document_->traceChanged();
}

void MainWindow::appendLog(const QString& line) {
  log_->appendPlainText(line);
  if (batch_) {  // screenshots and figures without a window: the log is what the caller reads
    std::printf("%s\n", qPrintable(line));
    std::fflush(stdout);
  }
}

void MainWindow::complain(const QString& title, const QString& message) {
  if (batch_) {  // no one to close a dialog: say it on stderr (the caller exits)
    std::fprintf(stderr, "%s: %s\n", qPrintable(title), qPrintable(message));
    return;
  }
  QMessageBox::warning(this, title, message);
}

void MainWindow::openPath(const QString& path) {
  if (path.endsWith(QLatin1String(".trace"), Qt::CaseInsensitive)) openTrace(path);
  else runText(path);
}

void MainWindow::openTrace(const QString& path) {
  if (running_) { QMessageBox::information(this, tr("Busy"), tr("A run is in progress: cancel it first.")); return; }
  running_ = true;
  progress_->setVisible(true);
  progress_->setRange(0, 0);
  progress_->setFormat(tr("loading trace"));
  appendLog(tr("loading %1").arg(path));
  auto* watcher = new QFutureWatcher<std::shared_ptr<const Trace>>(this);
  auto error = std::make_shared<QString>();
  connect(watcher, &QFutureWatcher<std::shared_ptr<const Trace>>::finished, this, [this, watcher, error, path] {
    running_ = false;
    progress_->setVisible(false);
    auto trace = watcher->result();
    watcher->deleteLater();
    if (!trace) {
      appendLog(tr("error: %1").arg(*error));
      complain(tr("Open trace"), *error);
      Q_EMIT runFailed(*error);
      return;
    }
    current_text_ = locateTraceBook(trace->run_info, path);
    missing_book_.clear();
    if (current_text_.isEmpty() && trace->run_info.is_object() && trace->run_info.contains("source_file") &&
        trace->run_info.at("source_file").is_string()) {
      missing_book_ = QString::fromStdString(trace->run_info.at("source_file").as_string());
      appendLog(tr("the book of this trace, %1, is not where it was, beside the trace or among the samples: "
                   "a re-run will ask where it is").arg(missing_book_));
    }
    document_->setTrace(trace, path);
    // A trace opens where the pools are already full (the first tokens show them empty).
    if (document_->position() == 0) document_->setPosition(std::min<int64_t>(trace->length() - 1, 2000));
    setWindowTitle(tr("%1 - MemMamba Explorer").arg(QFileInfo(path).fileName()));
    addRecent(path);
    // How the run was made (device, precision): a bf16 trace's figures differ slightly from fp32's.
    const Json& info = trace->run_info;
    auto text_of = [&](const char* key) {
      return info.is_object() && info.contains(key) && info.at(key).is_string() ? QString::fromStdString(info.at(key).as_string()) : QString();
    };
    const QString device = text_of("device"), precision = text_of("precision");
    const QString made = device.isEmpty() ? QString() : QStringLiteral(", %1, %2").arg(device, precision.isEmpty() ? QStringLiteral("fp32") : precision);
    appendLog(tr("opened %1: %L2 tokens, %3 layers%4").arg(path).arg(trace->length()).arg(trace->layers.size()).arg(made));
    Q_EMIT traceLoaded();
  });
  watcher->setFuture(QtConcurrent::run([path, error]() -> std::shared_ptr<const Trace> {
    try {
      return std::make_shared<Trace>(Trace::load(path.toStdString()));
    } catch (const std::exception& e) {
      *error = QString::fromStdString(e.what());
      return nullptr;
    }
  }));
}

RunRequest MainWindow::textRequest(const QString& path) const {
  RunRequest r;
  r.kind = RunRequest::Kind::Text;
  r.text_path = path;
  r.label = QFileInfo(path).fileName();
  r.book = book_options_;
  // Re-running the loaded trace's book reads it as the trace did (encoding, boilerplate,
  // Markdown), so that the same tokens come back.
  const Trace* current = document_->trace();
  if (current && path == current_text_ && current->run_info.is_object() && current->run_info.contains("book"))
    r.book = BookOptions::from_record(current->run_info.at("book"));
  return r;
}

void MainWindow::runText(const QString& path) { startRun(textRequest(path)); }

void MainWindow::runPasskey(qint64 length, double depth, const QString& key, quint64 seed) {
  RunRequest r;
  r.kind = RunRequest::Kind::Passkey;
  r.text_path = current_text_;
  r.length = length;
  r.depth = depth;
  r.key = key;
  r.seed = seed;
  r.label = tr("passkey %1 tokens, depth %2").arg(length).arg(depth);
  startRun(r);
}

QString MainWindow::loadGrid(const QString& path) { return readGridInto(path, false); }

QString MainWindow::loadComparisonGrid(const QString& path) { return readGridInto(path, true); }

QString MainWindow::readGridInto(const QString& path, bool comparison) {
  try {
    Json results;
    eval::PasskeyGrid grid = eval::load_passkey_grid(path.toStdString(), &results);
    if (comparison) document_->setComparisonGrid(std::move(results), std::move(grid), path);
    else document_->setGrid(std::move(results), std::move(grid), path);
    return {};
  } catch (const std::exception& e) {
    return QString::fromStdString(e.what());
  }
}

void MainWindow::showGrid() {
  for (QDockWidget* d : findChildren<QDockWidget*>())
    if (d->objectName() == QLatin1String("retrieval")) {
      d->show();
      d->raise();
    }
}

void MainWindow::runGridCase(qint64 length, double depth, const QString& key, quint64 seed) {
  if (!caseGoesHere(length, depth)) return;
  RunRequest r;
  r.kind = RunRequest::Kind::Passkey;
  r.text_path = current_text_;
  r.checkpoint = checkpoint_;
  r.length = length;
  r.depth = depth;
  r.key = key;
  r.seed = seed;
  for (const QString& note : applyGridRun(document_->gridResults(), r, document_->gridSource())) appendLog(tr("warning: %1").arg(note));
  r.label = tr("passkey %1 tokens, depth %2 (as in the grid: tau1 %3, tau2 %4, gain %5%6)")
                .arg(length)
                .arg(depth)
                .arg(r.tau_note)
                .arg(r.tau_retrieve)
                .arg(r.fusion_gain)
                .arg(r.filler_haystack ? tr(", filler") : QString());
  startRun(r);
}

void MainWindow::startRun(RunRequest request) {
  if (running_) {
    QMessageBox::information(this, tr("Busy"), tr("A run is in progress: cancel it first."));
    return;
  }
  if (!request.own_checkpoint) request.checkpoint = checkpoint_;
  request.tokenizer = tokenizer_;
  request.cuda = cuda_;
  request.cpu_bf16 = cpu_bf16_ && !cuda_;
  running_ = true;
  progress_->setVisible(true);
  progress_->setRange(0, 0);
  cancel_->setVisible(true);
  appendLog(tr("running %1 on the %2").arg(request.label, cuda_ ? tr("GPU") : request.cpu_bf16 ? tr("CPU, bf16 products") : tr("CPU")));
  Q_EMIT runRequested(request);
}

void MainWindow::cancelRun() {
  if (running_) worker_->cancel();
}

void MainWindow::onRunFinished(const RunResult& result) {
  running_ = false;
  progress_->setVisible(false);
  cancel_->setVisible(false);
  speed_label_->setText(tr("%L1 tokens in %2 s").arg(result.trace->length()).arg(result.seconds, 0, 'f', 1));
  appendLog(tr("done: %1, %L2 tokens in %3 s (%4)").arg(result.request.label).arg(result.trace->length())
                .arg(result.seconds, 0, 'f', 1).arg(result.model_description));
  if (!comparison_pending_.isEmpty()) {
    acceptComparison(result);
    return;
  }
  if (result.request.kind == RunRequest::Kind::Text) {
    current_text_ = result.request.text_path;
    addRecent(result.request.text_path);
  }
  last_request_ = result.request;
  if (result.request.kind == RunRequest::Kind::Passkey) {
    try {
      last_answer_ = QString::fromStdString(Json::parse(result.case_json.toStdString()).at("answer").as_string());
    } catch (const std::exception&) {
      last_answer_.clear();
    }
  }
  const bool edited = result.request.edits.is_array() && !result.request.edits.as_array().empty();
  if (!edited) unedited_.reset();
  const qint64 keep = document_->position();
  document_->setTrace(result.trace, result.request.label);
  if (edited && unedited_) {
    document_->setComparison(unedited_, tr("before the edits"));
    reportEditEffect(result);
  }
  setWindowTitle(tr("%1 - MemMamba Explorer").arg(result.request.label));
  if (result.request.kind == RunRequest::Kind::Passkey) {
    document_->setPosition(result.trace->length() - 1);  // the answer token
    try {
      // Which model answered: the case reads differently with the memory off.
      const Json& config = result.trace->config;
      const bool has_memory = config.is_object() && config.contains("memory") && config.at("memory").is_bool() &&
                              config.at("memory").as_bool();
      const QString model = result.request.decimate ? tr("DeciMamba (memory off, tokens dropped between layers)")
                            : has_memory && result.request.memory ? tr("MemMamba (memory on)")
                            : has_memory ? tr("Mamba-only: this MemMamba with its memory switched off")
                                         : tr("Mamba-only (a model without memory)");
      retrieval_->showCase(Json::parse(result.case_json.toStdString()), tr("<p>Model: <b>%1</b></p>").arg(model));
    } catch (const std::exception&) {
    }
  } else {
    document_->setPosition(keep);
  }
  Q_EMIT traceLoaded();
}

void MainWindow::onRunFailed(const QString& message, bool cancelled) {
  running_ = false;
  comparison_pending_.clear();
  comparison_queue_.clear();  // the comparisons after a failed or cancelled one do not start
  progress_->setVisible(false);
  cancel_->setVisible(false);
  speed_label_->setText(cancelled ? tr("cancelled") : tr("failed"));
  appendLog(cancelled ? tr("run cancelled") : tr("error: %1").arg(message));
  if (!cancelled) complain(tr("Run failed"), message);
  Q_EMIT runFailed(message);
}

bool MainWindow::ensureCurrentText(const QString& title, const QString& message) {
  if (!current_text_.isEmpty()) return true;
  if (missing_book_.isEmpty() || batch_) {
    complain(title, missing_book_.isEmpty() ? message : tr("The book of this trace, %1, was not found.").arg(missing_book_));
    return false;
  }
  // The trace names a book that moved: ask where it is now.
  const QString name = QFileInfo(missing_book_).fileName();
  const QString found = QFileDialog::getOpenFileName(this, tr("Locate %1").arg(name), QString(),
                                                     tr("%1;;Text (*.txt);;All files (*)").arg(name));
  if (found.isEmpty()) return false;
  current_text_ = found;
  missing_book_.clear();
  appendLog(tr("the book of this trace is now %1").arg(found));
  return true;
}

void MainWindow::chooseModel() {
  QDialog dialog(this);
  dialog.setWindowTitle(tr("Model, tokenizer and device"));
  auto* form = new QFormLayout(&dialog);
  auto* checkpoint = new QLineEdit(checkpoint_, &dialog);
  checkpoint->setPlaceholderText(tr("bundled model (memmamba-small)"));
  auto* tokenizer = new QLineEdit(tokenizer_, &dialog);
  tokenizer->setPlaceholderText(tr("bundled tokenizer"));
  // Browsing starts beside the chosen file, else among the bundled models.
  const QString bundled = QFileInfo(QString::fromStdString(memmamba::find_sample_file("memmamba-small.safetensors"))).absolutePath();
  auto browse = [&dialog, bundled](QLineEdit* edit, const QString& filter) {
    auto* b = new QPushButton(QObject::tr("Browse..."), &dialog);
    QObject::connect(b, &QPushButton::clicked, &dialog, [edit, filter, bundled, &dialog] {
      const QString start = edit->text().isEmpty() ? bundled : QFileInfo(edit->text()).absolutePath();
      const QString p = QFileDialog::getOpenFileName(&dialog, QString(), start, filter);
      if (!p.isEmpty()) edit->setText(p);
    });
    return b;
  };
  auto row = [&](QLineEdit* e, const QString& filter) {
    auto* w = new QWidget(&dialog);
    auto* l = new QHBoxLayout(w);
    l->setContentsMargins(0, 0, 0, 0);
    l->addWidget(e, 1);
    l->addWidget(browse(e, filter));
    return w;
  };
  form->addRow(tr("Checkpoint"), row(checkpoint, tr("Checkpoints (*.safetensors)")));
  form->addRow(tr("Tokenizer"), row(tokenizer, tr("SentencePiece models (*.model)")));
  auto* device = new QComboBox(&dialog);
  device->addItem(tr("CPU"));
  // Faster where the CPU has AMX or AVX-512 BF16; the trace's figures move slightly.
  device->addItem(tr("CPU, bf16 matrix products"));
  if (cuda_available()) device->addItem(tr("CUDA GPU"));
  device->setCurrentIndex(cuda_ && cuda_available() ? 2 : cpu_bf16_ ? 1 : 0);
  form->addRow(tr("Device"), device);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, &dialog);
  form->addRow(buttons);
  connect(buttons, &QDialogButtonBox::accepted, &dialog, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, &dialog, &QDialog::reject);
  if (dialog.exec() != QDialog::Accepted) return;
  for (const auto& [edit, what] : {std::pair{checkpoint, tr("checkpoint")}, std::pair{tokenizer, tr("tokenizer")}}) {
    if (!edit->text().isEmpty() && !QFileInfo(edit->text()).isFile()) {
      QMessageBox::warning(this, tr("Model"), tr("The %1 %2 is not a readable file.").arg(what, edit->text()));
      return;
    }
  }
  cpu_bf16_ = device->currentIndex() == 1;
  setModelChoice(checkpoint->text(), tokenizer->text(), device->currentIndex() == 2);
  QSettings s;
  s.setValue(QStringLiteral("model/checkpoint"), checkpoint_);
  s.setValue(QStringLiteral("model/tokenizer"), tokenizer_);
  s.setValue(QStringLiteral("model/cuda"), cuda_);
  s.setValue(QStringLiteral("model/cpu_bf16"), cpu_bf16_);
}

void MainWindow::addRecent(const QString& path) {
  QSettings s;
  QStringList recent = s.value(QStringLiteral("recent")).toStringList();
  const QString abs = QFileInfo(path).absoluteFilePath();
  recent.removeAll(abs);
  recent.prepend(abs);
  while (recent.size() > kMaxRecent) recent.removeLast();
  s.setValue(QStringLiteral("recent"), recent);
  rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
  recent_menu_->clear();
  const QStringList recent = QSettings().value(QStringLiteral("recent")).toStringList();
  for (const QString& p : recent) recent_menu_->addAction(p, this, [this, p] { openPath(p); });
  recent_menu_->setEnabled(!recent.isEmpty());
}

void MainWindow::saveTraceAs() {
  const Trace* t = document_->trace();
  if (!t) return;
  QString path = QFileDialog::getSaveFileName(this, tr("Save trace"), QString(), tr("Traces (*.trace)"));
  if (path.isEmpty()) return;
  if (!path.endsWith(QLatin1String(".trace"))) path += QStringLiteral(".trace");
  try {
    t->save(path.toStdString());  // written to a temporary name and renamed
    appendLog(tr("saved %1").arg(path));
  } catch (const std::exception& e) {
    QMessageBox::warning(this, tr("Save trace"), QString::fromStdString(e.what()));
  }
}

void MainWindow::closeEvent(QCloseEvent* event) {
  QSettings s;
  s.setValue(QStringLiteral("window/geometry"), saveGeometry());
  s.setValue(QStringLiteral("window/state"), saveState());
  worker_->cancel();
  event->accept();
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasUrls()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  const auto urls = event->mimeData()->urls();
  if (!urls.isEmpty() && urls.first().isLocalFile()) openPath(urls.first().toLocalFile());
}

}  // namespace memmamba::app
