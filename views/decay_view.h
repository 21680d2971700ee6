// How fast the SSM forgets. Left: retention of the selected token's contribution versus
// distance, per layer: exact curves where the run recorded them (retention sources),
// else exp of the summed mean log-decay (a geometric-mean approximation, labelled so).
// Right: the paper's |A^k| view, the per-layer mean decay raised to the distance, on a
// log scale. Third: memory fidelity per layer (ETMF through the final norm and head, ECLMF
// per gap from each layer) when the run measured it (run_info "fidelity").
// Comparison traces (e.g. the same text Mamba-only, or as DeciMamba) are drawn dashed, dotted, ...
#pragma once
#include "views/plot_panel.h"

class QLabel;

namespace memmamba::views {

class DecayView : public PlotPanel {
  Q_OBJECT
 public:
  explicit DecayView(TraceDocument* document, QWidget* parent = nullptr);
  std::vector<Figure> figures() const override;
  QString csv(const QString& figure, CsvDetail detail) const override;
  int curves() const;
  int exactCurves() const { return exact_; }
  int fidelityCurves() const;

 private:
  void refresh(bool average_too);
  void refreshFidelity();
  QCustomPlot* selected_;
  QCustomPlot* average_;
  QCustomPlot* fidelity_;
  QLabel* caption_;
  int exact_ = 0;
  int64_t horizon_ = 2048;
};

}  // namespace memmamba::views
