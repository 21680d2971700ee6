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

void redraw(QCustomPlot* plot, QCustomPlot::RefreshPriority priority) {
  if (!plot->viewport().isEmpty() && !plot->size().isEmpty()) plot->replot(priority);
}

void redraw(QCPLayer* layer) {
  const QCustomPlot* plot = layer->parentPlot();
  if (!plot->viewport().isEmpty() && !plot->size().isEmpty()) layer->replot();
}

}  // namespace memmamba::views
