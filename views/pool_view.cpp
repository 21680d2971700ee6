#include "views/pool_view.h"
#include "views/plot.h"

#include <QHeaderView>
#include <QLabel>
#include <QSplitter>
#include <QMenu>
#include <QTableWidget>
#include <QToolTip>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <cmath>
#include <limits>

#include "views/trace_document.h"
#include "views/plot_export.h"

namespace memmamba::views {

namespace {
constexpr int kMaxColumns = 2000;  // occupancy map columns (tokens are binned beyond this)
}

PoolView::PoolView(TraceDocument* document, QWidget* parent) : PlotPanel(document, parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  summary_ = new QLabel(this);
  layout->addWidget(summary_);
  auto* split = new QSplitter(Qt::Vertical, this);
  table_ = new QTableWidget(this);
  table_->setColumnCount(5);
  table_->setHorizontalHeaderLabels({tr("Slot"), tr("Note source"), tr("Priority"), tr("Age"), tr("Inserted at")});
  // Fixed widths (sized per trace in fitColumns): "resize to contents" re-measured every
  // row on every frame while scrubbing.
  for (int c : {0, 2, 3, 4}) table_->horizontalHeader()->setSectionResizeMode(c, QHeaderView::Interactive);
  table_->horizontalHeader()->setSectionResizeMode(1, QHeaderView::Stretch);
  table_->verticalHeader()->hide();
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  split->addWidget(table_);
  plot_ = new Plot(this);
  plot_->setObjectName(QStringLiteral("pool-occupancy"));
  plot_->installEventFilter(this);
  table_->viewport()->installEventFilter(this);
  plot_->setMinimumHeight(160);
  split->addWidget(plot_);
  layout->addWidget(split, 1);
  connect(table_, &QTableWidget::cellDoubleClicked, this, [this](int row, int) {
    const auto* item = table_->item(row, 4);
    if (item && !item->text().isEmpty()) document_->setPosition(item->text().toLongLong());
  });
  table_->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(table_, &QTableWidget::customContextMenuRequested, this, [this](const QPoint& at) {
    const Trace* t = document_->trace();
    const int row = table_->rowAt(at.y());
    if (!t || row < 0) return;
    const int layer = document_->layer();
    const int64_t position = document_->position();
    const std::vector<int64_t> pool_notes = document_->poolAt(layer, position);
    if (row >= static_cast<int>(pool_notes.size()) || pool_notes[static_cast<size_t>(row)] < 0) return;
    const NoteInfo& note = t->notes[static_cast<size_t>(pool_notes[static_cast<size_t>(row)])];
    QMenu menu(this);
    const qint64 id = note.local_id;
    menu.addAction(tr("Drop note %1 (never kept) and re-run").arg(id), this,
                   [this, layer, id, position] { Q_EMIT editRequested(QStringLiteral("drop"), layer, id, position); });
    menu.addAction(tr("Remove note %1 after token %L2 and re-run").arg(id).arg(position), this,
                   [this, layer, id, position] { Q_EMIT editRequested(QStringLiteral("drop_after"), layer, id, position); });
    menu.addAction(tr("Pin note %1 (never evicted) and re-run").arg(id), this,
                   [this, layer, id, position] { Q_EMIT editRequested(QStringLiteral("pin"), layer, id, position); });
    menu.exec(table_->viewport()->mapToGlobal(at));
  });
  connect(plot_, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent* e) {
    if (!map_) return;
    document_->setPosition(static_cast<qint64>(plot_->xAxis->pixelToCoord(e->position().x())));
  });
  connect(document_, &TraceDocument::traceChanged, this, [this] { rebuildMap(); fitColumns(); updateSlots(); });
  connect(document_, &TraceDocument::layerChanged, this, [this] { rebuildMap(); updateSlots(); });
  connect(document_, &TraceDocument::positionChanged, this, &PoolView::updateSlots);
  connect(document_, &TraceDocument::comparisonChanged, this, &PoolView::updateSlots);
  setEmptyHint(tr("The state pool of the current layer appears here: open a book (File > Open) or a trace."));
}

int PoolView::slotRows() const { return table_->rowCount(); }

bool PoolView::eventFilter(QObject* watched, QEvent* event) {
  if (event->type() != QEvent::ToolTip || (watched != plot_ && watched != table_->viewport()) || !document_->hasTrace())
    return PlotPanel::eventFilter(watched, event);
  auto* he = static_cast<QHelpEvent*>(event);
  const int layer = document_->layer();
  int64_t position = document_->position();
  int slot = -1;
  if (watched == plot_) {
    if (!map_) return true;
    const double x = plot_->xAxis->pixelToCoord(he->pos().x());
    slot = static_cast<int>(std::lround(plot_->yAxis->pixelToCoord(he->pos().y())));
    if (x < 0 || x >= static_cast<double>(document_->length())) slot = -1;
    position = static_cast<int64_t>(x);
  } else {
    slot = table_->rowAt(he->pos().y());
  }
  const std::vector<int64_t> pool = slot >= 0 ? document_->poolAt(layer, position) : std::vector<int64_t>{};
  if (slot < 0 || slot >= static_cast<int>(pool.size())) {
    QToolTip::hideText();
    return true;
  }
  const int64_t note = pool[static_cast<size_t>(slot)];
  const QString text = note >= 0 ? tr("slot %1 at token %L2<br>").arg(slot).arg(position) + document_->noteStory(note)
                                 : tr("slot %1 at token %L2: empty").arg(slot).arg(position);
  QToolTip::showText(he->globalPos(), text, qobject_cast<QWidget*>(watched));
  return true;
}

std::vector<Figure> PoolView::figures() const { return {{QStringLiteral("pool-occupancy"), plot_}}; }

QString PoolView::csv(const QString& figure, CsvDetail /*every value is drawn*/) const {
  QString out = QStringLiteral("slot,token_begin,token_end,priority\n");
  for (size_t j = 0; j < cells_.size(); ++j)
    for (size_t c = 0; c < cells_[j].size(); ++c) {
      const float v = cells_[j][c];
      out += QStringLiteral("%1,%2,%3,%4\n").arg(j).arg(static_cast<qint64>(c) * bin_).arg(static_cast<qint64>(c + 1) * bin_)
                 .arg(std::isnan(v) ? QString() : QString::number(v, 'g', 6));
    }
  return out;
}

void PoolView::fitColumns() {
  const Trace* t = document_->trace();
  const QFontMetrics fm(table_->font());
  const QString widest = QString(QString::number(t ? std::max<int64_t>(t->length(), 99999) : 99999).size() + 1, QLatin1Char('8'));
  const int pad = 2 * fm.horizontalAdvance(QLatin1Char('M'));
  table_->setColumnWidth(0, std::max(fm.horizontalAdvance(tr("Slot")), fm.horizontalAdvance(QStringLiteral("888"))) + pad);
  table_->setColumnWidth(2, std::max(fm.horizontalAdvance(tr("Priority")), fm.horizontalAdvance(QStringLiteral("8.888"))) + pad);
  table_->setColumnWidth(3, std::max(fm.horizontalAdvance(tr("Age")), fm.horizontalAdvance(widest)) + pad);
  table_->setColumnWidth(4, std::max(fm.horizontalAdvance(tr("Inserted at")), fm.horizontalAdvance(widest)) + pad);
}

void PoolView::rebuildMap() {
  plot_->clearPlottables();
  plot_->clearItems();
  plot_->plotLayout()->clear();
  auto* rect = new QCPAxisRect(plot_);
  plot_->plotLayout()->addElement(0, 0, rect);
  plot_->xAxis = rect->axis(QCPAxis::atBottom);
  plot_->yAxis = rect->axis(QCPAxis::atLeft);
  map_ = nullptr;
  cursor_ = nullptr;
  cells_.clear();
  columns_ = 0;
  const Trace* t = document_->trace();
  if (!t || t->length() == 0 || t->pool_slots == 0) {
    applyPlotPalette(plot_, palette());  // the new axis rect starts with default colours
    return;
  }
  const int layer = document_->layer();
  const int64_t T = t->length(), K = t->pool_slots;
  bin_ = std::max<int64_t>(1, (T + kMaxColumns - 1) / kMaxColumns);
  columns_ = static_cast<int>((T + bin_ - 1) / bin_);
  cells_.assign(static_cast<size_t>(K), std::vector<float>(static_cast<size_t>(columns_), std::nanf("")));
  // Walk the layer's events once: each slot holds a note over [insert+1, evict].
  std::vector<int64_t> held(static_cast<size_t>(K), -1), since(static_cast<size_t>(K), 0);
  auto fill = [&](int64_t slot, int64_t note, int64_t from, int64_t to) {
    if (note < 0 || from >= to) return;
    const float p = t->notes[note].priority;
    for (int64_t c = from / bin_; c <= (to - 1) / bin_ && c < columns_; ++c) cells_[slot][c] = p;
  };
  for (const PoolEvent& e : t->events) {
    if (e.layer != layer || e.slot < 0 || e.slot >= K) continue;
    if (e.kind == 0) {  // insert (an evict before it closes the old interval)
      fill(e.slot, held[e.slot], since[e.slot], e.position + 1);
      held[e.slot] = e.note;
      since[e.slot] = e.position + 1;
    }
  }
  for (int64_t j = 0; j < K; ++j) fill(j, held[j], since[j], T);

  map_ = new QCPColorMap(plot_->xAxis, plot_->yAxis);
  map_->data()->setSize(columns_, static_cast<int>(K));
  map_->data()->setRange(QCPRange(0, static_cast<double>(T)), QCPRange(0, static_cast<double>(K - 1)));
  for (int j = 0; j < K; ++j)
    for (int c = 0; c < columns_; ++c) map_->data()->setCell(c, j, cells_[j][c]);
  QCPColorGradient g;
  applyViridis(g);
  g.setNanHandling(QCPColorGradient::nhTransparent);
  map_->setGradient(g);
  map_->setDataRange(QCPRange(0, 1));
  auto* scale = new QCPColorScale(plot_);
  plot_->plotLayout()->addElement(0, 1, scale);
  scale->setLabel(tr("note priority"));
  map_->setColorScale(scale);
  map_->setGradient(g);
  map_->setDataRange(QCPRange(0, 1));
  plot_->xAxis->setLabel(tr("token position"));
  plot_->yAxis->setLabel(tr("slot (layer %1)").arg(layer));
  plot_->xAxis->setRange(0, static_cast<double>(T));
  plot_->yAxis->setRange(-0.5, static_cast<double>(K) - 0.5);
  // The cursor lives on a buffered layer of its own: moving it repaints that layer only,
  // not the whole occupancy map.
  if (!plot_->layer(QStringLiteral("cursor"))) plot_->addLayer(QStringLiteral("cursor"), nullptr, QCustomPlot::limAbove);
  plot_->layer(QStringLiteral("cursor"))->setMode(QCPLayer::lmBuffered);
  cursor_ = new QCPItemStraightLine(plot_);
  markAsCursor(cursor_);
  cursor_->setLayer(QStringLiteral("cursor"));
  cursor_->setPen(QPen(QColor(230, 40, 80), 2));
  plot_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
  rect->setRangeDrag(Qt::Horizontal);
  rect->setRangeZoom(Qt::Horizontal);
  applyPlotPalette(plot_, palette());  // the new axis rect and colour scale start with default colours
}

void PoolView::updateSlots() {
  const Trace* t = document_->trace();
  occupied_ = changed_ = 0;
  if (!t || t->length() == 0) {
    table_->setRowCount(0);
    summary_->clear();
    redraw(plot_);
    return;
  }
  const int layer = document_->layer();
  const int64_t pos = document_->position();
  // The pool the current token attends to (notes made before it).
  const std::vector<int64_t> pool = document_->poolAt(layer, pos);
  // "Changed since the last frame" means a step forward through the run (a playback frame,
  // an arrow key): a jump (opening a trace at token 2,000, a chapter, a click far away) or
  // a step back would paint every slot as new.
  const bool comparable = layer == previous_layer_ && previous_.size() == pool.size() && pos > previous_position_ &&
                          pos - previous_position_ <= kLargestComparedStep;
  // Beside an edited run, the pool of the run it is compared with (same tokens, a memory):
  // the slot as it was "before the edits".
  const Trace* other = document_->comparison();
  const bool beside = other && other->length() == t->length() && other->pool_slots == t->pool_slots &&
                      !other->notes.empty() && layer < static_cast<int>(other->layers.size());
  const std::vector<int64_t> other_pool = beside ? other->pool_at(layer, pos) : std::vector<int64_t>{};
  const int columns = beside ? 6 : 5;
  if (table_->columnCount() != columns) {
    table_->setColumnCount(columns);
    if (beside) table_->setHorizontalHeaderItem(5, new QTableWidgetItem(document_->comparisonLabel()));
  } else if (beside && table_->horizontalHeaderItem(5)->text() != document_->comparisonLabel()) {
    table_->horizontalHeaderItem(5)->setText(document_->comparisonLabel());
  }
  table_->setRowCount(static_cast<int>(pool.size()));
  const QColor flash = palette().color(QPalette::Base).lightness() < 128 ? QColor(40, 110, 50) : QColor(190, 240, 190);
  for (int j = 0; j < static_cast<int>(pool.size()); ++j) {
    const int64_t note = pool[j];
    const bool changed = comparable && previous_[j] != note;
    changed_ += changed;
    QStringList cells;
    if (note >= 0) {
      ++occupied_;
      const NoteInfo& n = t->notes[note];
      const int64_t inserted = n.sources.empty() ? n.window : n.sources.back();
      cells = {QString::number(j), document_->noteLabel(note), QString::number(n.priority, 'f', 3),
               QString::number(pos - inserted), QString::number(inserted)};
      if (changed && previous_[j] >= 0) cells[1] += tr("   (replaced: %1)").arg(document_->noteLabel(previous_[j]));
    } else {
      cells = {QString::number(j), tr("(empty)"), QString(), QString(), QString()};
    }
    if (beside) {
      const int64_t was = j < static_cast<int>(other_pool.size()) ? other_pool[j] : -1;
      QString cell = tr("(empty)");
      if (was >= 0) {
        const NoteInfo& n = other->notes[static_cast<size_t>(was)];
        cell = n.sources.empty() ? tr("note %1").arg(was)
                                 : QStringLiteral("@%1 %2").arg(n.sources.front()).arg(document_->context(n.sources.front(), 3));
      }
      const bool same = (was < 0 && note < 0) ||
                        (was >= 0 && note >= 0 && other->notes[static_cast<size_t>(was)].sources == t->notes[note].sources);
      cells << (same ? tr("same") : cell);
    }
    for (int c = 0; c < columns; ++c) {
      auto* item = table_->item(j, c);
      if (!item) { item = new QTableWidgetItem; table_->setItem(j, c, item); }
      if (item->text() != cells[c]) item->setText(cells[c]);  // unchanged cells cost no relayout
      const QBrush background = changed ? QBrush(flash) : QBrush();
      if (item->background() != background) item->setBackground(background);
    }
  }
  previous_ = pool;
  previous_layer_ = layer;
  previous_position_ = pos;
  summary_->setText(tr("Layer %1 at token %L2: %3 of %4 slots hold notes; %5 changed since the last frame")
                        .arg(layer).arg(pos).arg(occupied_).arg(pool.size()).arg(changed_));
  if (cursor_) {
    cursor_->point1->setCoords(static_cast<double>(pos), 0);
    cursor_->point2->setCoords(static_cast<double>(pos), 1);
    redraw(cursor_->layer());
  } else {
    redraw(plot_, QCustomPlot::rpQueuedReplot);
  }
}

}  // namespace memmamba::views
