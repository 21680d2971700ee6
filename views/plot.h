// The views' QCustomPlot: it draws only while it has an area. A dock in a hidden tab is laid out
// at 0 x 0 before it is first shown, and QCustomPlot would paint into empty buffers there (Qt then
// warns "QPainter::begin: Paint device returned engine == 0" for every replot); the plot's first
// real size draws it with whatever it holds by then.
#pragma once
#include <qcustomplot.h>

namespace memmamba::views {

class Plot : public QCustomPlot {
 public:
  using QCustomPlot::QCustomPlot;

 protected:
  void resizeEvent(QResizeEvent* event) override;
};

// plot->replot(priority) where the plot has an area; otherwise its next resize draws it.
void redraw(QCustomPlot* plot, QCustomPlot::RefreshPriority priority = QCustomPlot::rpRefreshHint);
// The same for one layer of the plot (a cursor drawn on a layer of its own).
void redraw(QCPLayer* layer);

}  // namespace memmamba::views
