#include "views/loss_difference_view.h"
#include "views/plot.h"

#include <QLabel>
#include <QRegularExpression>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <algorithm>
#include <cmath>

#include "views/plot_export.h"
#include "views/trace_document.h"

namespace memmamba::views {

namespace {

// The comparison can be drawn against the trace when both ran the same tokens.
bool sameTokens(const Trace* a, const Trace* b) {
  return a && b && a->length() > 0 && a->tokens == b->tokens && a->loss.size() == b->loss.size();
}

// Positions the trace's memory edits name (run_info "memory_edits"), for the marks.
std::vector<int64_t> editPositions(const Trace& t) {
  std::vector<int64_t> out;
  if (!t.run_info.is_object() || !t.run_info.contains("memory_edits") || !t.run_info.at("memory_edits").is_array()) return out;
  for (const Json& e : t.run_info.at("memory_edits").as_array()) {
    if (!e.is_object()) continue;
    for (const char* key : {"position", "begin", "end"})
      if (e.contains(key) && e.at(key).is_integer()) out.push_back(e.at(key).as_int());
  }
  return out;
}

// Per token where both runs have a finite loss: its position and the difference, with the
// two runs' sums (for their means).
struct LossDifferences {
  QVector<double> x, diff;
  double sum_a = 0, sum_b = 0;
};

LossDifferences differences(const Trace& a_run, const Trace& b_run) {
  LossDifferences d;
  for (size_t i = 0; i < a_run.loss.size(); ++i) {
    const double a = a_run.loss[i], b = b_run.loss[i];
    if (!std::isfinite(a) || !std::isfinite(b)) continue;
    d.x << static_cast<double>(i);
    d.diff << a - b;
    d.sum_a += a;
    d.sum_b += b;
  }
  return d;
}

// A centred moving average over `window` differences, drawn every `stride`-th window.
void movingAverage(const LossDifferences& d, int window, int stride, QVector<double>& mean_x, QVector<double>& mean) {
  double sum = 0;
  for (int i = 0; i < d.diff.size(); ++i) {
    sum += d.diff[i];
    if (i >= window) sum -= d.diff[i - window];
    if (i >= window - 1 && (i - (window - 1)) % stride == 0) {
      mean_x << d.x[i - window / 2];
      mean << sum / window;
    }
  }
}

// About 200 windows across the compared tokens, at least 16 and at most 1,024 tokens each;
// drawn at most `max_points` times (a book's 160k points would weigh megabytes in a vector
// figure and look the same).
int windowFor(int compared) { return std::clamp(compared / 200, 16, 1024); }
int strideFor(int compared, int max_points) { return std::max(1, (compared + max_points - 1) / max_points); }

}  // namespace

LossDifferenceView::LossDifferenceView(TraceDocument* document, QWidget* parent) : PlotPanel(document, parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  caption_ = new QLabel(this);
  caption_->setWordWrap(true);
  caption_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  plot_ = new Plot(this);
  plot_->setObjectName(QStringLiteral("loss-difference"));
  plot_->setMinimumHeight(140);
  // The legend under the plot, outside the data, two entries a row in a smaller type: with
  // three runs compared a column-wide figure (252 pt) has no room for them side by side.
  plot_->axisRect()->insetLayout()->take(plot_->legend);
  plot_->plotLayout()->addElement(1, 0, plot_->legend);
  plot_->plotLayout()->setRowStretchFactor(1, 0.001);
  plot_->legend->setFillOrder(QCPLegend::foColumnsFirst);
  plot_->legend->setWrap(2);
  QFont legend_font = plot_->legend->font();
  legend_font.setPointSizeF(legend_font.pointSizeF() * 0.85);
  plot_->legend->setFont(legend_font);
  plot_->legend->setMargins(QMargins(4, 2, 4, 2));
  layout->addWidget(caption_);
  layout->addWidget(plot_, 1);
  connect(plot_, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent* e) {
    document_->setPosition(static_cast<qint64>(std::lround(plot_->xAxis->pixelToCoord(e->position().x()))));
  });
  connect(document_, &TraceDocument::traceChanged, this, &LossDifferenceView::rebuild);
  connect(document_, &TraceDocument::comparisonChanged, this, &LossDifferenceView::rebuild);
  connect(document_, &TraceDocument::positionChanged, this, &LossDifferenceView::moveCursor);
  setEmptyHint(tr("Where an edit changed the predictions appears here: open a book, then drop, pin or plant a note "
                  "(right-click the state pool or the book), or run File > Compare with Mamba-only."));
  rebuild();
}

std::vector<Figure> LossDifferenceView::figures() const { return {{QStringLiteral("loss-difference"), plot_}}; }

QString LossDifferenceView::caption() const { return caption_->text(); }

QString LossDifferenceView::csv(const QString&, CsvDetail detail) const {
  const Trace* t = document_->trace();
  const Trace* c = document_->comparison();
  // As drawn: the moving average and the per-token points or the band of their middle half.
  if (detail == CsvDetail::Figure)
    return graphsCsv(plot_, sameTokens(t, c) ? series_ : QStringList(), QStringLiteral("token"), QStringLiteral("difference"));
  // Every further comparison of the same tokens adds its loss as a column (empty where not finite).
  std::vector<const Trace*> extra;
  QString header = QStringLiteral("token,loss,comparison_loss,difference");
  const auto& others = document_->comparisons();
  for (size_t k = 1; k < others.size(); ++k)
    if (sameTokens(t, others[k].trace.get())) {
      extra.push_back(others[k].trace.get());
      header += QStringLiteral(",comparison_%1_loss").arg(extra.size() + 1);
    }
  QString out = header + QLatin1Char('\n');
  if (!sameTokens(t, c)) return out;
  for (size_t i = 0; i < t->loss.size(); ++i) {
    const double a = t->loss[i], b = c->loss[i];
    if (!std::isfinite(a) || !std::isfinite(b)) continue;
    out += QStringLiteral("%1,%2,%3,%4").arg(i).arg(a, 0, 'g', 7).arg(b, 0, 'g', 7).arg(a - b, 0, 'g', 7);
    for (const Trace* o : extra)
      out += std::isfinite(o->loss[i]) ? QStringLiteral(",%1").arg(o->loss[i], 0, 'g', 7) : QStringLiteral(",");
    out += QLatin1Char('\n');
  }
  return out;
}

void LossDifferenceView::rebuild() {
  plot_->clearGraphs();
  plot_->clearItems();
  series_.clear();
  compared_ = 0;
  const Trace* t = document_->trace();
  const Trace* c = document_->comparison();
  // Axes only with something on them: until then the caption says what will appear.
  plot_->setVisible(sameTokens(t, c));
  if (!t) {
    caption_->clear();
    redraw(plot_);
    return;
  }
  if (!c) {
    caption_->setText(tr("No comparison yet: edit the memory (right-click the state pool or the book) or run File > "
                         "Compare with Mamba-only, and the change in each token's loss is drawn here."));
    redraw(plot_);
    return;
  }
  if (!sameTokens(t, c)) {
    caption_->setText(tr("The comparison (%1) ran other tokens than this trace: nothing to compare token by token.")
                          .arg(document_->comparisonLabel()));
    redraw(plot_);
    return;
  }
  const LossDifferences primary = differences(*t, *c);
  const QVector<double>& x = primary.x;
  const QVector<double>& diff = primary.diff;
  const double sum_a = primary.sum_a, sum_b = primary.sum_b;
  int64_t largest_at = -1;
  double largest = 0;
  for (int i = 0; i < diff.size(); ++i)
    if (std::abs(diff[i]) > std::abs(largest)) {
      largest = diff[i];
      largest_at = static_cast<int64_t>(x[i]);
    }
  compared_ = static_cast<int>(x.size());
  // A centred moving average: single tokens swing by nats, the trend is what an edit moves.
  const int window = windowFor(compared_);
  average_window_ = window;
  QVector<double> mean_x, mean;
  movingAverage(primary, window, strideFor(compared_, kMaxPoints), mean_x, mean);
  // The raw spread: every token while they are few, else the middle half of each bin's
  // changes as a band (a book has 100k tokens; a vector figure of each would weigh megabytes,
  // and single tokens swing by nats either way).
  const int bin = compared_ <= kMaxPoints ? 1 : (compared_ + kBandBins - 1) / kBandBins;
  if (bin == 1) {
    auto* raw = plot_->addGraph();
    raw->setName(tr("per token"));
    raw->setLineStyle(QCPGraph::lsNone);
    raw->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, QColor(120, 120, 120, 90), 2));
    raw->setData(x, diff, true);
    series_ << QStringLiteral("per_token");
  } else {
    QVector<double> bx, lo_v, hi_v;
    for (int i = 0; i < compared_; i += bin) {
      const int end = std::min(compared_, i + bin);
      std::vector<double> values(diff.begin() + i, diff.begin() + end);
      auto quantile = [&values](double q) {
        auto at = values.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(values.size() - 1));
        std::nth_element(values.begin(), at, values.end());
        return *at;
      };
      bx << 0.5 * (x[i] + x[end - 1]);
      lo_v << quantile(0.25);
      hi_v << quantile(0.75);
    }
    auto* low = plot_->addGraph();
    auto* high = plot_->addGraph();
    const QColor band(120, 120, 120, 70);
    for (QCPGraph* g : {low, high}) g->setPen(QPen(band, 1));
    high->setBrush(band);
    high->setChannelFillGraph(low);
    low->setData(bx, lo_v, true);
    high->setData(bx, hi_v, true);
    high->setName(tr("middle half of each %1 tokens").arg(bin));
    series_ << QStringLiteral("quartile_1_of_%1_tokens").arg(bin) << QStringLiteral("quartile_3_of_%1_tokens").arg(bin);
    low->removeFromLegend();
  }
  const auto& others = document_->comparisons();
  auto* avg = plot_->addGraph();
  avg->setName(others.size() > 1 ? tr("mean of %1, minus %2").arg(window).arg(others.front().label)
                                 : tr("mean over %1 tokens").arg(window));
  avg->setPen(QPen(QColor(200, 60, 60), 2));
  avg->setData(mean_x, mean, true);
  series_ << QStringLiteral("mean_of_%1_tokens").arg(window);
  // Further comparisons of the same tokens (Mamba-only and DeciMamba beside MemMamba): their
  // moving averages alone, so that the three ways compare along the book.
  double lo = -0.05, hi = 0.05;
  QString others_caption;
  const QColor extra_colours[] = {QColor(20, 140, 130), QColor(130, 70, 190), QColor(200, 140, 20)};
  for (size_t k = 1; k < others.size(); ++k) {
    const Trace* o = others[k].trace.get();
    if (!sameTokens(t, o)) {
      others_caption += tr(" %1 ran other tokens: not drawn.").arg(others[k].label);
      continue;
    }
    const LossDifferences other = differences(*t, *o);
    const double sum_t = other.sum_a, sum_o = other.sum_b;
    const int n = static_cast<int>(other.x.size());
    // Its own window: DeciMamba has a loss only at the tokens it kept to the end, far fewer.
    const int other_window = windowFor(n);
    QVector<double> mx, my;
    movingAverage(other, other_window, strideFor(n, kMaxPoints), mx, my);
    for (double v : my) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    auto* g = plot_->addGraph();
    g->setName(tr("mean of %1, minus %2").arg(other_window).arg(others[k].label));
    g->setPen(QPen(extra_colours[(k - 1) % 3], 2));
    g->setData(mx, my, true);
    QString slug = others[k].label.toLower();
    slug.replace(QRegularExpression(QStringLiteral("[^a-z0-9]+")), QStringLiteral("_"));
    series_ << QStringLiteral("mean_of_%1_tokens_minus_%2").arg(other_window).arg(slug);
    if (n > 0)
      others_caption += tr(" Against %1 (%L5 tokens with a loss in both): mean %2 nats (%3%4).")
                            .arg(others[k].label)
                            .arg(sum_o / n, 0, 'f', 4)
                            .arg(sum_t - sum_o >= 0 ? QStringLiteral("+") : QString())
                            .arg((sum_t - sum_o) / n, 0, 'f', 4)
                            .arg(n);
  }
  auto* zero = new QCPItemStraightLine(plot_);
  zero->point1->setCoords(0, 0);
  zero->point2->setCoords(1, 0);
  zero->setPen(QPen(QColor(128, 128, 128), 1, Qt::DashLine));
  for (int64_t p : editPositions(*t)) {
    auto* mark = new QCPItemStraightLine(plot_);
    mark->point1->setCoords(static_cast<double>(p), 0);
    mark->point2->setCoords(static_cast<double>(p), 1);
    mark->setPen(QPen(QColor(40, 120, 200), 1, Qt::DotLine));
  }
  auto* cursor = new QCPItemStraightLine(plot_);
  markAsCursor(cursor);
  cursor->setPen(QPen(QColor(230, 40, 80), 1, Qt::DashLine));
  plot_->legend->setVisible(true);
  plot_->xAxis->setLabel(tr("token"));
  plot_->yAxis->setLabel(tr("loss change (nats)"));
  plot_->xAxis->setRange(0, std::max(1.0, static_cast<double>(t->length() - 1)));
  // The averages' range, with room around them: the raw points' outliers would flatten them.
  for (double v : mean) { lo = std::min(lo, v); hi = std::max(hi, v); }
  const double pad = 0.15 * (hi - lo);
  plot_->yAxis->setRange(lo - pad, hi + pad);
  const double mean_a = compared_ ? sum_a / compared_ : 0, mean_b = compared_ ? sum_b / compared_ : 0;
  caption_->setText(tr("Loss of this run minus that of the comparison (%3), per token. Mean %1 nats against %2 (%4%5); the largest "
                       "change at token %L6 (%7%8 nats). Red: the mean over %9 tokens; dotted blue: the edits' positions.")
                        .arg(mean_a, 0, 'f', 4)
                        .arg(mean_b, 0, 'f', 4)
                        .arg(document_->comparisonLabel())
                        .arg(mean_a - mean_b >= 0 ? QStringLiteral("+") : QString())
                        .arg(mean_a - mean_b, 0, 'f', 4)
                        .arg(largest_at)
                        .arg(largest >= 0 ? QStringLiteral("+") : QString())
                        .arg(largest, 0, 'f', 2)
                        .arg(window) + others_caption);
  moveCursor();
}

void LossDifferenceView::moveCursor() {
  for (int i = 0; i < plot_->itemCount(); ++i) {
    auto* line = qobject_cast<QCPItemStraightLine*>(plot_->item(i));
    if (!line || !line->property("position_cursor").toBool()) continue;
    const double p = static_cast<double>(document_->position());
    line->point1->setCoords(p, 0);
    line->point2->setCoords(p, 1);
  }
  redraw(plot_, QCustomPlot::rpQueuedReplot);
}

}  // namespace memmamba::views
