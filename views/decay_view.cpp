#include "views/decay_view.h"
#include "views/plot.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QSplitter>
#include <qcustomplot.h>

#include <algorithm>
#include <cmath>

#include "views/trace_document.h"

namespace memmamba::views {

namespace {

QColor layerColour(int layer, int layers) {
  QCPColorGradient g;
  applyViridis(g);
  return g.color(layers > 1 ? static_cast<double>(layer) / (layers - 1) * 0.9 : 0.0, QCPRange(0, 1));
}

// Retention of `source` at distances 0..horizon in one layer: exact when recorded.
QVector<double> retention(const Trace& t, int layer, int64_t source, int64_t horizon, bool* exact) {
  for (const RetentionCurve& c : t.retention)
    if (c.layer == layer && c.source == source) {
      *exact = true;
      return QVector<double>(c.values.begin(), c.values.begin() + std::min<int64_t>(c.values.size(), horizon + 1));
    }
  *exact = false;
  QVector<double> out{1.0};
  double sum = 0;
  const auto& ld = t.layers[layer].log_decay;
  for (int64_t k = 1; k <= horizon && source + k < t.length(); ++k) {
    sum += ld[source + k];
    out << std::exp(sum);
  }
  return out;
}

double meanLogDecay(const Trace& t, int layer) {
  const auto& ld = t.layers[layer].log_decay;
  if (ld.empty()) return 0;
  double s = 0;
  for (float v : ld) s += v;
  return s / static_cast<double>(ld.size());
}

}  // namespace

DecayView::DecayView(TraceDocument* document, QWidget* parent) : PlotPanel(document, parent) {
  caption_ = captionOverTwoPlots(Qt::Horizontal, QStringLiteral("decay-selected-token"), selected_,
                                 QStringLiteral("decay-a-power-k"), average_);
  fidelity_ = new Plot(this);
  fidelity_->setObjectName(QStringLiteral("memory-fidelity"));
  if (auto* split = qobject_cast<QSplitter*>(average_->parentWidget())) split->addWidget(fidelity_);
  // Legends in a column of their own beside the data: inside the axis rect they covered the
  // curves and were clipped.
  for (QCustomPlot* p : {selected_, average_, fidelity_}) {
    p->plotLayout()->addElement(0, 1, p->legend);
    p->plotLayout()->setColumnStretchFactor(1, 0.001);
    p->legend->setMargins(QMargins(4, 2, 4, 2));
  }
  for (QCustomPlot* p : {selected_, average_}) {
    p->yAxis->setScaleType(QCPAxis::stLogarithmic);
    p->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>(new QCPAxisTickerLog));
    p->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  }
  // The |A|^k view does not depend on the token: redrawn only when the trace or layer changes.
  connect(document_, &TraceDocument::traceChanged, this, [this] { refresh(true); refreshFidelity(); });
  connect(document_, &TraceDocument::comparisonChanged, this, [this] { refresh(true); refreshFidelity(); });
  connect(document_, &TraceDocument::layerChanged, this, [this] { refresh(true); });
  connect(document_, &TraceDocument::positionChanged, this, [this] { refresh(false); });
  setEmptyHint(tr("How fast each layer forgets appears here: open a book (File > Open) or a trace."));
}

int DecayView::curves() const { return selected_->graphCount(); }

std::vector<Figure> DecayView::figures() const {
  return {{QStringLiteral("decay-selected-token"), selected_},
          {QStringLiteral("decay-a-power-k"), average_},
          {QStringLiteral("memory-fidelity"), fidelity_}};
}

int DecayView::fidelityCurves() const { return fidelity_->graphCount(); }

QString DecayView::csv(const QString& figure, CsvDetail /*every value is drawn*/) const {
  QString out;
  const QCustomPlot* p = figure == QLatin1String("decay-a-power-k") ? average_
                         : figure == QLatin1String("memory-fidelity") ? fidelity_
                                                                      : selected_;
  out = p == fidelity_ ? QStringLiteral("curve,layer,score\n") : QStringLiteral("curve,distance,retention\n");
  for (int i = 0; i < p->graphCount(); ++i) {
    const QCPGraph* g = p->graph(i);
    for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it)
      out += QStringLiteral("\"%1\",%2,%3\n").arg(g->name()).arg(it->key).arg(it->value, 0, 'g', 8);
  }
  return out;
}

namespace {
// The k-th comparison's line style, and its name for captions.
Qt::PenStyle comparisonPen(size_t k) {
  const Qt::PenStyle styles[] = {Qt::DashLine, Qt::DotLine, Qt::DashDotLine, Qt::DashDotDotLine};
  return styles[k % 4];
}
QString penName(Qt::PenStyle style) {
  switch (style) {
    case Qt::DotLine: return DecayView::tr("dotted");
    case Qt::DashDotLine: return DecayView::tr("dash-dot");
    case Qt::DashDotDotLine: return DecayView::tr("dash-dot-dot");
    default: return DecayView::tr("dashed");
  }
}
}  // namespace

void DecayView::refresh(bool average_too) {
  selected_->clearGraphs();
  if (average_too) average_->clearGraphs();
  exact_ = 0;
  const Trace* t = document_->trace();
  if (!t || t->length() == 0) { redraw(selected_); redraw(average_); caption_->clear(); return; }
  const int64_t pos = document_->position();
  const int layers = document_->layers();
  // The x range follows the curves (down to 1e-6), not the recorded horizon: a fast-forgetting
  // model's curves would otherwise sit in the first pixels.
  double reach = 0, reach_average = 0;
  auto draw = [&](const Trace& trace, const QString& tag, Qt::PenStyle style) {
    for (int l = 0; l < static_cast<int>(trace.layers.size()); ++l) {
      bool exact = false;
      const QVector<double> full = retention(trace, l, pos, horizon_, &exact);
      exact_ += exact && style == Qt::SolidLine;
      // Every distance up to 64, then every 4th: the curves are smooth there and a frame
      // draws 8-16 of them (the CSV export holds what is drawn).
      QVector<double> x, r;
      x.reserve(full.size());
      r.reserve(full.size());
      for (int i = 0; i < full.size(); i += i < 64 ? 1 : 4) { x << i; r << full[i]; }
      if (!full.isEmpty() && x.back() != full.size() - 1) { x << full.size() - 1; r << full.back(); }
      for (int i = r.size() - 1; i >= 0; --i)
        if (r[i] > 1e-6) { reach = std::max(reach, x[i]); break; }
      auto* g = selected_->addGraph();
      g->setName(QStringLiteral("%1L%2%3").arg(tag).arg(l).arg(exact ? QString() : QStringLiteral(" ~")));
      QPen pen(layerColour(l, layers), l == document_->layer() ? 2 : 1, style);
      g->setPen(pen);
      g->setData(x, r, true);
      // A comparison's curves share the layers' colours: only its current layer's is named,
      // or two comparisons' legends would cover the plot.
      const bool named = style == Qt::SolidLine || l == document_->layer();
      if (!named) g->removeFromLegend();
      if (!average_too) continue;
      const double a = std::exp(meanLogDecay(trace, l));
      reach_average = std::max(reach_average, a >= 1.0 ? static_cast<double>(horizon_)
                                              : a > 0 ? std::log(1e-6) / std::log(a) : 0.0);
      QVector<double> xa, ya;
      for (int64_t k = 0; k <= horizon_; k += k < 256 ? 1 : 8) { xa << static_cast<double>(k); ya << std::max(1e-30, std::pow(a, k)); }
      auto* ga = average_->addGraph();
      ga->setName(QStringLiteral("%1L%2 |A|=%3").arg(tag).arg(l).arg(a, 0, 'f', 4));
      ga->setPen(pen);
      ga->setData(xa, ya, true);
      if (!named) ga->removeFromLegend();
    }
  };
  draw(*t, QString(), Qt::SolidLine);
  QStringList styled;
  const auto& others = document_->comparisons();
  for (size_t k = 0; k < others.size(); ++k) {
    draw(*others[k].trace, others[k].label + QStringLiteral(" "), comparisonPen(k));
    styled << QStringLiteral("%1: %2").arg(penName(comparisonPen(k)), others[k].label);
  }
  for (QCustomPlot* p : {selected_, average_}) {
    if (p == average_ && !average_too) continue;
    p->legend->setVisible(true);
    p->legend->setFont(QFont(font().family(), 7));
    p->xAxis->setLabel(tr("distance in tokens"));
    const double r = p == selected_ ? reach : reach_average;
    p->xAxis->setRange(0, std::clamp(r * 1.25, 32.0, static_cast<double>(horizon_)));
    p->yAxis->setRange(1e-6, 1.5);
  }
  selected_->yAxis->setLabel(tr("retention of token %L1").arg(pos));
  average_->yAxis->setLabel(tr("mean decay |A|^k"));
  redraw(selected_, QCustomPlot::rpQueuedReplot);
  if (average_too) redraw(average_, QCustomPlot::rpQueuedReplot);
  caption_->setText(tr("Token %L1 %2: %3 of %4 layers have exact curves (run with retention sources to record more); "
                       "\"~\" marks exp(sum of mean log-decay), an approximation.%5")
                        .arg(pos).arg(document_->context(pos, 3)).arg(exact_).arg(layers)
                        .arg(styled.isEmpty() ? QString() : QStringLiteral(" ") + styled.join(QStringLiteral("; ")) + QLatin1Char('.')));
}

namespace {
// One fidelity result's curves: ETMF per layer and ECLMF per gap from each starting layer.
// Returns how many curves it drew; a malformed record draws nothing (it is only shown).
int drawFidelity(QCustomPlot* plot, const Json& fidelity, const QString& tag, Qt::PenStyle style) {
  int drawn = 0;
  auto curve = [&](const Json& values, const QString& name, const QColor& colour) {
    if (!values.is_array()) return;
    QVector<double> x, y;
    const Json::Array& items = values.as_array();
    for (size_t l = 0; l < items.size(); ++l) {
      if (!items[l].is_number()) continue;
      x << static_cast<double>(l);
      y << items[l].as_double();
    }
    if (x.isEmpty()) return;
    auto* g = plot->addGraph();
    g->setName(tag + name);
    g->setPen(QPen(colour, 1, style));
    g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 5));
    g->setData(x, y, true);
    ++drawn;
  };
  try {
    if (fidelity.contains("etmf_per_layer")) curve(fidelity.at("etmf_per_layer"), QStringLiteral("ETMF"), QColor(68, 1, 84));
    if (fidelity.contains("eclmf") && fidelity.at("eclmf").is_object()) {
      const QColor colours[] = {QColor(33, 145, 140), QColor(94, 201, 98), QColor(220, 170, 20), QColor(200, 80, 160)};
      int k = 0;
      for (const auto& [gap, record] : fidelity.at("eclmf").as_object()) {
        if (record.is_object() && record.contains("per_layer"))
          curve(record.at("per_layer"), QStringLiteral("ECLMF G=%1").arg(QString::fromStdString(gap)), colours[k % 4]);
        ++k;
      }
    }
  } catch (const std::exception&) {
  }
  return drawn;
}

const Json* fidelityOf(const Trace* t) {
  if (!t || !t->run_info.is_object() || !t->run_info.contains("fidelity")) return nullptr;
  const Json& f = t->run_info.at("fidelity");
  return f.is_object() ? &f : nullptr;
}
}  // namespace

void DecayView::refreshFidelity() {
  fidelity_->clearGraphs();
  fidelity_->clearItems();
  const Trace* t = document_->trace();
  int drawn = 0;
  if (const Json* f = fidelityOf(t)) drawn += drawFidelity(fidelity_, *f, QString(), Qt::SolidLine);
  const auto& others = document_->comparisons();
  for (size_t k = 0; k < others.size(); ++k)
    if (const Json* f = fidelityOf(others[k].trace.get()))
      drawn += drawFidelity(fidelity_, *f, others[k].label + QStringLiteral(" "), comparisonPen(k));
  fidelity_->xAxis->setLabel(tr("layer (ECLMF: from this layer to layer + G)"));
  fidelity_->yAxis->setLabel(tr("memory fidelity"));
  fidelity_->xAxis->setRange(-0.5, std::max(1, document_->layers()) - 0.5);
  fidelity_->xAxis->setTicker(QSharedPointer<QCPAxisTickerFixed>(new QCPAxisTickerFixed));
  // ECLMF can go below zero (the regression does worse than predicting nothing): show it all.
  fidelity_->yAxis->setRange(-0.1, 1.05);
  if (drawn > 0) {
    bool found = false;
    double lo = -0.1, hi = 1.05;
    for (int i = 0; i < fidelity_->graphCount(); ++i) {
      const QCPRange r = fidelity_->graph(i)->getValueRange(found);
      if (found) { lo = std::min(lo, r.lower - 0.05); hi = std::max(hi, r.upper + 0.05); }
    }
    fidelity_->yAxis->setRange(lo, hi);
  }
  fidelity_->legend->setVisible(drawn > 0);
  fidelity_->legend->setFont(QFont(font().family(), 7));
  if (drawn == 0 && t) {
    auto* note = new QCPItemText(fidelity_);
    note->position->setType(QCPItemPosition::ptAxisRectRatio);
    note->position->setCoords(0.5, 0.5);
    note->setText(tr("ETMF / ECLMF not measured for this run:\nRun > Measure memory fidelity"));
  }
  redraw(fidelity_, QCustomPlot::rpQueuedReplot);
}

}  // namespace memmamba::views
