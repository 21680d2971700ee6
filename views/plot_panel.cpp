#include "views/plot_panel.h"

#include <QLabel>
#include <QSplitter>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include "views/trace_document.h"

namespace memmamba::views {

PlotPanel::PlotPanel(TraceDocument* document, QWidget* parent) : QWidget(parent), document_(document) {}

QLabel* PlotPanel::captionOverTwoPlots(Qt::Orientation orientation, const QString& first_name, QCustomPlot*& first,
                                       const QString& second_name, QCustomPlot*& second) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  auto* caption = new QLabel(this);
  caption->setWordWrap(true);
  caption->setTextFormat(Qt::PlainText);
  layout->addWidget(caption);
  auto* split = new QSplitter(orientation, this);
  first = new QCustomPlot(this);
  first->setObjectName(first_name);
  second = new QCustomPlot(this);
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
