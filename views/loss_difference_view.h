// Where two runs of the same text predict differently: the per-token loss of the trace minus
// that of the comparison (the run before the memory edits, or the same text Mamba-only; further
// comparisons add their moving averages),
// raw and as a moving average, with the edits' positions marked. Double-click jumps there.
#pragma once
#include <QStringList>
#include "views/plot_panel.h"

class QLabel;

namespace memmamba::views {

class LossDifferenceView : public PlotPanel {
  Q_OBJECT
 public:
  explicit LossDifferenceView(TraceDocument* document, QWidget* parent = nullptr);
  std::vector<Figure> figures() const override;
  QString csv(const QString& figure, CsvDetail detail) const override;
  // Tokens with a finite loss in both runs (0 without a comparison of the same tokens).
  int comparedTokens() const { return compared_; }
  QString caption() const;

 private:
  void rebuild();
  void moveCursor();
  QCustomPlot* plot_;
  QLabel* caption_;
  int compared_ = 0;
  int average_window_ = 16;
  QStringList series_;  // what each graph of the plot is, in graph order, for the CSV
  static constexpr int kMaxPoints = 2000;  // raw points drawn before they become a band
  static constexpr int kBandBins = 400;    // bins of that band
};

}  // namespace memmamba::views
