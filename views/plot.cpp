#include "views/plot.h"

#include <QResizeEvent>

namespace memmamba::views {

void Plot::resizeEvent(QResizeEvent* event) {
  if (event->size().isEmpty()) {
    setViewport(rect());  // nothing to draw into: the next non-empty size draws
    return;
  }
  QCustomPlot::resizeEvent(event);
}

namespace {
bool has_area(const QCustomPlot* plot) { return !plot->viewport().isEmpty() && !plot->size().isEmpty(); }
}  // namespace

void redraw(QCustomPlot* plot, QCustomPlot::RefreshPriority priority) {
  if (has_area(plot)) plot->replot(priority);
}

void redraw(QCPLayer* layer) {
  if (has_area(layer->parentPlot())) layer->replot();
}

}  // namespace memmamba::views
