// The views on real (small) traces: each renders the right number of items, follows the
// document, exports valid PNG/SVG/PDF and CSV atomically, and the passkey grid navigates.
// The views link no torch: the traces are files that make_view_traces wrote (a CTest fixture).
#include <QDir>
#include <QLabel>
#include <QFile>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QDoubleSpinBox>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QtTest/QtTest>
#include <QHelpEvent>
#include <QTableWidget>
#include <QToolTip>
#include <qcustomplot.h>

#include <cmath>
#include <memory>

#include "model/eval/passkey_grid.h"
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

using namespace memmamba;

class TestViews : public QObject {
  Q_OBJECT
 private:
  std::shared_ptr<const Trace> trace_;
  int64_t T_ = 300;

  static std::shared_ptr<const Trace> load(const QString& name) {
    return std::make_shared<const Trace>(Trace::load(QDir(QStringLiteral(MEMMAMBA_VIEW_TRACES)).filePath(name).toStdString()));
  }

 private Q_SLOTS:
  void initTestCase() {
    trace_ = load(QStringLiteral("main.trace"));
    QCOMPARE(trace_->length(), T_);
    QVERIFY(!trace_->notes.empty());
  }

  void poolAndTriggerViewsCountItems() {
    views::TraceDocument doc;
    views::PoolView pool(&doc);
    views::TriggerView triggers(&doc);
    QVERIFY(pool.showsEmptyHint() && triggers.showsEmptyHint());  // a sentence, not empty axes
    doc.setTrace(trace_, QStringLiteral("test"));
    QVERIFY(!pool.showsEmptyHint() && !triggers.showsEmptyHint());
    QCOMPARE(pool.slotRows(), static_cast<int>(trace_->pool_slots));
    QCOMPARE(pool.occupancyColumns(), static_cast<int>(T_));
    QCOMPARE(triggers.rasterRows(), static_cast<int>(trace_->layers.size()));
    QCOMPARE(triggers.rasterColumns(), static_cast<int>(T_));
    // Windows of one token, novelty: I_state is I_t a token later, drawn once.
    QCOMPARE(triggers.signalCurves(), 1);
    {
      // Windows of three tokens: I_state and I_t differ, both drawn.
      views::TraceDocument windows_doc;
      views::TriggerView window_triggers(&windows_doc);
      windows_doc.setTrace(load(QStringLiteral("window3.trace")), QStringLiteral("w3"));
      windows_doc.setPosition(45);
      QCOMPARE(window_triggers.signalCurves(), 2);
    }
    // A negative tau2 has no line on the plot (I_state >= 0), so the axis says what it means.
    auto* signals_plot = triggers.findChild<QCustomPlot*>(QStringLiteral("threshold-signals"));
    QVERIFY(signals_plot);
    triggers.setThresholds(0.75, -1.0);
    doc.setPosition(5);
    QVERIFY2(signals_plot->xAxis->label().contains(QStringLiteral("retrieval at every token")), qPrintable(signals_plot->xAxis->label()));
    triggers.setThresholds(0.75, 0.5);
    doc.setPosition(6);
    QVERIFY(!signals_plot->xAxis->label().contains(QStringLiteral("every token")));
    auto* raster = triggers.findChild<QCustomPlot*>(QStringLiteral("trigger-raster"));
    QVERIFY(raster && !raster->xAxis->label().contains(QStringLiteral("every token")));
    // The read-out gain the trace ran with is shown, and a re-run asks for what the boxes say.
    QCOMPARE(triggers.fusionGain(), trace_->run_info.at("fusion_gain").as_double());
    {
      auto louder = std::make_shared<Trace>(*trace_);
      louder->run_info["fusion_gain"] = 2.5;
      views::TraceDocument other;
      views::TriggerView view(&other);
      other.setTrace(louder, QStringLiteral("louder"));
      QCOMPARE(view.fusionGain(), 2.5);
      QSignalSpy rerun(&view, &views::TriggerView::rerunRequested);
      QPushButton* button = nullptr;
      for (auto* b : view.findChildren<QPushButton*>())
        if (b->text().startsWith(QStringLiteral("Re-run"))) button = b;
      QVERIFY(button);
      button->click();
      QCOMPARE(rerun.count(), 1);
      QCOMPARE(rerun.at(0).at(2).toDouble(), 2.5);
    }
    // The pool shown at the last token equals the replayed pool.
    doc.setPosition(T_ - 1);
    int expected = 0;
    for (int64_t n : trace_->pool_at(0, T_ - 1)) expected += n >= 0;
    QCOMPARE(pool.occupiedRows(), expected);
    QVERIFY(expected > 0);
    // Stepping over a token whose note was inserted flashes exactly the slots that changed.
    int64_t insert_at = -1;
    for (const PoolEvent& e : trace_->events)
      if (e.layer == 0 && e.kind == 0 && e.position > 20) { insert_at = e.position; break; }
    QVERIFY(insert_at > 0);
    doc.setPosition(insert_at);      // the pool before the insert is visible here
    doc.setPosition(insert_at + 1);  // and the insert from here on
    QVERIFY(pool.changedRows() >= 1);
    // A step back flashes nothing (the same rule leaves out forward jumps of more than 1,024
    // tokens, as when a trace opens at token 2,000).
    doc.setPosition(T_ - 1);
    doc.setPosition(insert_at);
    QVERIFY(pool.occupiedRows() > 0);
    QCOMPARE(pool.changedRows(), 0);
  }

  void bookAttentionDecayFollowTheDocument() {
    views::TraceDocument doc;
    views::BookView book(&doc);
    views::AttentionView attention(&doc);
    views::DecayView decay(&doc);
    doc.setTrace(trace_, QStringLiteral("test"));
    doc.setPosition(T_ - 1);
    int64_t noted = 0;
    for (int64_t t = book.renderedBegin(); t < book.renderedEnd(); ++t) noted += (trace_->layers[0].flags[t] & kNoted) != 0;
    QCOMPARE(book.highlightedNotes(), noted);
    QCOMPARE(book.renderedEnd(), T_);
    int64_t recorded = 0;
    for (int64_t t = std::max<int64_t>(0, T_ - 120); t < T_; ++t) recorded += trace_->layers[0].token_attention.find(t) >= 0;
    QCOMPARE(static_cast<int64_t>(attention.heatmapRows()), recorded);
    // The heatmap has a colour scale, and a slot a row did not record is blank, not weight 0.
    QCPColorMap* heat_map = nullptr;
    for (QCustomPlot* plot : attention.findChildren<QCustomPlot*>())
      for (int i = 0; i < plot->plottableCount(); ++i)
        if (auto* m = qobject_cast<QCPColorMap*>(plot->plottable(i))) heat_map = m;
    QVERIFY(heat_map && heat_map->colorScale());
    const AttentionRows& last_rows = trace_->layers[0].token_attention;
    const int64_t last_row = last_rows.find(T_ - 1);
    QVERIFY(last_row >= 0);
    std::vector<bool> recorded_slot(static_cast<size_t>(trace_->pool_slots), false);
    for (int64_t e = last_rows.offset[last_row]; e < last_rows.offset[last_row + 1]; ++e) recorded_slot[last_rows.slot[e]] = true;
    const int last_cell = heat_map->data()->valueSize() - 1;
    for (int j = 0; j < static_cast<int>(trace_->pool_slots); ++j)
      QCOMPARE(std::isnan(heat_map->data()->cell(j, last_cell)), !recorded_slot[static_cast<size_t>(j)]);
    QCOMPARE(decay.curves(), static_cast<int>(trace_->layers.size()));
    doc.setPosition(10);  // a recorded retention source: exact curves in every layer
    QCOMPARE(decay.exactCurves(), static_cast<int>(trace_->layers.size()));
    QCOMPARE(decay.fidelityCurves(), 0);  // not measured in this run
    QVERIFY(book.findNext(QStringLiteral("w5 ")));
    QCOMPARE(trace_->text.substr(trace_->char_begin[doc.position()], 3), std::string("w5 "));
  }

  void decayViewShowsMeasuredFidelityPerLayer() {
    // A run that measured fidelity keeps it in run_info (saved with the trace); the decay
    // view draws ETMF and one ECLMF curve per gap that fits the model, the comparison dashed.
    auto loaded = load(QStringLiteral("fidelity.trace"));
    const Trace* with_fidelity = loaded.get();
    int expected = 1;
    for (const auto& [gap, record] : with_fidelity->run_info.at("fidelity").at("eclmf").as_object())
      expected += record.is_object() ? 1 : 0;
    views::TraceDocument doc;
    views::DecayView decay(&doc);
    doc.setTrace(loaded, QStringLiteral("with fidelity"));
    QCOMPARE(decay.fidelityCurves(), expected);
    doc.setComparison(loaded, QStringLiteral("again"));
    QCOMPARE(decay.fidelityCurves(), 2 * expected);
    QCOMPARE(decay.csv(QStringLiteral("memory-fidelity"), views::CsvDetail::Figure).count(QLatin1Char('\n')),
             1 + 2 * (static_cast<int>(trace_->layers.size()) +
                      static_cast<int>(with_fidelity->run_info.at("fidelity").at("eclmf").at("2").at("per_layer").as_array().size())));
  }

  // A figure's CSV holds what it draws: a long book's raster is layers x columns (bins of
  // tokens), its loss difference the average and the band; every value is there on request.
  void csvAtTheFiguresResolution() {
    const int64_t T = 7001;  // beyond the raster's 3,000 columns and the loss view's 2,000 points
    auto synthetic = [T](float loss_shift) {
      auto t = std::make_shared<Trace>();
      t->tokens.assign(static_cast<size_t>(T), 1);
      t->char_begin.assign(static_cast<size_t>(T), -1);
      t->char_end.assign(static_cast<size_t>(T), -1);
      t->loss.resize(static_cast<size_t>(T));
      for (int64_t i = 0; i < T; ++i) t->loss[i] = 3.0f + loss_shift * static_cast<float>(i % 7);
      for (int l = 0; l < 2; ++l) {
        LayerTrace layer;
        layer.importance.resize(static_cast<size_t>(T));
        for (int64_t i = 0; i < T; ++i) layer.importance[i] = static_cast<float>(i % 100) / 100.0f;
        layer.istate = layer.importance;
        layer.flags.assign(static_cast<size_t>(T), 0);
        for (int64_t i = l; i < T; i += 50) layer.flags[i] = kNoted;
        layer.fusion_token_norm.assign(static_cast<size_t>(T), 0.f);
        layer.fusion_layer_norm.assign(static_cast<size_t>(T), 0.f);
        layer.log_decay.assign(static_cast<size_t>(T), -0.1f);
        t->layers.push_back(std::move(layer));
      }
      return std::shared_ptr<const Trace>(std::move(t));
    };
    views::TraceDocument doc;
    views::TriggerView triggers(&doc);
    views::LossDifferenceView diff(&doc);
    doc.setTrace(synthetic(0.1f), QStringLiteral("long"));
    doc.setComparison(synthetic(0.0f), QStringLiteral("twin"));
    const int columns = triggers.rasterColumns();
    QVERIFY(columns > 1000 && columns < T);
    const QStringList drawn = triggers.csv(QStringLiteral("trigger-raster"), views::CsvDetail::Figure).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(drawn.size(), 1 + 2 * columns);
    QVERIFY(drawn[0].startsWith(QStringLiteral("layer,token_begin,token_end,noted,triggered,importance_mean,importance_max")));
    int64_t noted = 0, covered = 0;
    for (int i = 1; i < drawn.size(); ++i) {
      const QStringList f = drawn[i].split(QLatin1Char(','));
      if (f[0] == QLatin1String("0")) covered += f[2].toLongLong() - f[1].toLongLong();
      noted += f[3].toLongLong();
    }
    QCOMPARE(covered, T);  // the columns tile the text
    QCOMPARE(noted, (T + 49) / 50 + (T - 1 + 49) / 50);  // every note of both layers, once
    const QStringList every = triggers.csv(QStringLiteral("trigger-raster"), views::CsvDetail::Full).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(every.size(), 1 + 2 * static_cast<int>(T));
    // The loss difference as drawn: the band's two edges and the average, far fewer rows than
    // tokens; each token's difference on request.
    const QStringList curve = diff.csv(QStringLiteral("loss-difference"), views::CsvDetail::Figure).split('\n', Qt::SkipEmptyParts);
    QVERIFY2(curve.size() > 100 && curve.size() < T / 2, qPrintable(QString::number(curve.size())));
    QVERIFY(curve[0] == QLatin1String("series,token,difference"));
    QVERIFY(curve.filter(QStringLiteral("\"mean_of_")).size() > 100);
    QVERIFY(!curve.filter(QStringLiteral("\"quartile_1_of_")).isEmpty() && !curve.filter(QStringLiteral("\"quartile_3_of_")).isEmpty());
    const QStringList tokens = diff.csv(QStringLiteral("loss-difference"), views::CsvDetail::Full).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(tokens.size(), 1 + static_cast<int>(T));
  }

  void exportWritesValidFiles() {
    views::TraceDocument doc;
    views::TriggerView triggers(&doc);
    doc.setTrace(trace_, QStringLiteral("test"));
    QTemporaryDir dir;
    QCustomPlot* plot = triggers.figures().front().plot;
    const struct { const char* name; views::ImageFormat format; QByteArray magic; } cases[] = {
        {"f.png", views::ImageFormat::Png, QByteArray("\x89PNG", 4)},
        {"f.svg", views::ImageFormat::Svg, QByteArray("<?xml")},
        {"f.pdf", views::ImageFormat::Pdf, QByteArray("%PDF")}};
    for (const auto& c : cases) {
      const QString path = dir.filePath(QLatin1String(c.name));
      QCOMPARE(views::exportFigure(plot, path, c.format, {800, 500, 2.0}), QString());
      QFile f(path);
      QVERIFY(f.open(QIODevice::ReadOnly));
      const QByteArray bytes = f.readAll();
      QVERIFY2(bytes.startsWith(c.magic), c.name);
      QVERIFY(bytes.size() > 500);
    }
    QImage png(dir.filePath(QStringLiteral("f.png")));
    QCOMPARE(png.size(), QSize(1600, 1000));  // 800 x 500 at scale 2
    const QString csv = triggers.csv(QStringLiteral("trigger-raster"), views::CsvDetail::Full);
    QCOMPARE(csv.count(QLatin1Char('\n')), 1 + static_cast<int>(T_ * trace_->layers.size()));
    // A failed export leaves nothing behind and says why.
    const QString bad = dir.filePath(QStringLiteral("missing/f.png"));
    QVERIFY(!views::exportFigure(plot, bad, views::ImageFormat::Png, {800, 500, 1.0}).isEmpty());
    QVERIFY(!QFile::exists(bad));
    QVERIFY(!views::exportFigure(plot, dir.filePath(QStringLiteral("g.png")), views::ImageFormat::Png, {0, 500, 1.0}).isEmpty());
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files).size(), 3);
    // The position cursor stays out of a figure unless asked for, and stays on screen.
    doc.setPosition(T_ / 2);
    const QString plain = dir.filePath(QStringLiteral("plain.png")), with = dir.filePath(QStringLiteral("cursor.png"));
    QCOMPARE(views::exportFigure(plot, plain, views::ImageFormat::Png, {800, 500, 1.0}), QString());
    views::ExportSize asked{800, 500, 1.0};
    asked.cursor = true;
    QCOMPARE(views::exportFigure(plot, with, views::ImageFormat::Png, asked), QString());
    const QImage a(plain), b(with);
    QCOMPARE(a.size(), b.size());
    int cursor_red = 0, plain_red = 0;
    for (int y = 0; y < a.height(); y += 2)
      for (int x = 0; x < a.width(); ++x) {
        auto red = [](QRgb c) { return qRed(c) > 200 && qGreen(c) < 80 && qBlue(c) < 110; };
        plain_red += red(a.pixel(x, y));
        cursor_red += red(b.pixel(x, y));
      }
    QVERIFY2(cursor_red > 50 && plain_red == 0, qPrintable(QStringLiteral("%1 %2").arg(cursor_red).arg(plain_red)));
    int visible_cursors = 0;
    for (int i = 0; i < plot->itemCount(); ++i)
      visible_cursors += plot->item(i)->property("position_cursor").toBool() && plot->item(i)->visible();
    QCOMPARE(visible_cursors, 1);
    // An empty figure is refused, and nothing is written.
    QCustomPlot blank;
    blank.setObjectName(QStringLiteral("blank"));
    const QString none = dir.filePath(QStringLiteral("blank.png"));
    QVERIFY(views::exportFigure(&blank, none, views::ImageFormat::Png, {800, 500, 1.0}).contains(QStringLiteral("empty")));
    QVERIFY(!QFile::exists(none));
  }

  void gridCellNavigates() {
    views::TraceDocument doc;
    views::RetrievalPanel panel(&doc);
    Json r = Json::object();
    Json cells = Json::array(), cases = Json::array();
    for (int64_t L : {1024, 4096})
      for (double d : {0.0, 0.5, 1.0}) {
        Json cell = Json::object();
        cell["length"] = L;
        cell["depth"] = d;
        cell["accuracy"] = L == 1024 ? 1.0 : 0.5;
        if (L == 4096) cell["digit_accuracy"] = 0.7;  // the 1k row is from an older file: no partial credit
        cells.push_back(cell);
        Json k = Json::object();
        k["length"] = L;
        k["depth"] = d;
        k["sample"] = int64_t{0};
        k["key"] = int64_t{12345};
        k["answer"] = std::string("12345");
        k["hit"] = true;
        k["prompt_tokens"] = L;
        k["actual_depth"] = d;
        cases.push_back(k);
      }
    r["cells"] = cells;
    r["cases"] = cases;
    r["seed"] = int64_t{7};
    // The app loads a grid file and sets it on the document; the panel draws what it holds.
    auto setGrid = [&](const Json& results) -> QString {
      try {
        doc.setGrid(results, eval::parse_passkey_grid(results), QStringLiteral("test grid"));
        return {};
      } catch (const std::exception& e) {
        return QString::fromStdString(e.what());
      }
    };
    QCOMPARE(setGrid(r), QString());
    views::TraceDocument varied_doc;  // keys of two lengths, one cut short: the label breaks the grid down
    views::RetrievalPanel varied(&varied_doc);
    Json v = Json::object();
    v["cells"] = r.at("cells");
    v["cases"] = Json::array();
    for (const char* key : {"12345", "12345678"}) {
      Json k = Json::object();
      k["key"] = std::string(key);
      k["answer"] = std::string("12345.");
      k["hit"] = std::string(key) == "12345";
      v["cases"].push_back(k);
    }
    varied_doc.setGrid(v, eval::parse_passkey_grid(v), QStringLiteral("varied grid"));
    QString shown;
    for (const QLabel* label : varied.findChildren<QLabel*>()) shown += label->text();
    QVERIFY2(shown.contains(QStringLiteral("5: 1/1, 8: 0/1")) && shown.contains(QStringLiteral("Of 1 miss, 1 cut the key short")), qPrintable(shown));
    QCOMPARE(panel.gridLengths(), 2);
    QCOMPARE(panel.gridDepths(), 3);
    QSignalSpy spy(&panel, &views::RetrievalPanel::caseSelected);
    panel.selectCell(1, 2);
    QCOMPARE(spy.count(), 1);
    QCOMPARE(spy.at(0).at(0).toLongLong(), 4096);
    QCOMPARE(spy.at(0).at(1).toDouble(), 1.0);
    QCOMPARE(spy.at(0).at(3).toULongLong(), 7ULL * 1000003ULL);
    QCOMPARE(spy.at(0).at(2).toString(), QStringLiteral("12345"));  // a number in older files, text now
    // The case fields follow the clicked cell.
    QSpinBox* length_field = nullptr;
    for (QSpinBox* box : panel.findChildren<QSpinBox*>())
      if (box->suffix() == QStringLiteral(" tokens")) length_field = box;
    QVERIFY(length_field);
    QCOMPARE(length_field->value(), 4096);
    panel.selectCell(0, 0);
    QCOMPARE(length_field->value(), 1024);
    QCOMPARE(panel.findChild<QDoubleSpinBox*>()->value(), 0.0);
    panel.selectCell(1, 2);
    // A case of labelled facts lists them, marks the asked one, and says when the answer gave
    // another fact's value.
    {
      Json fact_case = cases.as_array()[0];
      fact_case["key"] = std::string("4821");
      fact_case["answer"] = std::string("7730.");
      fact_case["hit"] = false;
      fact_case["layers"] = Json::array();
      fact_case["needles"] = Json::parse(R"([{"label": "red door", "value": "7730", "actual_depth": 0.5},
                                              {"label": "blue box", "value": "4821", "actual_depth": 0.5}])");
      fact_case["asked"] = int64_t{1};
      fact_case["answered_other_fact"] = std::string("red door");
      panel.showCase(fact_case);
      QTextBrowser* details = nullptr;
      for (QTextBrowser* b : panel.findChildren<QTextBrowser*>()) details = b;
      QVERIFY(details);
      const QString html = details->toHtml();
      QVERIFY(html.contains(QStringLiteral("blue box: 4821")) && html.contains(QStringLiteral("another fact: the red door")));
      // With layer figures, the read's weight on the other facts' values stands beside the key's.
      QVERIFY(!html.contains(QStringLiteral("on other facts' values")));
      fact_case["layers"] = Json::parse(R"([{"answer_weight_on_key_notes": 0.125, "answer_weight_on_other_values": 0.625}])");
      panel.showCase(fact_case);
      QVERIFY(details->toHtml().contains(QStringLiteral("on other facts' values")) && details->toHtml().contains(QStringLiteral("0.625")));
      // A near miss (every character, then more) is said as such; a partial one counts characters.
      Json near = fact_case;
      near["key"] = std::string("51970");
      near["answer"] = std::string("51970.d");
      near["digits_right"] = int64_t{5};
      panel.showCase(near);
      QVERIFY(details->toPlainText().contains(QStringLiteral("Near miss")));
      near["answer"] = std::string("51270");
      near["digits_right"] = int64_t{4};
      panel.showCase(near);
      QVERIFY(!details->toPlainText().contains(QStringLiteral("Near miss")));
      QVERIFY(details->toPlainText().contains(QStringLiteral("4 of 5")));
      // The comparison's answer to the same case goes under it, with its own verdict.
      Json twin = near;
      twin["answer"] = std::string("66827817.");
      twin["digits_right"] = int64_t{1};
      twin["key_survived_decimation"] = false;
      panel.showComparisonAnswer(twin, QStringLiteral("DeciMamba-small"));
      const QString both = details->toPlainText();
      QVERIFY2(both.contains(QStringLiteral("51270")) && both.contains(QStringLiteral("DeciMamba-small on the same case: answer 66827817.")) &&
                   both.contains(QStringLiteral("1 of 5")) && both.contains(QStringLiteral("dropped by decimation")),
               qPrintable(both));
      panel.showComparisonAnswer(Json::object(), QStringLiteral("broken"));  // an incomplete record is said, not a crash
      QVERIFY(details->toPlainText().contains(QStringLiteral("incomplete")));
    }
    // Partial credit: the heatmap switches measure; cells without it are blank, not zero.
    auto* grid = panel.findChild<QCustomPlot*>(QStringLiteral("passkey-grid"));
    auto cellValue = [&](int depth, int length) {
      auto* map = qobject_cast<QCPColorMap*>(grid->plottable(0));
      return map->data()->cell(depth, length);
    };
    QCOMPARE(cellValue(2, 1), 0.5);
    panel.setShowDigits(true);
    QVERIFY(panel.showsDigits());
    QCOMPARE(cellValue(2, 1), 0.7);
    QVERIFY(std::isnan(cellValue(0, 0)));
    const QStringList rows = panel.csv(QStringLiteral("passkey-grid"), views::CsvDetail::Figure).split('\n', Qt::SkipEmptyParts);
    QCOMPARE(rows.first(), QStringLiteral("length,depth,accuracy,digit_accuracy"));
    QVERIFY(rows.contains(QStringLiteral("4096,1,0.5,0.7")));
    QVERIFY(rows.contains(QStringLiteral("1024,0,1,")));
    Json bad = Json::object(), bad_cell = Json::object(), bad_cells = Json::array();
    bad_cell["length"] = int64_t{1024};
    bad_cell["depth"] = 0.5;
    bad_cell["accuracy"] = 1.0;
    bad_cell["digit_accuracy"] = 3.0;
    bad_cells.push_back(bad_cell);
    bad["cells"] = bad_cells;
    bad["cases"] = Json::array();
    QVERIFY(setGrid(bad).contains(QStringLiteral("digit_accuracy")));
    QVERIFY(!setGrid(Json::object()).isEmpty());  // not a grid: refused with a reason
    QCOMPARE(panel.gridLengths(), 2);                    // and the old grid stays
    // A grid of one length is drawn (a colour map needs two cells along an axis).
    Json one = Json::object(), one_cells = Json::array();
    for (double d : {0.0, 1.0}) {
      Json cell = Json::object();
      cell["length"] = int64_t{2048};
      cell["depth"] = d;
      cell["accuracy"] = d;
      one_cells.push_back(cell);
    }
    one["cells"] = one_cells;
    one["cases"] = Json::array();
    panel.setShowDigits(false);
    QCOMPARE(setGrid(one), QString());
    auto* row_map = qobject_cast<QCPColorMap*>(grid->plottable(0));
    QVERIFY(row_map->data()->keySize() >= 2 && row_map->data()->valueSize() >= 2);
    QVERIFY(row_map->data()->valueRange().size() > 0);
    QCOMPARE(row_map->data()->data(1.0, 0.0), 1.0);  // depth 1 at the one length
    QCOMPARE(row_map->data()->data(0.0, 0.0), 0.0);
  }

  // Two models' grids side by side: both drawn, each titled with its model, a clicked cell
  // lists both answers to its cases, and each grid exports its own numbers.
  void twoGridsSideBySide() {
    auto results = [](const char* checkpoint, bool memory, double hit_rate, const char* answer) {
      Json r = Json::object(), cells = Json::array(), cases = Json::array();
      for (int64_t L : {1024, 65536}) {
        Json cell = Json::object();
        cell["length"] = L;
        cell["depth"] = 0.5;
        cell["accuracy"] = L == 1024 ? 1.0 : hit_rate;
        cells.push_back(cell);
        Json k = Json::object();
        k["length"] = L;
        k["depth"] = 0.5;
        k["sample"] = int64_t{0};
        k["key"] = std::string("48213");
        k["answer"] = std::string(L == 1024 ? "48213." : answer);
        k["hit"] = L == 1024 || hit_rate > 0.5;
        k["prompt_tokens"] = L;
        k["actual_depth"] = 0.5;
        cases.push_back(k);
      }
      r["cells"] = cells;
      r["cases"] = cases;
      Json meta = Json::object();
      meta["checkpoint"] = std::string(checkpoint);
      r["meta"] = meta;
      Json settings = Json::object();
      settings["memory_enabled"] = memory;
      r["settings"] = settings;
      return r;
    };
    views::TraceDocument doc;
    views::RetrievalPanel panel(&doc);
    const Json mem = results("/x/memmamba-small.safetensors", true, 1.0, "48213.");
    const Json base = results("/y/mamba-small.safetensors", false, 0.0, "66827817.");
    doc.setGrid(mem, eval::parse_passkey_grid(mem), QStringLiteral("mem.json"));
    QVERIFY(!panel.showsComparisonGrid());
    doc.setComparisonGrid(base, eval::parse_passkey_grid(base), QStringLiteral("base.json"));
    QVERIFY(panel.showsComparisonGrid());
    QCOMPARE(views::RetrievalPanel::gridModel(base), QStringLiteral("mamba-small.safetensors (memory off)"));
    QCOMPARE(views::RetrievalPanel::gridModel(mem), QStringLiteral("memmamba-small.safetensors"));
    auto* other = panel.findChild<QCustomPlot*>(QStringLiteral("passkey-grid-comparison"));
    QVERIFY(other && !views::figureIsEmpty(other));
    bool titled = false;
    for (int i = 0; i < other->plotLayout()->elementCount(); ++i)
      if (auto* t = qobject_cast<QCPTextElement*>(other->plotLayout()->elementAt(i)))
        titled = titled || t->text().contains(QStringLiteral("mamba-small"));
    QVERIFY(titled);
    panel.selectCell(1, 0);  // 64k: found by one, missed by the other
    QTextBrowser* details = nullptr;
    for (QTextBrowser* b : panel.findChildren<QTextBrowser*>()) details = b;
    const QString text = details->toPlainText();
    QVERIFY2(text.contains(QStringLiteral("memmamba-small")) && text.contains(QStringLiteral("mamba-small.safetensors (memory off)")),
             qPrintable(text));
    QVERIFY(text.contains(QStringLiteral("66827817.")) && text.contains(QStringLiteral("missed")));
    QCOMPARE(panel.csv(QStringLiteral("passkey-grid-comparison"), views::CsvDetail::Figure),
             QStringLiteral("length,depth,accuracy,digit_accuracy\n1024,0.5,1,\n65536,0.5,0,\n"));
    QVERIFY(panel.csv(QStringLiteral("passkey-grid"), views::CsvDetail::Figure).contains(QStringLiteral("65536,0.5,1,")));
    doc.clearComparisonGrid();
    QVERIFY(!panel.showsComparisonGrid());
  }

  void rasterOfARunThatReadsEverywhereShowsTheNotes() {
    // With tau2 below every I_state the read runs at every token; the raster then shows the
    // notes alone (cells 0 or 1) instead of a solid "triggered" colour, and says so.
    auto trace = load(QStringLiteral("reads-everywhere.trace"));
    views::TraceDocument doc;
    views::TriggerView triggers(&doc);
    doc.setTrace(trace, QStringLiteral("reads everywhere"));
    auto* raster = triggers.findChild<QCustomPlot*>(QStringLiteral("trigger-raster"));
    QVERIFY2(raster->xAxis->label().contains(QStringLiteral("read at every token")), qPrintable(raster->xAxis->label()));
    auto* map = qobject_cast<QCPColorMap*>(raster->plottable(0));
    QVERIFY(map);
    int noted_cells = 0;
    for (int l = 0; l < triggers.rasterRows(); ++l)
      for (int col = 0; col < triggers.rasterColumns(); ++col) {
        const double v = map->data()->cell(col, l);
        QVERIFY(v == 0.0 || v == 1.0);
        noted_cells += v == 1.0;
      }
    int64_t noted = 0;
    for (const auto& layer : trace->layers)
      for (auto f : layer.flags) noted += (f & kNoted) != 0;
    QCOMPARE(static_cast<int64_t>(noted_cells), noted);  // 200 tokens, one column each
    // The default run of the suite's trace (tau2 0.5) keeps the triggered colours.
    doc.setTrace(trace_, QStringLiteral("test"));
    raster = triggers.findChild<QCustomPlot*>(QStringLiteral("trigger-raster"));
    QVERIFY(!raster->xAxis->label().contains(QStringLiteral("every token")));
  }

  void lossDifferenceShowsWhereTwoRunsDiffer() {
    views::TraceDocument doc;
    views::LossDifferenceView diff(&doc);
    views::AttentionView attention(&doc);
    QVERIFY(diff.showsEmptyHint());
    doc.setTrace(trace_, QStringLiteral("edited"));
    QCOMPARE(diff.comparedTokens(), 0);  // no comparison yet: it says so
    QVERIFY(diff.caption().contains(QStringLiteral("No comparison")));
    // The comparison predicted tokens 100-149 one nat worse: the edited run is 1 nat better there.
    auto before = std::make_shared<Trace>(*trace_);
    for (int64_t i = 100; i < 150; ++i) before->loss[static_cast<size_t>(i)] += 1.0f;
    auto edited = std::make_shared<Trace>(*trace_);
    Json edit = Json::object();
    edit["kind"] = std::string("drop");
    edit["layer"] = int64_t{0};
    edit["note"] = int64_t{0};
    edit["position"] = int64_t{100};
    Json edits = Json::array();
    edits.push_back(edit);
    edited->run_info["memory_edits"] = edits;
    doc.setTrace(edited, QStringLiteral("edited"));
    doc.setComparison(before, QStringLiteral("before the edits"));
    int finite = 0;
    for (float l : trace_->loss) finite += std::isfinite(l) ? 1 : 0;
    QCOMPARE(diff.comparedTokens(), finite);
    const QStringList rows = diff.csv(QStringLiteral("loss-difference"), views::CsvDetail::Full).split(QLatin1Char('\n'), Qt::SkipEmptyParts);
    QCOMPARE(rows.size(), finite + 1);
    double total = 0;
    for (int i = 1; i < rows.size(); ++i) total += rows[i].section(QLatin1Char(','), 3, 3).toDouble();
    QVERIFY2(std::abs(total + 50.0) < 1e-3, qPrintable(QString::number(total)));
    const QString caption = diff.caption();
    const QRegularExpression at(QStringLiteral("largest change at token (\\d+)"));
    const auto match = at.match(caption);
    QVERIFY2(match.hasMatch(), qPrintable(caption));
    QVERIFY(match.captured(1).toLongLong() >= 100 && match.captured(1).toLongLong() < 150);
    auto* plot = diff.findChild<QCustomPlot*>(QStringLiteral("loss-difference"));
    int marks = 0;
    for (int i = 0; i < plot->itemCount(); ++i)
      if (auto* line = qobject_cast<QCPItemStraightLine*>(plot->item(i)); line && line->point1->coords().x() == 100.0)
        ++marks;
    QVERIFY(marks >= 1);  // the edit's position is marked
    // The comparison's reads at the current token are outlined beside the trace's own.
    int64_t read_at = -1;
    for (int64_t p = T_ - 1; p > 0 && read_at < 0; --p)
      if (trace_->layers[0].token_attention.find(p) >= 0) read_at = p;
    QVERIFY(read_at > 0);
    doc.setPosition(read_at);
    QVERIFY(attention.comparedBars() > 0);
    QCOMPARE(attention.comparedBars(), attention.sourceBars());  // the same run: the same reads
    // A comparison of other tokens is refused with a reason.
    auto other = std::make_shared<Trace>(*trace_);
    other->tokens[0] = other->tokens[0] + 1;
    doc.setComparison(other, QStringLiteral("other text"));
    QCOMPARE(diff.comparedTokens(), 0);
    QVERIFY(diff.caption().contains(QStringLiteral("other tokens")));
  }

  void decimatedTracesShowWhatEachLayerKept() {
    auto trace = load(QStringLiteral("decimated.trace"));
    views::TraceDocument doc;
    views::TriggerView triggers(&doc);
    views::BookView book(&doc);
    doc.setTrace(trace_, QStringLiteral("memory"));
    QVERIFY(!triggers.showsDecimation());
    doc.setTrace(trace, QStringLiteral("DeciMamba"));
    QVERIFY(triggers.showsDecimation());
    const int layers = static_cast<int>(trace->layers.size());
    QCOMPARE(triggers.rasterRows(), layers + 1);  // every layer, then "kept"
    auto* raster = triggers.findChild<QCustomPlot*>(QStringLiteral("trigger-raster"));
    auto* map = qobject_cast<QCPColorMap*>(raster->plottable(0));
    QVERIFY(map);
    // One column per token here: the "kept" row is 1 exactly where the last layer scanned it.
    QCOMPARE(triggers.rasterColumns(), static_cast<int>(trace->length()));
    int kept = 0;
    for (int c = 0; c < triggers.rasterColumns(); ++c) {
      const bool scanned = !(trace->layers[layers - 1].flags[c] & kDecimated);
      QCOMPARE(map->data()->cell(c, layers), scanned ? 1.0 : 0.0);
      QCOMPARE(map->data()->cell(c, 0), 1.0);  // nothing is dropped before layer 1
      kept += scanned;
    }
    QCOMPARE(kept, 40);  // 80 at layer 1, then half of them at layer 2
    QVERIFY(raster->xAxis->label().contains(QStringLiteral("DeciMamba")));
    // The book strikes out what the current layer dropped.
    doc.setLayer(2);
    doc.setPosition(150);
    QVERIFY(book.findChild<QLabel*>() != nullptr);
    bool said = false;
    for (QLabel* label : book.findChildren<QLabel*>()) said = said || label->text().contains(QStringLiteral("dropped by DeciMamba"));
    QVERIFY(said);
  }

  // The most-noted list counts noted tokens by their text, per layer, and steps through the
  // places a text was noted.
  void mostNotedListCountsTheNotedTexts() {
    auto trace = std::make_shared<Trace>();
    trace->text = "Ann met Bob. Ann saw 42, and Ann left 42 days later.";
    // Words and punctuation as tokens, with their byte ranges (spaces go with the next word).
    int64_t at = 0;
    while (at < static_cast<int64_t>(trace->text.size())) {
      int64_t end = at;
      while (end < static_cast<int64_t>(trace->text.size()) && trace->text[end] == ' ') ++end;
      const bool word = end < static_cast<int64_t>(trace->text.size()) && std::isalnum(static_cast<unsigned char>(trace->text[end]));
      if (word)
        while (end < static_cast<int64_t>(trace->text.size()) && std::isalnum(static_cast<unsigned char>(trace->text[end]))) ++end;
      else
        ++end;
      trace->char_begin.push_back(at);
      trace->char_end.push_back(end);
      trace->tokens.push_back(static_cast<int32_t>(trace->tokens.size()));
      at = end;
    }
    const int64_t T = trace->length();
    trace->loss.assign(static_cast<size_t>(T), 1.0f);
    trace->layers.resize(2);
    for (LayerTrace& l : trace->layers) l.flags.assign(static_cast<size_t>(T), 0);
    auto text_of = [&](int64_t t) { return trace->text.substr(trace->char_begin[t], trace->char_end[t] - trace->char_begin[t]); };
    std::vector<int64_t> ann, forty_two;
    for (int64_t t = 0; t < T; ++t) {
      const std::string w = text_of(t);
      if (w.find("Ann") != std::string::npos) ann.push_back(t);
      if (w.find("42") != std::string::npos) forty_two.push_back(t);
      if (w.find("Ann") != std::string::npos || w.find("42") != std::string::npos || w.find("Bob") != std::string::npos)
        trace->layers[0].flags[t] |= kNoted;
    }
    QCOMPARE(ann.size(), size_t(3));
    QCOMPARE(forty_two.size(), size_t(2));
    // Importance above tau1 where noted; the first "Ann" has a note that entered slot 2 and
    // was evicted at token 10, the first "42" one that the pool dropped.
    trace->run_info = Json::object();
    trace->run_info["tau_note"] = 0.75;
    trace->pool_slots = 4;
    for (LayerTrace& l : trace->layers) {
      l.importance.assign(static_cast<size_t>(T), 0.1f);
      for (int64_t t = 0; t < T; ++t)
        if (l.flags[t] & kNoted) l.importance[t] = 0.9f;
      l.istate = l.importance;  // every per-token array a loaded trace has, for the views
    }
    trace->notes.push_back(NoteInfo{0, 7, 1, 0.875f, Column<int64_t>{ann[0]}});
    trace->notes.push_back(NoteInfo{0, 8, 1, 0.5f, Column<int64_t>{forty_two[0]}});
    trace->events.push_back(PoolEvent{ann[0], 0, 0, 2, 0, 0.875f});
    trace->events.push_back(PoolEvent{10, 0, 1, 2, 0, 0.875f});
    trace->events.push_back(PoolEvent{forty_two[0], 0, 2, -1, 1, 0.5f});
    const auto top = most_noted_strings(*trace, 0, 2);
    QCOMPARE(top.size(), size_t(2));
    QCOMPARE(top[0].text, std::string("Ann"));  // the leading space is trimmed
    QCOMPARE(top[0].count, int64_t{3});
    QVERIFY(top[0].positions == ann);
    QCOMPARE(top[1].text, std::string("42"));
    QCOMPARE(noted_count(*trace, 0), int64_t{6});
    QVERIFY(most_noted_strings(*trace, 1, 30).empty());
    QVERIFY(most_noted_strings(*trace, 7, 30).empty());  // a layer the trace does not have
    QCOMPARE(most_noted_strings(*trace, 0, 0).size(), size_t(3));

    views::TraceDocument doc;
    views::NotedListView list(&doc);
    QCOMPARE(list.rows(), 0);
    doc.setTrace(trace, QStringLiteral("hand-made"));
    doc.setLayer(0);
    QCOMPARE(list.rows(), 3);
    QVERIFY2(list.caption().contains(QStringLiteral("6 notes")) && list.caption().contains(QStringLiteral("median 1 times in this text, any token 1.")),
             qPrintable(list.caption()));
    // Stepping through "Ann": each place after the current token, then around again.
    doc.setPosition(0);
    list.stepToNext(0);
    QCOMPARE(doc.position(), ann[1]);
    list.stepToNext(0);
    QCOMPARE(doc.position(), ann[2]);
    list.stepToNext(0);
    QCOMPARE(doc.position(), ann[0]);
    QVERIFY(list.csv().startsWith(QStringLiteral("layer,text,count,first\n0,\"Ann\",3,")));
    // Why a token was noted, or not.
    const QString first_ann = doc.whyNoted(0, ann[0]);
    QVERIFY2(first_ann.contains(QStringLiteral("importance 0.900 &gt; tau1 0.750")) && first_ann.contains(QStringLiteral("note 7")) &&
                 first_ann.contains(QStringLiteral("slot 2 from token 1")) && first_ann.contains(QStringLiteral("evicted at token 10")),
             qPrintable(first_ann));
    QVERIFY(doc.whyNoted(0, forty_two[0]).contains(QStringLiteral("dropped")));
    QVERIFY(doc.whyNoted(0, 1).contains(QStringLiteral("&le; tau1")) && doc.whyNoted(0, 1).contains(QStringLiteral("not noted")));
    QVERIFY(doc.whyNoted(0, ann[1]).contains(QStringLiteral("its note is not in the trace")));
    QVERIFY(doc.whyNoted(0, T).isEmpty() && doc.whyNoted(9, 0).isEmpty());
    // The same story on the pool's rows and the raster's cells (tooltips).
    QVERIFY2(doc.noteStory(0).contains(QStringLiteral("note 7")) && doc.noteStory(0).contains(QStringLiteral("evicted at token 10")),
             qPrintable(doc.noteStory(0)));
    QVERIFY(doc.noteStory(1).contains(QStringLiteral("dropped")) && doc.noteStory(2).isEmpty());
    QVERIFY2(doc.spanSummary(0, 0, T).contains(QStringLiteral("6 noted")), qPrintable(doc.spanSummary(0, 0, T)));
    QCOMPARE(doc.spanSummary(0, ann[0], ann[0] + 1), doc.whyNoted(0, ann[0]));
    QVERIFY(ann[0] + 1 < 10);
    {
      views::PoolView pool_view(&doc);
      pool_view.resize(900, 700);
      pool_view.show();
      doc.setPosition(ann[0] + 2);  // the note sits in slot 2 from ann[0] + 1 to token 10
      auto* table = pool_view.findChild<QTableWidget*>();
      QVERIFY(table && table->rowCount() == 4);
      const QPoint row2 = table->visualItemRect(table->item(2, 0)).center();
      QHelpEvent help(QEvent::ToolTip, row2, table->viewport()->mapToGlobal(row2));
      QApplication::sendEvent(table->viewport(), &help);
      QVERIFY2(QToolTip::text().contains(QStringLiteral("slot 2")) && QToolTip::text().contains(QStringLiteral("note 7")),
               qPrintable(QToolTip::text()));
      const QPoint row0 = table->visualItemRect(table->item(0, 0)).center();
      QHelpEvent empty(QEvent::ToolTip, row0, table->viewport()->mapToGlobal(row0));
      QApplication::sendEvent(table->viewport(), &empty);
      QVERIFY2(QToolTip::text().contains(QStringLiteral("empty")), qPrintable(QToolTip::text()));
      // The raster: a cell of layer 0 over the first "Ann" explains that token.
      views::TriggerView raster_view(&doc);
      raster_view.resize(900, 700);
      raster_view.show();
      doc.setTrace(trace, QStringLiteral("hand-made"));  // views draw what the document loads
      doc.setLayer(0);
      auto* raster = raster_view.findChild<QCustomPlot*>(QStringLiteral("trigger-raster"));
      raster->replot();
      const QPoint cell(static_cast<int>(raster->xAxis->coordToPixel(static_cast<double>(ann[0]) + 0.5)),
                        static_cast<int>(raster->yAxis->coordToPixel(0)));
      QHelpEvent over(QEvent::ToolTip, cell, raster->mapToGlobal(cell));
      QApplication::sendEvent(raster, &over);
      QVERIFY2(QToolTip::text().contains(QStringLiteral("note 7")), qPrintable(QToolTip::text()));
    }
    // Next and previous note of a layer, from any token.
    QCOMPARE(doc.nextNoted(0, ann[0], 1), ann[0] + 2);  // "Bob" (two tokens after "Ann": " met", " Bob")
    QCOMPARE(doc.nextNoted(0, forty_two[1], 1), int64_t{-1});
    QCOMPARE(doc.nextNoted(0, ann[2], -1), forty_two[0]);
    QCOMPARE(doc.nextNoted(0, 0, -1), int64_t{-1});
    QCOMPARE(doc.nextNoted(5, 0, 1), int64_t{-1});
    doc.setLayer(1);
    QCOMPARE(list.rows(), 0);
    QVERIFY(list.caption().contains(QStringLiteral("noted nothing")));
    QCOMPARE(doc.nextNoted(1, 0, 1), int64_t{-1});
  }

  void timelinePlaysAndReportsFrames() {
    views::TraceDocument doc;
    views::TimelineBar timeline(&doc);
    views::PoolView pool(&doc);
    views::TriggerView triggers(&doc);
    views::AttentionView attention(&doc);
    views::BookView book(&doc);
    doc.setTrace(trace_, QStringLiteral("test"));
    doc.setPosition(0);
    timeline.stepBy(3);
    QCOMPARE(doc.position(), int64_t{3});
    for (int i = 0; i < 60; ++i) timeline.advanceFrame();  // 100 tok/s at 30 frames/s: ~3 tokens a frame
    QVERIFY(doc.position() > 150);
    qInfo("frame time over %lld frames with every view: mean %.2f ms, worst %.2f ms", static_cast<long long>(timeline.frames()),
          timeline.meanFrameMs(), timeline.worstFrameMs());
  }
};
QTEST_MAIN(TestViews)
#include "test_views.moc"
