#include "views/plot_panel.h"
#include "views/plot.h"

#include <QEvent>
#include <QLabel>
#include <QSplitter>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include "views/trace_document.h"

namespace memmamba::views {

PlotPanel::PlotPanel(TraceDocument* document, QWidget* parent) : QWidget(parent), document_(document) {}

void PlotPanel::setEmptyHint(const QString& text) {
  if (!empty_hint_) {
    empty_hint_ = new QLabel(this);
    empty_hint_->setAlignment(Qt::AlignCenter);
    empty_hint_->setWordWrap(true);
    empty_hint_->setAutoFillBackground(true);
    empty_hint_->setMargin(24);
    connect(document_, &TraceDocument::traceChanged, this, &PlotPanel::syncEmptyHint);
  }
  empty_hint_->setText(text);
  syncEmptyHint();
}

bool PlotPanel::showsEmptyHint() const { return empty_hint_ && !empty_hint_->isHidden(); }

void PlotPanel::syncEmptyHint() {
  if (!empty_hint_) return;
  empty_hint_->setGeometry(rect());
  empty_hint_->setVisible(!document_->hasTrace());
  empty_hint_->raise();
}

void PlotPanel::resizeEvent(QResizeEvent* event) {
  QWidget::resizeEvent(event);
  if (empty_hint_) empty_hint_->setGeometry(rect());
}

void PlotPanel::changeEvent(QEvent* event) {
  QWidget::changeEvent(event);
  if (event->type() != QEvent::PaletteChange) return;
  for (const Figure& f : figures())
    if (f.plot) applyPlotPalette(f.plot, palette());
}

void applyPlotPalette(QCustomPlot* plot, const QPalette& palette) {
  const QColor fg = palette.color(QPalette::WindowText), bg = palette.color(QPalette::Base);
  plot->setBackground(bg);
  auto colour_axis = [&](QCPAxis* a) {
    if (!a) return;
    a->setBasePen(QPen(fg));
    a->setTickPen(QPen(fg));
    a->setSubTickPen(QPen(fg));
    a->setTickLabelColor(fg);
    a->setLabelColor(fg);
  };
  auto colour_legend = [&](QCPLegend* legend) {
    legend->setBrush(bg);
    legend->setTextColor(fg);
    legend->setBorderPen(QPen(fg));
  };
  for (QCPAxisRect* rect : plot->axisRects()) {
    for (QCPAxis* a : rect->axes()) colour_axis(a);
    QCPLayoutInset* insets = rect->insetLayout();
    for (int i = 0; i < insets->elementCount(); ++i)
      if (auto* legend = qobject_cast<QCPLegend*>(insets->elementAt(i))) colour_legend(legend);
  }
  for (QCPLayoutElement* e : plot->plotLayout()->elements(true)) {
    if (auto* scale = qobject_cast<QCPColorScale*>(e)) colour_axis(scale->axis());
    if (auto* legend = qobject_cast<QCPLegend*>(e)) colour_legend(legend);
    if (auto* title = qobject_cast<QCPTextElement*>(e)) title->setTextColor(fg);
  }
  redraw(plot);
}

QLabel* PlotPanel::captionOverTwoPlots(Qt::Orientation orientation, const QString& first_name, QCustomPlot*& first,
                                       const QString& second_name, QCustomPlot*& second) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  auto* caption = new QLabel(this);
  caption->setWordWrap(true);
  caption->setTextFormat(Qt::PlainText);
  layout->addWidget(caption);
  auto* split = new QSplitter(orientation, this);
  first = new Plot(this);
  first->setObjectName(first_name);
  second = new Plot(this);
  second->setObjectName(second_name);
  split->addWidget(first);
  split->addWidget(second);
  layout->addWidget(split, 1);
  return caption;
}

void applyViridis(QCPColorGradient& gradient) {
  gradient.clearColorStops();
  gradient.setColorStopAt(0.0, QColor(68, 1, 84));
  gradient.setColorStopAt(0.25, QColor(59, 82, 139));
  gradient.setColorStopAt(0.5, QColor(33, 145, 140));
  gradient.setColorStopAt(0.75, QColor(94, 201, 98));
  gradient.setColorStopAt(1.0, QColor(253, 231, 37));
}

}  // namespace memmamba::views
