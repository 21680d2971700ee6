#include "views/attention_view.h"
#include "views/plot.h"

#include <limits>

#include <QLabel>
#include <qcustomplot.h>

#include <algorithm>

#include "views/trace_document.h"
#include "views/plot_export.h"

namespace memmamba::views {

AttentionView::AttentionView(TraceDocument* document, QWidget* parent) : PlotPanel(document, parent) {
  caption_ = captionOverTwoPlots(Qt::Vertical, QStringLiteral("attention-token-slot"), heat_,
                                 QStringLiteral("attention-sources"), sources_);
  connect(sources_, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent* e) {
    document_->setPosition(static_cast<qint64>(std::lround(sources_->xAxis->pixelToCoord(e->position().x()))));
  });
  connect(heat_, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent* e) {
    document_->setPosition(static_cast<qint64>(std::lround(heat_->yAxis->pixelToCoord(e->position().y()))));
  });
  connect(document_, &TraceDocument::traceChanged, this, &AttentionView::refresh);
  connect(document_, &TraceDocument::layerChanged, this, &AttentionView::refresh);
  connect(document_, &TraceDocument::positionChanged, this, &AttentionView::refresh);
  connect(document_, &TraceDocument::comparisonChanged, this, &AttentionView::refresh);
  setEmptyHint(tr("What each token reads from the pool appears here: open a book (File > Open) or a trace."));
}

std::vector<Figure> AttentionView::figures() const {
  return {{QStringLiteral("attention-token-slot"), heat_}, {QStringLiteral("attention-sources"), sources_}};
}

QString AttentionView::csv(const QString& figure, CsvDetail /*every value is drawn*/) const {
  const Trace* t = document_->trace();
  if (!t) return {};
  const int layer = document_->layer();
  const int64_t pos = document_->position();
  QString out = QStringLiteral("kind,token,pool_layer,slot,note,source_position,weight\n");
  auto rows_of = [&](const AttentionRows& rows, const QString& kind, int64_t from, int64_t to) {
    for (size_t r = 0; r < rows.rows(); ++r) {
      if (rows.token[r] < from || rows.token[r] > to) continue;
      for (int64_t e = rows.offset[r]; e < rows.offset[r + 1]; ++e) {
        const int64_t note = rows.note[e];
        const int64_t src = note >= 0 && !t->notes[note].sources.empty() ? t->notes[note].sources.front() : -1;
        out += QStringLiteral("%1,%2,%3,%4,%5,%6,%7\n").arg(kind).arg(rows.token[r]).arg(rows.layer[e]).arg(rows.slot[e])
                   .arg(note).arg(src).arg(rows.weight[e], 0, 'g', 6);
      }
    }
  };
  if (figure == QLatin1String("attention-token-slot")) {
    rows_of(t->layers[layer].token_attention, QStringLiteral("token"), pos - window_, pos);
  } else {
    rows_of(t->layers[layer].token_attention, QStringLiteral("token"), pos, pos);
    rows_of(t->layers[layer].layer_attention, QStringLiteral("cross-layer"), pos, pos);
  }
  return out;
}

void AttentionView::refresh() {
  heat_->clearPlottables();
  heat_->clearItems();
  sources_->clearPlottables();
  sources_->clearItems();
  heat_rows_ = source_bars_ = 0;
  const Trace* t = document_->trace();
  if (!t || t->length() == 0) { redraw(heat_); redraw(sources_); caption_->clear(); return; }
  const int layer = document_->layer();
  const int64_t pos = document_->position(), K = std::max<int64_t>(1, t->pool_slots);
  const AttentionRows& rows = t->layers[layer].token_attention;

  // Token -> slot heatmap over the last `window_` tokens.
  const int64_t first = std::max<int64_t>(0, pos - window_ + 1);
  auto* map = new QCPColorMap(heat_->xAxis, heat_->yAxis);
  const int n = static_cast<int>(pos - first + 1);
  map->data()->setSize(static_cast<int>(K), n);
  map->data()->setRange(QCPRange(0, static_cast<double>(K - 1)), QCPRange(static_cast<double>(first), static_cast<double>(pos)));
  // A slot the row did not record (empty, or below the kept top-k) is blank, not weight 0.
  map->data()->fill(std::numeric_limits<double>::quiet_NaN());
  for (int64_t tok = first; tok <= pos; ++tok) {
    const int64_t r = rows.find(tok);
    if (r < 0) continue;
    ++heat_rows_;
    for (int64_t e = rows.offset[r]; e < rows.offset[r + 1]; ++e)
      if (rows.slot[e] >= 0 && rows.slot[e] < K) map->data()->setCell(rows.slot[e], static_cast<int>(tok - first), rows.weight[e]);
  }
  QCPColorGradient g;
  applyViridis(g);
  g.setNanHandling(QCPColorGradient::nhTransparent);
  if (!heat_scale_) {  // made once: the layout keeps it across refreshes
    heat_scale_ = new QCPColorScale(heat_);
    heat_->plotLayout()->addElement(0, 1, heat_scale_);
    heat_scale_->setLabel(tr("attention weight (blank: not recorded)"));
    applyPlotPalette(heat_, palette());  // a scale made after a palette switch starts black
  }
  map->setColorScale(heat_scale_);
  map->setGradient(g);
  map->setDataRange(QCPRange(0, 1));
  map->setInterpolate(false);
  heat_->xAxis->setLabel(tr("pool slot (layer %1)").arg(layer));
  heat_->yAxis->setLabel(tr("token (attention rows recorded)"));
  heat_->xAxis->setRange(-0.5, static_cast<double>(K) - 0.5);
  heat_->yAxis->setRange(static_cast<double>(first) - 0.5, static_cast<double>(pos) + 0.5);
  heat_->yAxis->setRangeReversed(true);
  redraw(heat_, QCustomPlot::rpQueuedReplot);

  // The current token's weights by source position.
  auto bars = [&](const Trace& from, const AttentionRows& rr, const QColor& colour, const QString& name, bool outline) {
    const int64_t r = rr.find(pos);
    if (r < 0) return 0.0;
    QVector<double> x, y;
    double on_total = 0;
    for (int64_t e = rr.offset[r]; e < rr.offset[r + 1]; ++e) {
      const int64_t note = rr.note[e];
      if (note < 0 || from.notes[note].sources.empty()) continue;
      x << static_cast<double>(from.notes[note].sources.front());
      y << rr.weight[e];
      on_total += rr.weight[e];
    }
    auto* b = new QCPBars(sources_->xAxis, sources_->yAxis);
    b->setName(name);
    b->setPen(QPen(colour, outline ? 2 : 1));
    b->setBrush(outline ? QBrush(Qt::NoBrush) : QBrush(colour));
    b->setWidthType(QCPBars::wtAbsolute);
    b->setWidth(outline ? 7 : 3);
    b->setData(x, y);
    source_bars_ += static_cast<int>(x.size());
    return on_total;
  };
  bars(*t, rows, QColor(33, 145, 140), tr("cross-token"), false);
  bars(*t, t->layers[layer].layer_attention, QColor(200, 80, 160), tr("cross-layer"), false);
  // The comparison run (before the memory edits, or Mamba-only) at the same token, outlined:
  // what the edit changed in the reads.
  const Trace* other = document_->comparison();
  compared_bars_ = 0;
  if (other && other->length() > pos && layer < static_cast<int>(other->layers.size())) {
    const int before = source_bars_;
    bars(*other, other->layers[layer].token_attention, QColor(33, 145, 140),
         tr("cross-token, %1").arg(document_->comparisonLabel()), true);
    bars(*other, other->layers[layer].layer_attention, QColor(200, 80, 160),
         tr("cross-layer, %1").arg(document_->comparisonLabel()), true);
    compared_bars_ = source_bars_ - before;
    source_bars_ = before;
  }
  sources_->legend->setVisible(true);
  sources_->xAxis->setLabel(tr("source position of the attended note (current token %L1)").arg(pos));
  sources_->yAxis->setLabel(tr("weight"));
  sources_->xAxis->setRange(0, static_cast<double>(std::max<int64_t>(pos, 1)));
  sources_->yAxis->setRange(0, 1.05);
  auto* now = new QCPItemStraightLine(sources_);
  markAsCursor(now);
  now->point1->setCoords(static_cast<double>(pos), 0);
  now->point2->setCoords(static_cast<double>(pos), 1);
  now->setPen(QPen(QColor(230, 40, 80), 1, Qt::DashLine));
  redraw(sources_, QCustomPlot::rpQueuedReplot);

  const bool triggered = (t->layers[layer].flags[pos] & kTriggered) != 0;
  const int64_t r = rows.find(pos);
  QString top;
  if (r >= 0) {
    int64_t best = -1;
    float w = -1;
    for (int64_t e = rows.offset[r]; e < rows.offset[r + 1]; ++e)
      if (rows.weight[e] > w) { w = rows.weight[e]; best = rows.note[e]; }
    top = tr("strongest: %1 (%2)").arg(document_->noteLabel(best)).arg(w, 0, 'f', 3);
  }
  caption_->setText(tr("Token %L1 %2 in layer %3. %4").arg(pos).arg(document_->context(pos, 3))
                        .arg(layer).arg(triggered ? (r >= 0 ? top : tr("triggered, no row recorded (outside the detail range or pool empty)"))
                                                  : tr("retrieval not triggered: no cross-token attention")));
}

}  // namespace memmamba::views
