#include "views/plot_panel.h"

#include <qcustomplot.h>

#include "views/trace_document.h"

namespace memmamba::views {

PlotPanel::PlotPanel(TraceDocument* document, QWidget* parent) : QWidget(parent), document_(document) {}

void applyViridis(QCPColorGradient& gradient) {
  gradient.clearColorStops();
  gradient.setColorStopAt(0.0, QColor(68, 1, 84));
  gradient.setColorStopAt(0.25, QColor(59, 82, 139));
  gradient.setColorStopAt(0.5, QColor(33, 145, 140));
  gradient.setColorStopAt(0.75, QColor(94, 201, 98));
  gradient.setColorStopAt(1.0, QColor(253, 231, 37));
}

}  // namespace memmamba::views
