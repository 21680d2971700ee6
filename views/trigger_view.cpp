#include "views/trigger_view.h"
#include "views/plot.h"

#include <limits>

#include <QDoubleSpinBox>
#include <QHBoxLayout>
#include <QHelpEvent>
#include <QLabel>
#include <QPushButton>
#include <QSplitter>
#include <QToolTip>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <algorithm>

#include "views/trace_document.h"
#include "views/plot_export.h"

namespace memmamba::views {

namespace {

// Tokens [begin, end) of a layer's flags that were in its scan (not dropped by DeciMamba).
int64_t keptIn(const std::vector<uint8_t>& flags, int64_t begin, int64_t end) {
  int64_t kept = 0;
  for (int64_t i = begin; i < end; ++i) kept += (flags[static_cast<size_t>(i)] & kDecimated) == 0;
  return kept;
}
constexpr int kMaxColumns = 3000;
}

TriggerView::TriggerView(TraceDocument* document, QWidget* parent) : PlotPanel(document, parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  auto* bar = new QHBoxLayout;
  auto spin = [this, bar](const QString& label, const QString& tip) {
    bar->addWidget(new QLabel(label, this));
    auto* s = new QDoubleSpinBox(this);
    s->setRange(-1.0, 2.0);
    s->setSingleStep(0.05);
    s->setDecimals(3);
    s->setToolTip(tip);
    bar->addWidget(s);
    return s;
  };
  tau_note_ = spin(tr("tau1 (note)"), tr("A token is noted when its importance exceeds tau1"));
  tau_retrieve_ = spin(tr("tau2 (retrieve)"), tr("Cross-token attention runs when I_state exceeds tau2"));
  fusion_gain_ = spin(tr("read-out gain"),
                      tr("How loud the memory's read-out is: every fusion term is multiplied by it (1 as trained; "
                         "the bundled MemMamba-small uses 3, which long contexts need)"));
  fusion_gain_->setRange(0.0, 100.0);
  fusion_gain_->setSingleStep(0.5);
  fusion_gain_->setValue(1.0);
  rerun_ = new QPushButton(tr("Re-run with these settings"), this);
  bar->addWidget(rerun_);
  bar->addStretch(1);
  layout->addLayout(bar);
  auto* split = new QSplitter(Qt::Vertical, this);
  raster_ = new Plot(this);
  raster_->setObjectName(QStringLiteral("trigger-raster"));
  raster_->installEventFilter(this);
  signals_ = new Plot(this);
  signals_->setObjectName(QStringLiteral("threshold-signals"));
  // The legend in a row of its own above the data, one line wide: inside the axis rect it
  // covered the curves.
  signals_->plotLayout()->insertRow(0);
  signals_->plotLayout()->addElement(0, 0, signals_->legend);
  signals_->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
  signals_->legend->setWrap(4);
  signals_->legend->setMargins(QMargins(4, 0, 4, 0));
  signals_->plotLayout()->setRowStretchFactor(0, 0.001);
  split->addWidget(raster_);
  split->addWidget(signals_);
  layout->addWidget(split, 1);
  connect(rerun_, &QPushButton::clicked, this, [this] { Q_EMIT rerunRequested(tau_note_->value(), tau_retrieve_->value(), fusion_gain_->value());
  });
  connect(raster_, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent* e) {
    document_->setPosition(static_cast<qint64>(raster_->xAxis->pixelToCoord(e->position().x())));
    const int layer = static_cast<int>(std::lround(raster_->yAxis->pixelToCoord(e->position().y())));
    document_->setLayer(layer);
  });
  connect(document_, &TraceDocument::traceChanged, this, [this] {
    const Trace* t = document_->trace();
    if (t) {
      const Json& info = t->run_info;
      if (info.is_object() && info.contains("tau_note") && info.at("tau_note").is_number())
        tau_note_->setValue(info.at("tau_note").as_double());
      if (info.is_object() && info.contains("tau_retrieve") && info.at("tau_retrieve").is_number())
        tau_retrieve_->setValue(info.at("tau_retrieve").as_double());
      // Traces written before the gain existed ran as trained (gain 1).
      const bool has_gain = info.is_object() && info.contains("fusion_gain") && info.at("fusion_gain").is_number();
      fusion_gain_->setValue(has_gain ? info.at("fusion_gain").as_double() : 1.0);
    }
    rebuildRaster();
    updateSignals();
  });
  connect(document_, &TraceDocument::comparisonChanged, this, [this] {
    rebuildRaster();
    updateSignals();
  });
  connect(document_, &TraceDocument::layerChanged, this, &TriggerView::updateSignals);
  connect(document_, &TraceDocument::positionChanged, this, &TriggerView::updateSignals);
  setEmptyHint(tr("Where the note and retrieval thresholds fire appears here: open a book (File > Open) or a trace."));
}

double TriggerView::fusionGain() const { return fusion_gain_->value(); }

void TriggerView::setThresholds(double tau_note, double tau_retrieve) {
  tau_note_->setValue(tau_note);
  tau_retrieve_->setValue(tau_retrieve);
  updateSignals();
}

std::vector<Figure> TriggerView::figures() const {
  return {{QStringLiteral("trigger-raster"), raster_}, {QStringLiteral("threshold-signals"), signals_}};
}

QString TriggerView::csv(const QString& figure, CsvDetail detail) const {
  const Trace* t = document_->trace();
  if (!t) return {};
  if (figure == QLatin1String("trigger-raster")) {
    const int64_t T = t->length();
    // As drawn: one row per layer and column of the raster (bin_ tokens each, the last one
    // shorter), with what the column's tokens did; a DeciMamba trace adds how many its scan kept.
    const int64_t bin = detail == CsvDetail::Full ? 1 : std::max<int64_t>(1, bin_);
    QString out = detail == CsvDetail::Full
                      ? QStringLiteral("layer,token,noted,triggered,importance,istate%1\n")
                      : QStringLiteral("layer,token_begin,token_end,noted,triggered,importance_mean,importance_max,istate_mean%1\n");
    // A DeciMamba comparison: how many of the span's tokens its same layer's scan kept.
    out = out.arg(decimated_ ? QStringLiteral(",kept") : kept_by_ ? QStringLiteral(",kept_by_comparison") : QString());
    for (size_t l = 0; l < t->layers.size(); ++l) {
      const auto& lt = t->layers[l];
      for (int64_t a = 0; a < T; a += bin) {
        const int64_t b = std::min(T, a + bin);
        int64_t noted = 0, triggered = 0, kept = 0, kept_there = 0;
        double importance_sum = 0, importance_max = -std::numeric_limits<double>::infinity(), istate_sum = 0;
        for (int64_t i = a; i < b; ++i) {
          noted += (lt.flags[i] & kNoted) != 0;
          triggered += (lt.flags[i] & kTriggered) != 0;
          kept += (lt.flags[i] & kDecimated) == 0;
          if (kept_by_) kept_there += (kept_by_->layers[std::min(l, kept_by_->layers.size() - 1)].flags[i] & kDecimated) == 0;
          importance_sum += lt.importance[i];
          importance_max = std::max<double>(importance_max, lt.importance[i]);
          istate_sum += lt.istate[i];
        }
        const QString tail = decimated_ ? QStringLiteral(",%1").arg(kept)
                             : kept_by_  ? QStringLiteral(",%1").arg(kept_there)
                                         : QString();
        if (detail == CsvDetail::Full)
          out += QStringLiteral("%1,%2,%3,%4,%5,%6%7\n").arg(l).arg(a).arg(noted).arg(triggered)
                     .arg(lt.importance[a], 0, 'g', 6).arg(lt.istate[a], 0, 'g', 6).arg(tail);
        else
          out += QStringLiteral("%1,%2,%3,%4,%5,%6,%7,%8%9\n").arg(l).arg(a).arg(b).arg(noted).arg(triggered)
                     .arg(importance_sum / static_cast<double>(b - a), 0, 'g', 6).arg(importance_max, 0, 'g', 6)
                     .arg(istate_sum / static_cast<double>(b - a), 0, 'g', 6).arg(tail);
      }
    }
    return out;
  }
  const int layer = document_->layer();
  const int64_t pos = document_->position();
  QString out = QStringLiteral("layer,token,importance,istate,tau_note,tau_retrieve\n");
  for (int64_t i = std::max<int64_t>(0, pos - window_); i <= std::min(t->length() - 1, pos + window_); ++i)
    out += QStringLiteral("%1,%2,%3,%4,%5,%6\n").arg(layer).arg(i).arg(t->layers[layer].importance[i], 0, 'g', 6)
               .arg(t->layers[layer].istate[i], 0, 'g', 6).arg(tau_note_->value()).arg(tau_retrieve_->value());
  return out;
}

bool TriggerView::eventFilter(QObject* watched, QEvent* event) {
  if (watched != raster_ || event->type() != QEvent::ToolTip) return PlotPanel::eventFilter(watched, event);
  auto* he = static_cast<QHelpEvent*>(event);
  const Trace* t = document_->trace();
  const double x = raster_->xAxis->pixelToCoord(he->pos().x());
  const int row = static_cast<int>(std::lround(raster_->yAxis->pixelToCoord(he->pos().y())));
  if (!t || !map_ || x < 0 || x >= static_cast<double>(t->length()) || row < 0 || row >= rows_) {
    QToolTip::hideText();
    return true;
  }
  const int64_t begin = static_cast<int64_t>(x) / bin_ * bin_;
  // A DeciMamba raster's last row is "kept to the end": the last layer's scan.
  const int layer = std::min(row, static_cast<int>(t->layers.size()) - 1);
  QString text = document_->spanSummary(layer, begin, begin + bin_);
  if (decimated_ && row == rows_ - 1) text = tr("kept to the end (the last layer's scan)<br>") + text;
  if (kept_by_ && row == rows_ - 1) {
    const int64_t end = std::min(t->length(), begin + bin_);
    const int64_t kept = keptIn(kept_by_->layers.back().flags, begin, end);
    text = tr("%1 kept %2 of the %3 tokens %L4-%L5 to its last layer").arg(kept_label_).arg(kept).arg(end - begin).arg(begin).arg(end - 1);
  }
  QToolTip::showText(he->globalPos(), text, raster_);
  return true;
}

void TriggerView::rebuildRaster() {
  raster_->clearPlottables();
  raster_->clearItems();
  map_ = nullptr;
  cursor_ = nullptr;
  rows_ = columns_ = 0;
  kept_by_.reset();
  kept_label_.clear();
  const Trace* t = document_->trace();
  if (!t || t->length() == 0) { redraw(raster_); return; }
  const int64_t T = t->length();
  rows_ = static_cast<int>(t->layers.size());
  bin_ = std::max<int64_t>(1, (T + kMaxColumns - 1) / kMaxColumns);
  columns_ = static_cast<int>((T + bin_ - 1) / bin_);
  map_ = new QCPColorMap(raster_->xAxis, raster_->yAxis);
  map_->data()->setSize(columns_, rows_);
  map_->data()->setRange(QCPRange(0, static_cast<double>(T)), QCPRange(0, std::max(0, rows_ - 1)));
  // A run whose retrieval fired at every token of every layer (tau2 below any I_state, as the
  // bundled model is trained) would paint the raster solid blue and hide the notes: then the
  // raster shows the notes alone and its label says why.
  bool reads_everywhere = true;
  for (const auto& layer : t->layers)
    reads_everywhere = reads_everywhere && std::all_of(layer.flags.begin(), layer.flags.begin() + T,
                                                       [](auto f) { return (f & kTriggered) != 0; });
  // A DeciMamba run (tokens dropped between layers): each layer's row shows which tokens its
  // scan kept, and a last row those kept to the end.
  decimated_ = false;
  for (const auto& layer : t->layers)
    decimated_ = decimated_ || std::any_of(layer.flags.begin(), layer.flags.begin() + T, [](auto f) { return (f & kDecimated) != 0; });
  if (decimated_) {
    rows_ += 1;
    map_->data()->setSize(columns_, rows_);
    map_->data()->setRange(QCPRange(0, static_cast<double>(T)), QCPRange(0, std::max(0, rows_ - 1)));
    for (int l = 0; l < rows_; ++l) {
      const auto& flags = t->layers[std::min(l, static_cast<int>(t->layers.size()) - 1)].flags;
      for (int c = 0; c < columns_; ++c) {
        const int64_t a = c * bin_, b = std::min(T, a + bin_);
        map_->data()->setCell(c, l, static_cast<double>(keptIn(flags, a, b)) / static_cast<double>(b - a));
      }
    }
    QCPColorGradient g;
    g.setColorStopAt(0.0, palette().color(QPalette::Base));
    g.setColorStopAt(1.0, QColor(20, 140, 130));
    map_->setGradient(g);
    map_->setDataRange(QCPRange(0, 1));
    map_->setInterpolate(false);
    // Short lines: a column-wide figure (252 pt) clips a long axis label.
    raster_->xAxis->setLabel(tr("token position\nteal: in this layer's scan (DeciMamba)\nlast row: kept to the end"));
    auto ticks = QSharedPointer<QCPAxisTickerText>::create();
    for (int l = 0; l + 1 < rows_; ++l) ticks->addTick(l, QString::number(l));
    ticks->addTick(rows_ - 1, tr("kept"));
    raster_->yAxis->setTicker(ticks);
  } else {
    // Cell value: 0 nothing, 1 noted, 2 triggered, 3 both; a bin of several tokens shows what
    // happened to any of them (fractions would blend "partly triggered" into the "noted" colour).
    // With a DeciMamba comparison a last row holds 4 + the share of the column's tokens it kept.
    const TraceDocument::Comparison* decimated = document_->decimatedComparison();
    kept_by_ = decimated ? decimated->trace : nullptr;
    kept_label_ = decimated ? decimated->label : QString();
    const int layer_rows = rows_;
    if (kept_by_) {
      rows_ += 1;
      map_->data()->setSize(columns_, rows_);
      map_->data()->setRange(QCPRange(0, static_cast<double>(T)), QCPRange(0, std::max(0, rows_ - 1)));
      const auto& flags = kept_by_->layers.back().flags;
      for (int c = 0; c < columns_; ++c) {
        const int64_t a = c * bin_, b = std::min(T, a + bin_);
        map_->data()->setCell(c, rows_ - 1, 4.0 + static_cast<double>(keptIn(flags, a, b)) / static_cast<double>(b - a));
      }
      auto ticks = QSharedPointer<QCPAxisTickerText>::create();
      for (int l = 0; l < layer_rows; ++l) ticks->addTick(l, QString::number(l));
      ticks->addTick(rows_ - 1, tr("kept"));
      raster_->yAxis->setTicker(ticks);
    } else {
      raster_->yAxis->setTicker(QSharedPointer<QCPAxisTicker>::create());
    }
    for (int l = 0; l < layer_rows; ++l) {
      const auto& flags = t->layers[l].flags;
      for (int c = 0; c < columns_; ++c) {
        double noted = 0, trig = 0;
        const int64_t a = c * bin_, b = std::min(T, a + bin_);
        for (int64_t i = a; i < b; ++i) { noted += (flags[i] & kNoted) != 0; trig += (flags[i] & kTriggered) != 0; }
        map_->data()->setCell(c, l, (noted > 0 ? 1.0 : 0.0) + (trig > 0 && !reads_everywhere ? 2.0 : 0.0));
      }
    }
    QCPColorGradient g;
    if (kept_by_) {
      // Categories at 0-3, the kept share from 4 (none: blank) to 5 (all: teal); 351 levels
      // land every category on a level of its own.
      g.setColorStopAt(0.0, palette().color(QPalette::Base));
      g.setColorStopAt(0.2, QColor(255, 150, 0));
      g.setColorStopAt(0.4, QColor(40, 110, 220));
      g.setColorStopAt(0.6, QColor(150, 40, 160));
      g.setColorStopAt(0.8, palette().color(QPalette::Base));
      g.setColorStopAt(1.0, QColor(20, 140, 130));
      g.setLevelCount(351);
      map_->setDataRange(QCPRange(0, 5));
    } else {
      g.setColorStopAt(0.0, palette().color(QPalette::Base));
      g.setColorStopAt(1.0 / 3, QColor(255, 150, 0));
      g.setColorStopAt(2.0 / 3, QColor(40, 110, 220));
      g.setColorStopAt(1.0, QColor(150, 40, 160));
      g.setLevelCount(4);
      map_->setDataRange(QCPRange(0, 3));
    }
    map_->setGradient(g);
    map_->setInterpolate(false);
    // Short lines: a column-wide figure (252 pt) clips a long axis label.
    const QString kept = kept_by_ ? tr("\nlast row: kept by DeciMamba") : QString();  // its run named in the tooltip
    raster_->xAxis->setLabel(reads_everywhere ? tr("token position\norange: noted; read at every token%1").arg(kept)
                                              : tr("token position\norange: noted, blue: read, purple: both%1").arg(kept));
  }
  raster_->yAxis->setLabel(tr("layer"));
  // The key under the axis in a smaller type, so that its lines fit a column-wide figure.
  QFont key = raster_->xAxis->tickLabelFont();
  key.setPointSizeF(key.pointSizeF() * 0.85);
  raster_->xAxis->setLabelFont(key);
  raster_->xAxis->setRange(0, static_cast<double>(T));
  raster_->yAxis->setRange(-0.5, rows_ - 0.5);
  raster_->yAxis->setRangeReversed(true);
  // Chapter starts: thin dashed lines, so a reader sees where in the book the notes fall.
  for (const auto& chapter : document_->chapters()) {
    auto* line = new QCPItemStraightLine(raster_);
    line->setPen(QPen(palette().color(QPalette::Text), 1, Qt::DashLine));
    line->point1->setCoords(static_cast<double>(chapter.token), 0);
    line->point2->setCoords(static_cast<double>(chapter.token), 1);
    line->setSelectable(false);
  }
  cursor_ = new QCPItemStraightLine(raster_);
  markAsCursor(cursor_);
  cursor_->setPen(QPen(QColor(230, 40, 80), 2));
  raster_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  raster_->axisRect()->setRangeDrag(Qt::Horizontal);
  raster_->axisRect()->setRangeZoom(Qt::Horizontal);
  redraw(raster_);
}

int TriggerView::signalCurves() const { return signals_->graphCount(); }

void TriggerView::updateSignals() {
  signals_->clearGraphs();
  signals_->clearItems();
  const Trace* t = document_->trace();
  if (!t || t->length() == 0) { redraw(signals_); return; }
  const int layer = document_->layer();
  const int64_t pos = document_->position();
  const int64_t a = std::max<int64_t>(0, pos - window_), b = std::min(t->length() - 1, pos + window_);
  QVector<double> x, imp, ist;
  for (int64_t i = a; i <= b; ++i) {
    x << static_cast<double>(i);
    imp << t->layers[layer].importance[i];
    ist << t->layers[layer].istate[i];
  }
  // With windows of one token and the novelty rule, I_state at t is I_t at t - 1, to the bit:
  // two curves would be one drawn twice, shifted by a token. Then one curve says so.
  const auto& importance = t->layers[layer].importance;
  const auto& istate = t->layers[layer].istate;
  bool shifted_twin = b > a;
  for (int64_t i = a + 1; i <= b && shifted_twin; ++i) shifted_twin = istate[i] == importance[i - 1];
  auto* gi = signals_->addGraph();
  gi->setName(shifted_twin ? tr("importance I_t (= I_state at t + 1 in this layer)") : tr("importance I_t"));
  gi->setPen(QPen(QColor(255, 140, 0), 1));
  gi->setData(x, imp, true);
  if (!shifted_twin) {
    auto* gs = signals_->addGraph();
    gs->setName(tr("I_state"));
    gs->setPen(QPen(QColor(40, 110, 220), 1));
    gs->setData(x, ist, true);
  }
  auto hline = [this](double y, const QColor& c) {
    auto* line = new QCPItemStraightLine(signals_);
    line->point1->setCoords(0, y);
    line->point2->setCoords(1, y);
    line->setPen(QPen(c, 1, Qt::DashLine));
  };
  hline(tau_note_->value(), QColor(255, 140, 0));
  hline(tau_retrieve_->value(), QColor(40, 110, 220));
  auto* now = new QCPItemStraightLine(signals_);
  markAsCursor(now);
  now->point1->setCoords(static_cast<double>(pos), 0);
  now->point2->setCoords(static_cast<double>(pos), 1);
  now->setPen(QPen(QColor(230, 40, 80), 2));
  signals_->legend->setVisible(true);
  // I_state is never below 0, so a negative tau2 (the bundled model's) reads at every token;
  // its line would fall off the plot, so the label says so instead.
  signals_->xAxis->setLabel(tau_retrieve_->value() < 0
                                ? tr("token position (layer %1; dashed: tau1; tau2 %2 < 0: retrieval at every token)")
                                      .arg(layer)
                                      .arg(tau_retrieve_->value())
                                : tr("token position (layer %1; dashed: tau1, tau2)").arg(layer));
  signals_->xAxis->setRange(static_cast<double>(a), static_cast<double>(std::max(b, a + 1)));
  signals_->yAxis->setRange(-0.05, 1.05);
  redraw(signals_, QCustomPlot::rpQueuedReplot);
  if (cursor_) {
    cursor_->point1->setCoords(static_cast<double>(pos), 0);
    cursor_->point2->setCoords(static_cast<double>(pos), 1);
    redraw(raster_, QCustomPlot::rpQueuedReplot);
  }
}

}  // namespace memmamba::views
