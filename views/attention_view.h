// Cross-token attention of the current layer: a tokens x slots heatmap over the tokens
// before the current one, and for the current token its weights laid out by the source
// position of each note (token -> source text), with the cross-layer attention beside
// it where the layer has one; a comparison run's weights at the same token are outlined
// beside them. Double-clicking a source jumps there in every view.
#pragma once
#include "views/plot_panel.h"

class QLabel;
class QCPColorScale;

namespace memmamba::views {

class AttentionView : public PlotPanel {
  Q_OBJECT
 public:
  explicit AttentionView(TraceDocument* document, QWidget* parent = nullptr);
  std::vector<Figure> figures() const override;
  QString csv(const QString& figure, CsvDetail detail) const override;
  int heatmapRows() const { return heat_rows_; }
  int sourceBars() const { return source_bars_; }
  // Bars of the comparison run at the current token (outlined beside the trace's own).
  int comparedBars() const { return compared_bars_; }

 private:
  void refresh();
  QCustomPlot* heat_;
  QCPColorScale* heat_scale_ = nullptr;
  QCustomPlot* sources_;
  QLabel* caption_;
  int heat_rows_ = 0, source_bars_ = 0, compared_bars_ = 0;
  int64_t window_ = 120;
};

}  // namespace memmamba::views
