// Where the thresholds fire: a layers x tokens raster (noted, triggered, both), and for
// the current layer the importance and I_state signals around the current token against
// tau1 and tau2. The tau sliders ask the app to re-run the model with new thresholds.
#pragma once
#include "views/plot_panel.h"

#include <memory>

#include "model/trace.h"

class QDoubleSpinBox;
class QPushButton;
class QCPColorMap;
class QCPItemStraightLine;

namespace memmamba::views {

class TriggerView : public PlotPanel {
  Q_OBJECT
 public:
  explicit TriggerView(TraceDocument* document, QWidget* parent = nullptr);
  std::vector<Figure> figures() const override;
  QString csv(const QString& figure, CsvDetail detail) const override;
  int rasterRows() const { return rows_; }
  // A DeciMamba trace: the raster shows each layer's kept tokens and a "kept" row.
  bool showsDecimation() const { return decimated_; }
  // A DeciMamba comparison of the same tokens: a last row shows which tokens it kept to the
  // end, under this run's notes; "" where there is none.
  QString keptRowLabel() const { return kept_label_; }
  int rasterColumns() const { return columns_; }
  int signalCurves() const;  // 1 where I_state is I_t shifted by a token, else 2
  void setThresholds(double tau_note, double tau_retrieve);
  double fusionGain() const;
  int64_t signalWindow() const { return window_; }

 Q_SIGNALS:
  void rerunRequested(double tau_note, double tau_retrieve, double fusion_gain);

 protected:
  // Tooltips on the raster: what the hovered layer did over the hovered column's tokens.
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void rebuildRaster();
  void updateSignals();
  QCustomPlot* raster_;
  QCustomPlot* signals_;
  QDoubleSpinBox* tau_note_;
  QDoubleSpinBox* tau_retrieve_;
  QDoubleSpinBox* fusion_gain_;
  QPushButton* rerun_;
  QCPColorMap* map_ = nullptr;
  QCPItemStraightLine* cursor_ = nullptr;
  int rows_ = 0, columns_ = 0;
  bool decimated_ = false;
  std::shared_ptr<const Trace> kept_by_;  // the DeciMamba comparison of the kept row
  QString kept_label_;
  int64_t bin_ = 1, window_ = 400;
};

}  // namespace memmamba::views
