// The Explorer's window and worker: runs that can be cancelled, grid cases run as the grid
// ran, the palette switch, traces that moved, books with chapters, re-runs, memory edits from
// the menus, corrupt settings, and a passkey case that explains itself.
// Torch headers first: Qt's keyword macros (kept on for qcustomplot.h) break them.
#include "model/eval/fidelity.h"
#include "model/eval/passkey.h"
#include "model/memmamba.h"
#include "model/runner.h"

#include <QDir>
#include <QFile>
#include <QPushButton>
#include <QSignalSpy>
#include <QPlainTextEdit>
#include <QDockWidget>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QToolButton>
#include <QMenu>
#include <QtTest/QtTest>
#include <QAbstractButton>
#include <QSettings>
#include <QTimer>
#include <QCheckBox>
#include <QMessageBox>

#include <QComboBox>
#include <QListWidget>
#include <QTableWidget>
#include <qcustomplot.h>

#include <memory>

#include "app/gui/main_window.h"
#include "app/gui/run_worker.h"
#include "model/book/extractors.h"
#include "model/sample_files.h"
#include "tests/test_helpers.h"
#include "views/attention_view.h"
#include "views/book_view.h"
#include "views/decay_view.h"
#include "views/loss_difference_view.h"
#include "views/plot_export.h"
#include "views/pool_view.h"
#include "views/retrieval_panel.h"
#include "views/timeline_bar.h"
#include "views/trace_document.h"
#include "views/trigger_view.h"

using namespace memmamba;

class TestApp : public QObject {
  Q_OBJECT
 private:
  std::shared_ptr<const Trace> trace_;
  int64_t T_ = 300;

  // Opens the test trace in a window as a user does, from a file; true once it has loaded.
  // Writes `bytes` to a new file at `path`; false where it cannot.
  static bool writeFile(const QString& path, const QByteArray& bytes) {
    QFile f(path);
    return f.open(QIODevice::WriteOnly) && f.write(bytes) == bytes.size();
  }

  bool openInWindow(app::MainWindow& window) {
    QSignalSpy loaded(&window, &app::MainWindow::traceLoaded);
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("t.trace"));
    trace_->save(path.toStdString());
    window.openTrace(path);
    return loaded.wait(20000);
  }

 private Q_SLOTS:
  void initTestCase() {
    ModelConfig c = testing::tiny_config();
    MemMambaModel model = MemMambaModel::random(c, 3);
    TraceRunRequest req;
    for (int64_t t = 0; t < T_; ++t) {
      const std::string word = "w" + std::to_string(t % 37) + " ";
      req.char_begin.push_back(static_cast<int64_t>(req.text.size()));
      req.text += word;
      req.char_end.push_back(static_cast<int64_t>(req.text.size()));
      req.tokens.push_back(static_cast<int32_t>((t * 13 + t / 7) % c.vocab_size));
    }
    req.options = model.default_options();
    req.options.retention_sources = {10};
    trace_ = std::make_shared<Trace>(trace_tokens(model, std::move(req)));
    QVERIFY(!trace_->notes.empty());
  }

  void gridCaseRunsAsTheGridRan() {
    const QString book = QStringLiteral(MEMMAMBA_SOURCE_DIR "/sample_data/The-Time-Machine_35.txt");
    Json settings = Json::object();
    settings["tau_note"] = 0.6;
    settings["tau_retrieve"] = -1.0;
    settings["fusion_gain"] = 2.5;
    settings["memory_enabled"] = false;
    Json meta = Json::object();
    meta["haystack"] = std::string("book");
    meta["book"] = book.toStdString();
    meta["checkpoint_hash"] = std::string("0000000000000000");
    Json grid = Json::object();
    grid["settings"] = settings;
    grid["meta"] = meta;
    app::RunRequest r;
    r.kind = app::RunRequest::Kind::Passkey;
    r.checkpoint = QStringLiteral(MEMMAMBA_SOURCE_DIR "/tests/fuzz/corpus/checkpoint/tiny.safetensors");
    QStringList notes = app::applyGridRun(grid, r);
    QVERIFY(r.override_thresholds);
    QCOMPARE(r.tau_note, 0.6);
    QCOMPARE(r.tau_retrieve, -1.0);
    QCOMPARE(r.fusion_gain, 2.5);
    QVERIFY(!r.memory);
    QVERIFY(!r.filler_haystack);
    QCOMPARE(r.text_path, book);
    QCOMPARE(notes.size(), 1);  // another checkpoint's hash
    QVERIFY2(notes[0].contains(QStringLiteral("another checkpoint")), qPrintable(notes[0]));
    // A grid from before the gain ran at gain 1; a filler grid runs on the filler; a book that
    // is not here is said, and the case keeps the book it had.
    grid["settings"] = Json::object();
    grid["meta"]["haystack"] = std::string("filler");
    grid["meta"]["checkpoint_hash"] = Json();
    app::RunRequest f;
    f.text_path = QStringLiteral("current.txt");
    QVERIFY(app::applyGridRun(grid, f).isEmpty());
    QCOMPARE(f.fusion_gain, 1.0);
    QVERIFY(f.filler_haystack);
    QCOMPARE(f.text_path, QStringLiteral("current.txt"));
    grid["meta"]["haystack"] = std::string("book");
    grid["meta"]["book"] = std::string("/nowhere/book.txt");
    app::RunRequest m;
    notes = app::applyGridRun(grid, m);
    QCOMPARE(notes.size(), 1);
    QVERIFY(notes[0].contains(QStringLiteral("/nowhere/book.txt")));
    QVERIFY(!m.filler_haystack && m.text_path.isEmpty());
    QVERIFY(app::applyGridRun(Json(), m).isEmpty());  // no grid loaded: nothing changes
    // A relative path from where the evaluation ran: found among the samples by name, and said.
    grid["meta"]["book"] = std::string("elsewhere/The-Time-Machine_35.txt");
    app::RunRequest moved;
    notes = app::applyGridRun(grid, moved, QStringLiteral("/tmp/grids/g.json"));
    QCOMPARE(moved.text_path, QString::fromStdString(find_sample_file("The-Time-Machine_35.txt")));
    QCOMPARE(notes.size(), 1);
    QVERIFY2(notes[0].contains(QStringLiteral("is read from")), qPrintable(notes[0]));
    QCOMPARE(f.spec.key_digits_min, int64_t{0});          // a grid without case settings: the legacy cases
    // A facts grid's cases are rebuilt as the grid made them; unreadable case settings are said.
    eval::CaseSpec facts;
    facts.facts = 4;
    facts.key_kind = eval::KeyKind::Name;
    facts.wordings = eval::parse_wordings("held-out", true);
    grid["settings"]["case"] = facts.to_json();
    grid["meta"]["book"] = Json();
    app::RunRequest c;
    QVERIFY(app::applyGridRun(grid, c).isEmpty());
    QCOMPARE(c.spec.to_json().dump(), facts.to_json().dump());
    grid["settings"]["case"]["facts"] = int64_t{0};
    app::RunRequest bad;
    notes = app::applyGridRun(grid, bad);
    QCOMPARE(notes.size(), 1);
    QVERIFY2(notes[0].contains(QStringLiteral("case settings")), qPrintable(notes[0]));
    QCOMPARE(bad.spec.facts, int64_t{1});
  }

  void runCanBeCancelled() {
    app::RunWorker worker;
    app::RunRequest request;
    request.kind = app::RunRequest::Kind::Text;
    request.text_path = QStringLiteral(MEMMAMBA_SOURCE_DIR "/sample_data/The-Time-Machine_35.txt");
    request.tokenizer = QStringLiteral(MEMMAMBA_SOURCE_DIR "/sample_data/tokenizer.model");
    QSignalSpy failed(&worker, &app::RunWorker::failed);
    QSignalSpy finished(&worker, &app::RunWorker::finished);
    connect(&worker, &app::RunWorker::progress, &worker, [&worker](qint64 done, qint64, double, const QString&) {
      if (done > 0) worker.cancel();
    });
    worker.run(request);
    QCOMPARE(finished.count(), 0);
    QCOMPARE(failed.count(), 1);
    QCOMPARE(failed.at(0).at(1).toBool(), true);
    // A bad text file fails with a message, not a crash.
    request.text_path = QStringLiteral("/nonexistent/book.txt");
    worker.run(request);
    QCOMPARE(failed.count(), 2);
    QCOMPARE(failed.at(1).at(1).toBool(), false);
    QVERIFY(failed.at(1).at(0).toString().contains(QStringLiteral("book.txt")));
  }

  void paletteSwitchesWithEveryViewAlive() {
    // View > Dark palette with a trace loaded crashed the app (the pool view rebuilds its
    // layout, deleting the legend the switch then painted). Both ways, several times, and a
    // layer change after it: every visible axis of every plot takes the palette's text colour.
    QStandardPaths::setTestModeEnabled(true);
    app::MainWindow window;
    window.setBatchMode(true);
    window.show();
    QVERIFY(openInWindow(window));
    // The log says how the trace was made (a bf16 trace's figures differ slightly from fp32's).
    QVERIFY(window.findChild<QDockWidget*>(QStringLiteral("log"))->findChild<QPlainTextEdit*>()->toPlainText().contains(QStringLiteral("layers, cpu, fp32")));
    auto axes_follow = [&](const QColor& fg) {
      int checked = 0;
      for (QCustomPlot* plot : window.findChildren<QCustomPlot*>()) {
        for (QCPAxisRect* rect : plot->axisRects())
          for (QCPAxis* a : rect->axes()) {
            if (!a->visible()) continue;
            if (a->tickLabelColor() != fg) return -1;
            ++checked;
          }
        for (QCPLayoutElement* e : plot->plotLayout()->elements(true))
          if (auto* scale = qobject_cast<QCPColorScale*>(e)) {
            if (scale->axis()->labelColor() != fg) return -1;
            ++checked;
          }
      }
      return checked;
    };
    for (bool dark : {true, false, true, true, false, true}) {
      window.setDarkPalette(dark);
      QCoreApplication::processEvents();
      const QColor fg = QApplication::palette().color(QPalette::WindowText);
      QCOMPARE(fg == QColor(230, 230, 230), dark);
      QVERIFY(axes_follow(fg) > 10);
      // The book's text too (it was laid out in the old colours: dark on dark).
      QTextDocument* book = window.findChild<views::BookView*>()->findChild<QTextBrowser*>()->document();
      QTextCursor middle(book);
      middle.setPosition(book->characterCount() / 2);
      QCOMPARE(middle.charFormat().foreground().color(), QApplication::palette().color(QPalette::Text));
      window.document()->setLayer(dark ? 1 : 0);  // the pool view rebuilds its map
      QCoreApplication::processEvents();
      QVERIFY(axes_follow(fg) > 10);
    }
    window.setDarkPalette(false);
  }

  // A grid's case with a book loaded: the window asks before replacing the book. Cancel keeps
  // the book; "Here" (remembered) runs the case in this window; a new window gets the grid's
  // cell with this window's model, tokenizer and device.
  void aGridCaseAsksBeforeReplacingTheBook() {
    QStandardPaths::setTestModeEnabled(true);
    QSettings().remove(QStringLiteral("grid/case_window"));
    QTemporaryDir dir;
    const QString book = dir.filePath(QStringLiteral("book.txt"));
    {
      QFile f(book);
      QVERIFY(f.open(QIODevice::WriteOnly));
      for (int i = 0; i < 40; ++i) f.write("The rain fell on the town all day, and nobody went out. ");
    }
    const QString grid = dir.filePath(QStringLiteral("grid.json"));
    {
      QFile f(grid);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write(R"({"cells": [{"length": 300, "depth": 0.5, "accuracy": 1.0}], "cases": []})");
    }
    app::MainWindow window;
    window.show();
    QSignalSpy loaded(&window, &app::MainWindow::traceLoaded);
    window.openPath(book);
    QVERIFY(loaded.wait(60000));
    QCOMPARE(window.loadGrid(grid), QString());
    const QStringList args = window.caseWindowArguments(300, 0.5);
    QCOMPARE(args.mid(0, 4), (QStringList{QStringLiteral("--grid"), grid, QStringLiteral("--case"), QStringLiteral("300,0.5")}));
    QVERIFY(args.contains(QStringLiteral("--device")));
    int asked = 0;
    auto answer = [&asked](const QString& button, bool remember) {
      QTimer::singleShot(200, [&asked, button, remember] {
        auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
        if (!box) return;
        ++asked;
        if (remember && box->checkBox()) box->checkBox()->setChecked(true);
        for (QAbstractButton* b : box->buttons())
          if (b->text() == button || (button == QLatin1String("Cancel") && box->buttonRole(b) == QMessageBox::RejectRole)) b->click();
      });
    };
    const std::string book_text = window.document()->trace()->text;
    answer(QStringLiteral("Cancel"), false);
    window.runGridCase(300, 0.5, QString(), 0);
    QCOMPARE(asked, 1);
    QVERIFY(!loaded.wait(1500));  // nothing ran: the book stays
    QCOMPARE(window.document()->trace()->text, book_text);
    answer(QStringLiteral("Here"), true);
    window.runGridCase(300, 0.5, QString(), 0);
    QVERIFY(loaded.wait(60000));
    QCOMPARE(asked, 2);
    QVERIFY(window.document()->trace()->text != book_text);  // the case replaced it
    QCOMPARE(QSettings().value(QStringLiteral("grid/case_window")).toString(), QStringLiteral("here"));
    QSettings().remove(QStringLiteral("grid/case_window"));
  }

  void timelineTooltipsNameTheRealKeys() {
    // The tooltips promised Left/Right while only Alt+Left/Right stepped: they now name the
    // keys the window's actions have.
    QStandardPaths::setTestModeEnabled(true);
    app::MainWindow window;
    window.setBatchMode(true);
    auto* timeline = window.findChild<views::TimelineBar*>();
    QVERIFY(timeline);
    QStringList tips;
    for (QToolButton* b : timeline->findChildren<QToolButton*>()) tips << b->toolTip();
    int named = 0;
    for (QAction* a : window.findChildren<QAction*>()) {
      const QString text = a->text().remove(QLatin1Char('&'));
      if (text != QStringLiteral("Step forward") && text != QStringLiteral("Step back") && text != QStringLiteral("Play / pause"))
        continue;
      const QString keys = a->shortcut().toString(QKeySequence::NativeText);
      QVERIFY(!keys.isEmpty());
      QVERIFY2(tips.contains(text + QStringLiteral(" (") + keys + QStringLiteral(")")), qPrintable(tips.join(QLatin1Char('|'))));
      ++named;
    }
    QCOMPARE(named, 3);
  }

  void shortcutsHelpListsEveryShortcut() {
    QStandardPaths::setTestModeEnabled(true);
    app::MainWindow window;
    window.setBatchMode(true);
    const QString help = window.shortcutsHelp();
    int listed = 0;
    for (QAction* a : window.findChildren<QAction*>()) {
      if (a->shortcut().isEmpty() || a->menu()) continue;
      bool in_menu = false;  // actions of the menus (the timeline's buttons share their keys)
      for (QObject* o : a->associatedObjects()) in_menu |= qobject_cast<QMenu*>(o) != nullptr;
      if (!in_menu) continue;
      const QString keys = a->shortcut().toString(QKeySequence::NativeText).toHtmlEscaped();
      QVERIFY2(help.contains(QStringLiteral("<b>%1</b>").arg(keys)), qPrintable(keys));
      QVERIFY2(help.contains(a->text().remove(QLatin1Char('&')).toHtmlEscaped()), qPrintable(a->text()));
      ++listed;
    }
    QVERIFY(listed >= 12);
    QVERIFY(help.contains(QStringLiteral("Next note")));
  }

  void notesAreReachedOneAfterAnother() {
    QStandardPaths::setTestModeEnabled(true);
    // The book's first 30,000 bytes (about 7,600 tokens, 11 notes in layer 0 with the bundled
    // model): the whole book took minutes under the sanitizers.
    QFile book(QStringLiteral(MEMMAMBA_SOURCE_DIR "/sample_data/Alice-s-Adventures-in-Wonderland_11.txt"));
    QVERIFY(book.open(QIODevice::ReadOnly));
    QTemporaryDir dir;
    const QString excerpt = dir.filePath(QStringLiteral("alice-opening.txt"));
    QVERIFY(writeFile(excerpt, book.read(30000)));
    app::MainWindow window;
    window.setBatchMode(true);
    QSignalSpy loaded(&window, &app::MainWindow::traceLoaded);
    window.setModelChoice(QString(), QStringLiteral(MEMMAMBA_SOURCE_DIR "/sample_data/tokenizer.model"), false);
    window.runText(excerpt);
    QVERIFY(loaded.wait(120000));
    views::TraceDocument* doc = window.document();
    QAction* next = nullptr;
    QAction* previous = nullptr;
    for (QAction* a : window.findChildren<QAction*>()) {
      if (a->text().remove(QLatin1Char('&')) == QStringLiteral("Next note")) next = a;
      if (a->text().remove(QLatin1Char('&')) == QStringLiteral("Previous note")) previous = a;
    }
    QVERIFY(next && previous);
    doc->setLayer(0);
    doc->setPosition(0);
    std::vector<int64_t> visited;
    for (int i = 0; i < 4; ++i) {
      next->trigger();
      visited.push_back(doc->position());
    }
    for (size_t i = 0; i < visited.size(); ++i) {
      QVERIFY(doc->trace()->layers[0].flags[visited[i]] & kNoted);
      if (i > 0) QVERIFY(visited[i] > visited[i - 1]);
      // Nothing noted between two stops.
      for (int64_t t = (i == 0 ? 1 : visited[i - 1] + 1); t < visited[i]; ++t) QVERIFY(!(doc->trace()->layers[0].flags[t] & kNoted));
    }
    previous->trigger();
    QCOMPARE(doc->position(), visited[2]);
  }

  // The comparison runs the bundled Mamba-small twin (trained on the same rows) by default, or
  // the current model with its memory switched off.
  void comparisonsRunTheTwinOrTheMemoryOff() {
    QStandardPaths::setTestModeEnabled(true);
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("t.txt"));
    QVERIFY(writeFile(path, QByteArray("The keeper of the lighthouse wrote 48213 in his log and went to sleep. ").repeated(30)));
    app::MainWindow window;
    window.setBatchMode(true);
    QSignalSpy loaded(&window, &app::MainWindow::traceLoaded);
    window.openPath(path);
    QVERIFY(loaded.wait(60000));
    QAction* compare = nullptr;
    QAction* twin = nullptr;
    for (QAction* a : window.findChildren<QAction*>()) {
      const QString text = a->text().remove(QLatin1Char('&'));
      if (text == QStringLiteral("Add a Mamba-only comparison")) compare = a;
      if (text.startsWith(QStringLiteral("Comparisons run the bundled Mamba-small twin"))) twin = a;
    }
    QVERIFY(compare && twin);
    views::TraceDocument* doc = window.document();
    QSignalSpy compared(doc, &views::TraceDocument::comparisonChanged);  // a comparison lands beside the trace
    auto memory_of = [](const Trace* t) { return t->config.at("memory").as_bool(); };
    twin->setChecked(true);
    compare->trigger();
    QVERIFY(compared.wait(60000));
    QCOMPARE(doc->comparisonLabel(), QStringLiteral("Mamba-small"));
    QVERIFY(!memory_of(doc->comparison()));  // another model: no memory at all
    QVERIFY(memory_of(doc->trace()));
    QCOMPARE(doc->comparison()->length(), doc->trace()->length());
    twin->setChecked(false);
    compare->trigger();
    QVERIFY(compared.wait(60000));
    QCOMPARE(doc->comparisonLabel(), QStringLiteral("Mamba-only"));
    QVERIFY(memory_of(doc->comparison()));  // the same MemMamba, its memory switched off at run time
    twin->setChecked(true);
  }

  // The teaching demo's three ways on one text: this run's notes, Mamba-small forgetting and
  // DeciMamba dropping tokens, drawn together (book, raster, loss, decay) by one action.
  void threeWaysSideBySide() {
    QStandardPaths::setTestModeEnabled(true);
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("long.txt"));
    QByteArray text;
    // Past DeciMamba's first L_base (2,000 tokens), so that it drops some.
    for (int i = 0; i < 260; ++i) text += QStringLiteral("Sentence %1: the keeper of the lighthouse wrote a number in his log. ").arg(i).toUtf8();
    QVERIFY(writeFile(path, text));
    app::MainWindow window;
    window.setBatchMode(true);
    QSignalSpy loaded(&window, &app::MainWindow::traceLoaded);
    window.openPath(path);
    QVERIFY(loaded.wait(120000));
    QAction* three = nullptr;
    for (QAction* a : window.findChildren<QAction*>())
      if (a->text().remove(QLatin1Char('&')).startsWith(QStringLiteral("Compare all three"))) three = a;
    QVERIFY(three);
    QSignalSpy finished(&window, &app::MainWindow::comparisonsFinished);
    views::TraceDocument* doc = window.document();
    for (int round = 0; round < 2; ++round) {  // a second round replaces the first's pair
      three->trigger();
      QVERIFY(finished.wait(240000));
      QCOMPARE(doc->comparisons().size(), size_t{2});
    }
    QCOMPARE(doc->comparisons()[0].label, QStringLiteral("Mamba-small"));
    QCOMPARE(doc->comparisons()[1].label, QStringLiteral("DeciMamba on Mamba-small"));
    for (const auto& c : doc->comparisons()) QCOMPARE(c.trace->tokens, doc->trace()->tokens);
    const views::TraceDocument::Comparison* decimated = doc->decimatedComparison();
    QVERIFY(decimated && decimated->label == QStringLiteral("DeciMamba on Mamba-small"));
    // The raster gains a row of the tokens DeciMamba kept, its CSV the counts per layer.
    auto* triggers = window.findChild<views::TriggerView*>();
    QCOMPARE(triggers->keptRowLabel(), decimated->label);
    QCOMPARE(triggers->rasterRows(), doc->layers() + 1);
    const QString raster = triggers->csv(QStringLiteral("trigger-raster"), views::CsvDetail::Full);
    QVERIFY(raster.startsWith(QStringLiteral("layer,token,noted,triggered,importance,istate,kept_by_comparison\n")));
    const int64_t T = doc->length();
    int64_t kept_last = 0;
    for (const QString& line : raster.split(QLatin1Char('\n')))
      if (line.startsWith(QStringLiteral("%1,").arg(doc->layers() - 1))) kept_last += line.section(QLatin1Char(','), 6, 6).toLongLong();
    int64_t kept_truth = 0;
    for (int64_t i = 0; i < T; ++i) kept_truth += (decimated->trace->layers[doc->layers() - 1].flags[i] & kDecimated) == 0;
    QCOMPARE(kept_last, kept_truth);
    QVERIFY(kept_truth > 0 && kept_truth < T);
    // The book strikes out what DeciMamba dropped, beside this run's notes, at the last layer.
    doc->setLayer(doc->layers() - 1);
    doc->setPosition(T - 1);
    QString status;
    for (QLabel* l : window.findChild<views::BookView*>()->findChildren<QLabel*>()) status += l->text();
    QVERIFY2(status.contains(QStringLiteral("dropped by DeciMamba on Mamba-small")), qPrintable(status));
    // The loss view draws the difference to each of the two; its CSV names them.
    auto* loss = window.findChild<views::LossDifferenceView*>();
    QVERIFY(loss->csv(QStringLiteral("loss-difference"), views::CsvDetail::Figure)
                .contains(QStringLiteral("_tokens_minus_decimamba_on_mamba_small\",")));
    QVERIFY(loss->csv(QStringLiteral("loss-difference"), views::CsvDetail::Full).startsWith(
        QStringLiteral("token,loss,comparison_loss,difference,comparison_2_loss\n")));
  }

  void passkeyCaseSaysWhichModelAnswered() {
    QStandardPaths::setTestModeEnabled(true);
    app::MainWindow window;
    window.setBatchMode(true);
    QSignalSpy loaded(&window, &app::MainWindow::traceLoaded);
    window.setModelChoice(QStringLiteral(MEMMAMBA_SOURCE_DIR "/sample_data/mamba-small.safetensors"),
                          QStringLiteral(MEMMAMBA_SOURCE_DIR "/sample_data/tokenizer.model"), false);
    window.runPasskey(400, 0.5, QString(), 1);
    QVERIFY(loaded.wait(120000));
    QString html;
    for (QTextBrowser* b : window.retrievalPanel()->findChildren<QTextBrowser*>()) html += b->toPlainText();
    QVERIFY2(html.contains(QStringLiteral("Mamba-only (a model without memory)")), qPrintable(html.left(400)));
  }

  void aMovedTraceFindsItsBook() {
    // A trace that recorded its book by a relative path could not be re-run from another
    // folder. The book is looked for where it was, relative to the trace, beside it, and
    // among the bundled samples.
    QTemporaryDir dir;
    QDir(dir.path()).mkpath(QStringLiteral("traces"));
    QDir(dir.path()).mkpath(QStringLiteral("books"));
    auto write = [](const QString& path) {
      QFile f(path);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("a book\n");
    };
    const QString trace_path = dir.filePath(QStringLiteral("traces/t.trace"));
    const QString book = dir.filePath(QStringLiteral("books/b.txt"));
    write(book);
    auto info = [](const QString& file, const QString& relative) {
      Json j = Json::object();
      if (!file.isEmpty()) j["source_file"] = file.toStdString();
      if (!relative.isEmpty()) j["source_file_relative"] = relative.toStdString();
      return j;
    };
    const QString found = QFileInfo(book).absoluteFilePath();
    QCOMPARE(app::locateTraceBook(info(book, {}), trace_path), found);                                 // where it was
    QCOMPARE(app::locateTraceBook(info(QStringLiteral("/gone/b.txt"), QStringLiteral("../books/b.txt")), trace_path),
             found);                                                                                    // relative to the trace
    QCOMPARE(app::locateTraceBook(info(QStringLiteral("../books/b.txt"), {}), trace_path), found);     // an old relative path
    write(dir.filePath(QStringLiteral("traces/c.txt")));
    QCOMPARE(app::locateTraceBook(info(QStringLiteral("/gone/c.txt"), {}), trace_path),
             QFileInfo(dir.filePath(QStringLiteral("traces/c.txt"))).absoluteFilePath());             // beside the trace
    const QString sample = app::locateTraceBook(info(QStringLiteral("/gone/The-Time-Machine_35.txt"), {}), trace_path);
    QVERIFY2(sample.endsWith(QStringLiteral("sample_data/The-Time-Machine_35.txt")), qPrintable(sample));  // a bundled sample
    QVERIFY(app::locateTraceBook(info(QStringLiteral("/gone/nowhere.txt"), {}), trace_path).isEmpty());
    QVERIFY(app::locateTraceBook(Json::object(), trace_path).isEmpty());
  }

  void aBookOpensWithItsChapters() {
    // A Project Gutenberg HTML book, opened as a user opens a text: the licence pages are
    // skipped, the chapter list fills, picking a chapter moves to its first token, and the
    // trace records how the text was made.
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("book.html"));
    QVERIFY(writeFile(path, "<html><body><p>The Project Gutenberg eBook of Two Days</p>"
                            "<p>*** START OF THE PROJECT GUTENBERG EBOOK TWO DAYS ***</p>"
                            "<h2>CHAPTER I. Monday</h2><p>The rain fell on the town all day, and nobody went out.</p>"
                            "<h2>CHAPTER II. Tuesday</h2><p>The sun came back and the streets filled with people.</p>"
                            "<p>*** END OF THE PROJECT GUTENBERG EBOOK TWO DAYS ***</p><p>Licence.</p></body></html>"));
    // A build without libxml2 (the GPU machine's) says so in the failed run's message.
    if (!book_extractors::html_available()) QSKIP("this build reads no HTML (libxml2 absent)");
    app::MainWindow window;
    window.setBatchMode(true);  // a failed run fails the test instead of waiting on a dialog
    QSignalSpy loaded(&window, &app::MainWindow::traceLoaded);
    window.openPath(path);
    QVERIFY(loaded.wait(60000));
    const views::TraceDocument* doc = window.findChild<views::TraceDocument*>();
    QVERIFY(doc && doc->trace());
    QVERIFY(doc->trace()->text.find("Licence") == std::string::npos);
    QVERIFY(doc->trace()->text.rfind("CHAPTER I. Monday", 0) == 0);
    QCOMPARE(doc->chapters().size(), size_t{2});
    QComboBox* box = window.timeline()->chapterBox();
    QVERIFY(!box->isHidden());
    QCOMPARE(box->count(), 2);
    QCOMPARE(box->itemText(1), QStringLiteral("CHAPTER II. Tuesday"));
    const int64_t second = doc->chapters()[1].token;
    const std::string& text = doc->trace()->text;
    const size_t chapter_two = text.find("CHAPTER II");
    QVERIFY(doc->trace()->char_begin[second] <= static_cast<int64_t>(chapter_two));
    QVERIFY(doc->trace()->char_end[second] > static_cast<int64_t>(chapter_two));  // the token holding its first byte
    box->activated(1);
    QCOMPARE(doc->position(), second);
    QCOMPARE(box->currentIndex(), 1);
    const_cast<views::TraceDocument*>(doc)->setPosition(second - 1);
    QCOMPARE(box->currentIndex(), 0);
    const Json& book = doc->trace()->run_info.at("book");
    QCOMPARE(book.at("format").as_string(), std::string("html"));
    QVERIFY(book.at("boilerplate_removed").as_bool());
  }

  void aRerunReadsTheBookAsTheTraceDid() {
    // A trace made with the Gutenberg licence kept (--keep-boilerplate) is re-run from the
    // Explorer: the book is read the same way, so the same tokens come back.
    QTemporaryDir dir;
    const QString book = dir.filePath(QStringLiteral("g.txt"));
    {
      QFile f(book);
      QVERIFY(f.open(QIODevice::WriteOnly));
      f.write("The Project Gutenberg eBook of Rain\n\n*** START OF THE PROJECT GUTENBERG EBOOK RAIN ***\n\n"
              "It rained all day.\n\n*** END OF THE PROJECT GUTENBERG EBOOK RAIN ***\n\nGeneral Terms of Use.\n");
    }
    const QString trace_path = dir.filePath(QStringLiteral("g.trace"));
    QProcess cli;
    cli.start(QStringLiteral(MEMMAMBA_CLI), {QStringLiteral("run"), book, QStringLiteral("--out"), trace_path,
                                             QStringLiteral("--keep-boilerplate")});
    QVERIFY(cli.waitForFinished(120000));
    QCOMPARE(cli.exitCode(), 0);
    const Trace original = Trace::load(trace_path.toStdString());
    QVERIFY(original.text.find("General Terms") != std::string::npos);
    app::MainWindow window;
    QSignalSpy loaded(&window, &app::MainWindow::traceLoaded);
    window.openTrace(trace_path);
    QVERIFY(loaded.wait(20000));
    QAction* rerun = nullptr;
    for (QAction* a : window.findChildren<QAction*>())
      if (a->text() == QStringLiteral("&Re-run the current text")) rerun = a;
    QVERIFY(rerun);
    rerun->trigger();
    QVERIFY(loaded.wait(60000));
    const views::TraceDocument* doc = window.findChild<views::TraceDocument*>();
    QCOMPARE(doc->trace()->tokens, original.tokens);
    QVERIFY(doc->trace()->run_info.at("book").at("options").at("keep_boilerplate").as_bool());
  }

  void editsFromTheMenusRerunAndCompare() {
    // Pinning a note from the pool's menu re-runs with the edit, keeps the run before it as
    // the comparison and lists the edit; undoing it runs without edits again.
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("t.txt"));
    QVERIFY(writeFile(path, QByteArray("The key is 48213. Remember it, said the keeper of the lighthouse. ").repeated(40)));
    app::MainWindow window;
    QSignalSpy loaded(&window, &app::MainWindow::traceLoaded);
    window.openPath(path);
    QVERIFY(loaded.wait(60000));
    views::TraceDocument* doc = window.findChild<views::TraceDocument*>();
    const auto before = doc->sharedTrace();
    int64_t note = -1;
    for (const NoteInfo& n : before->notes)
      if (n.layer == 0) { note = n.local_id; break; }
    QVERIFY(note >= 0);
    auto* pool = window.findChild<views::PoolView*>();
    Q_EMIT pool->editRequested(QStringLiteral("pin"), 0, note, doc->position());
    QVERIFY(loaded.wait(60000));
    QVERIFY(doc->trace()->run_info.contains("memory_edits"));
    QCOMPARE(doc->trace()->run_info.at("memory_edits").as_array().size(), size_t{1});
    QCOMPARE(doc->comparison(), before.get());
    QCOMPARE(doc->comparisonLabel(), QStringLiteral("before the edits"));
    // The pool table shows each slot as it was before the edits beside it.
    auto* table = pool->findChild<QTableWidget*>();
    QVERIFY(table);
    QCOMPARE(table->columnCount(), 6);
    QCOMPARE(table->horizontalHeaderItem(5)->text(), QStringLiteral("before the edits"));
    doc->setPosition(0);
    QCOMPARE(table->item(0, 5)->text(), QStringLiteral("same"));  // an empty pool before the first note
    auto* list = window.findChild<QListWidget*>(QStringLiteral("edit-list"));
    QVERIFY(list);
    QCOMPARE(list->count(), 1);
    QVERIFY2(list->item(0)->text().startsWith(QStringLiteral("pin note")), qPrintable(list->item(0)->text()));
    window.removeEdit(0);
    QVERIFY(loaded.wait(60000));
    QVERIFY(!doc->trace()->run_info.contains("memory_edits"));
    QCOMPARE(list->count(), 0);
    QCOMPARE(doc->trace()->tokens, before->tokens);
    QCOMPARE(table->columnCount(), 5);  // no comparison: no column
  }

  void corruptSettingsLeaveTheAppUsable() {
    // Settings mangled by hand or by a crash: binary junk, a model path that is gone, values
    // of the wrong type. The window opens on defaults and still loads a trace.
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName(QStringLiteral("MemMambaTest"));
    QCoreApplication::setApplicationName(QStringLiteral("SettingsTest"));
    const QString ini = QSettings().fileName();
    QDir().mkpath(QFileInfo(ini).path());
    {
      QFile f(ini);
      QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
      f.write("\x00\xff\xfe garbage \x01\n[model]\ncheckpoint=/nonexistent/gone.safetensors\ntokenizer=@Variant(\x7f\x7f)\n"
              "cuda=maybe\n[window]\ngeometry=@ByteArray(not a geometry)\nstate=42\n[export]\nwidth=wide\nheight=-5\n"
              "scale=nan\n[view]\ndark=perhaps\nrecent=@Invalid()\n");
    }
    {
      app::MainWindow window;
      window.setBatchMode(true);
      window.show();
      QCOMPARE(window.checkpointChoice(), QString());  // the missing model is dropped
      QCOMPARE(window.tokenizerChoice(), QString());
      QVERIFY(openInWindow(window));
      QCOMPARE(window.document()->trace()->length(), trace_->length());
      // "Export all" cancelled part-way leaves only whole files, and the next one completes.
      QTemporaryDir out;
      const QString stopped = window.exportAll(out.filePath(QStringLiteral("a")), 400, 300, 1.0,
                                               [](int done, int) { return done < 5; });
      QVERIFY(stopped.contains(QStringLiteral("cancelled after 5")));
      const QStringList written = QDir(out.filePath(QStringLiteral("a"))).entryList(QDir::Files);
      QCOMPARE(written.size(), 5);
      for (const QString& f : written) QVERIFY(QFileInfo(QDir(out.filePath(QStringLiteral("a"))).filePath(f)).size() > 0);
      QCOMPARE(window.exportAll(out.filePath(QStringLiteral("b")), 400, 300, 1.0), QString());
      // Every figure with something drawn, in four forms; the empty ones (no grid, no
      // fidelity measured) are left out.
      int drawn = 0, empty = 0;
      for (QCustomPlot* plot : window.findChildren<QCustomPlot*>()) ++(views::figureIsEmpty(plot) ? empty : drawn);
      QVERIFY(drawn >= 4 && empty >= 1);
      QCOMPARE(drawn + empty, static_cast<int>(window.figureNames().size()));
      QCOMPARE(QDir(out.filePath(QStringLiteral("b"))).entryList(QDir::Files).size(), 4 * drawn);
    }
    QVERIFY(!QSettings().contains(QStringLiteral("model/checkpoint")));
    QFile::remove(ini);
  }

  void passkeyCaseRunsAndExplainsItself() {
    app::RunWorker worker;
    app::RunRequest request;
    request.kind = app::RunRequest::Kind::Passkey;
    request.text_path = QStringLiteral(MEMMAMBA_SOURCE_DIR "/sample_data/The-Time-Machine_35.txt");
    request.tokenizer = QStringLiteral(MEMMAMBA_SOURCE_DIR "/sample_data/tokenizer.model");
    request.length = 600;
    request.depth = 0.5;
    request.key = QStringLiteral("24680");
    QSignalSpy finished(&worker, &app::RunWorker::finished);
    QSignalSpy failed(&worker, &app::RunWorker::failed);
    worker.run(request);
    QCOMPARE(failed.count(), 0);
    QCOMPARE(finished.count(), 1);
    const auto result = finished.at(0).at(0).value<app::RunResult>();
    QVERIFY(std::abs(result.trace->length() - 600) <= 16);
    QVERIFY(result.trace->text.find("24680") != std::string::npos);  // the user's key is in the prompt
    const Json record = Json::parse(result.case_json.toStdString());
    QCOMPARE(record.at("key").as_string(), std::string("24680"));
    QVERIFY(record.at("key_token_positions").as_array().size() >= 5);  // digits are single tokens
    for (const Json& p : record.at("key_token_positions").as_array()) {
      const int64_t t = p.as_int();
      const std::string piece = result.trace->text.substr(result.trace->char_begin[t], result.trace->char_end[t] - result.trace->char_begin[t]);
      QVERIFY(piece.find_first_of("0123456789") != std::string::npos);
    }
    QCOMPARE(record.at("layers").as_array().size(), result.trace->layers.size());
    QCOMPARE(record.at("layers").as_array()[0].at("answer_reads").as_array().size(), record.at("answer_pieces").as_array().size());  // as a grid records it
    QCOMPARE(record.at("hit").as_bool(), eval::passkey_found(record.at("answer").as_string(), "24680"));
    QCOMPARE(record.at("digits_right").as_int(), eval::passkey_digits_right(record.at("answer").as_string(), "24680"));
    QVERIFY(!result.trace->run_info.contains("precision"));
    app::RunRequest bf16_request = request;  // Run > Model's "CPU, bf16 matrix products"
    bf16_request.cpu_bf16 = true;
    worker.run(bf16_request);
    QCOMPARE(finished.last().at(0).value<app::RunResult>().trace->run_info.at("precision").as_string(), std::string("bf16 matrix products"));
    finished.removeLast();
    // A case of four labelled facts (a grid of `eval facts`): the record lists them and the
    // asked one's value is the truth.
    app::RunRequest facts_request = request;
    facts_request.key.clear();
    facts_request.spec.facts = 4;
    facts_request.spec.wordings = eval::parse_wordings("trained", true);
    worker.run(facts_request);
    QCOMPARE(failed.count(), 0);
    const Json facts_record = Json::parse(finished.last().at(0).value<app::RunResult>().case_json.toStdString());
    QCOMPARE(facts_record.at("needles").as_array().size(), size_t(4));
    const int64_t asked = facts_record.at("asked").as_int();
    QCOMPARE(facts_record.at("needles").as_array()[static_cast<size_t>(asked)].at("value").as_string(),
             facts_record.at("key").as_string());
    finished.removeLast();  // the checks below count the runs without this one
    // The same case on the repeated filler (a grid of `--haystack filler`): no book sentence in it.
    app::RunRequest filler = request;
    filler.filler_haystack = true;
    worker.run(filler);
    QCOMPARE(failed.count(), 0);
    QCOMPARE(finished.count(), 2);
    const std::string filler_text = finished.at(1).at(0).value<app::RunResult>().trace->text;
    QVERIFY(filler_text.find("24680") != std::string::npos);
    QVERIFY(filler_text.find("The grass is green") != std::string::npos);
    QVERIFY(result.trace->text.find("The grass is green") == std::string::npos);
    // The same case as DeciMamba (memory off): past L_base (2,000) the last layer scans 2,000
    // tokens, and the record says whether the key survived; with the memory on it is refused.
    app::RunRequest deci = request;
    deci.length = 3000;
    deci.memory = false;
    deci.decimate = true;
    worker.run(deci);
    QCOMPARE(failed.count(), 0);
    QCOMPARE(finished.count(), 3);
    const auto deci_result = finished.at(2).at(0).value<app::RunResult>();
    const Json deci_record = Json::parse(deci_result.case_json.toStdString());
    QVERIFY(deci_record.contains("key_survived_decimation"));
    int64_t scanned = 0;
    for (uint8_t f : deci_result.trace->layers.back().flags) scanned += (f & kDecimated) == 0;
    QCOMPARE(scanned, int64_t{2000});
    QCOMPARE(deci_record.at("key_tokens_kept").as_int(),
             deci_record.at("layers").as_array().back().at("key_tokens_in_scan").as_int());
    deci.memory = true;
    worker.run(deci);
    QCOMPARE(failed.count(), 1);
    QVERIFY(failed.at(0).at(0).toString().contains(QStringLiteral("memory off")));
    // A near miss says how near it was.
    views::TraceDocument doc;
    views::RetrievalPanel panel(&doc);
    Json miss = record;
    miss["answer"] = std::string("24880 is the pass key");
    miss["hit"] = false;
    miss["digits_right"] = int64_t{4};
    panel.showCase(miss);
    QVERIFY(panel.findChild<QTextBrowser*>()->toPlainText().contains(QStringLiteral("Key characters in place: 4 of 5")));
    // What each answer token read: the model's reads are shown, and a read of the key's third
    // digit names that digit.
    Json read = Json::object();
    read["position"] = record.at("prompt_tokens").as_int();
    read["weight_on_key_notes"] = 0.93;
    read["top_key_source"] = record.at("key_token_positions").as_array()[2].as_int();
    read["top_key_weight"] = 0.9;
    read["key_digit"] = int64_t{2};
    Json faint = Json::object();  // (copies of a Json share their object, so a new one)
    faint["position"] = record.at("prompt_tokens").as_int() - 1;
    faint["weight_on_key_notes"] = 0.01;
    faint["top_key_source"] = record.at("key_token_positions").as_array()[0].as_int();
    faint["top_key_weight"] = 0.01;
    faint["key_digit"] = int64_t{0};
    Json reads = Json::array();
    reads.push_back(faint);
    reads.push_back(read);
    for (Json& layer : miss["layers"].mutable_array()) layer["answer_reads"] = Json::array();  // the model's own reads out
    miss["layers"].mutable_array()[0]["answer_reads"] = reads;
    Json pieces = Json::array();
    for (const char* p : {"\u2581", "2", "4"}) pieces.push_back(std::string(p));
    miss["answer_pieces"] = pieces;
    panel.showCase(miss);
    const QString text = panel.findChild<QTextBrowser*>()->toPlainText();
    QVERIFY2(text.contains(QStringLiteral("What each answer token read")), qPrintable(text));
    QVERIFY2(text.contains(QStringLiteral("6 (digit 3) 0.90")), qPrintable(text));
    QVERIFY2(!text.contains(QStringLiteral("2 (digit 1)")), qPrintable(text));  // a read under 0.05 is not shown
  }
};

QTEST_MAIN(TestApp)
#include "test_app.moc"
