// Base of every view that draws plots: names its figures and the data behind them, so
// the app can export any figure (PNG, SVG, PDF) and its CSV without knowing the view.
#pragma once
#include <QString>
#include <QWidget>

#include <vector>

class QCustomPlot;
class QCPColorGradient;
class QLabel;
class QPalette;

namespace memmamba::views {

class TraceDocument;

// How much a figure's CSV holds: what the figure draws (its bins, averages and bands: a
// book's raster is layers x 3,000 columns, not layers x 160k tokens), or every value behind it.
enum class CsvDetail { Figure, Full };

struct Figure {
  QString name;       // file-name friendly: "pool-occupancy"
  QCustomPlot* plot;  // owned by the view
};

class PlotPanel : public QWidget {
  Q_OBJECT
 public:
  PlotPanel(TraceDocument* document, QWidget* parent);
  virtual std::vector<Figure> figures() const = 0;
  // The numbers of a figure, as CSV with a header row: as drawn, or every value behind it.
  virtual QString csv(const QString& figure, CsvDetail detail) const = 0;
  bool showsEmptyHint() const;

 protected:
  // Lays the panel out as a plain-text caption above two new plots side by side (or stacked),
  // named for export; returns the caption.
  QLabel* captionOverTwoPlots(Qt::Orientation orientation, const QString& first_name, QCustomPlot*& first,
                              const QString& second_name, QCustomPlot*& second);
  // A new palette (View > Dark palette) reaches every plot of the panel.
  void changeEvent(QEvent* event) override;
  void resizeEvent(QResizeEvent* event) override;
  // Until a trace is loaded, `text` covers the panel instead of empty axes (views with
  // nothing to show without a trace call this once).
  void setEmptyHint(const QString& text);

  TraceDocument* document_;

 private:
  void syncEmptyHint();
  QLabel* empty_hint_ = nullptr;
};

// Colours a plot for a palette: its background, every axis of every axis rect and colour
// scale, legends and titles. Safe on plots whose layout a view rebuilt (whatever elements
// exist now are coloured; none is assumed).
void applyPlotPalette(QCustomPlot* plot, const QPalette& palette);

// A perceptual colour map (viridis stops; QCustomPlot 2.1 has none built in).
void applyViridis(QCPColorGradient& gradient);

}  // namespace memmamba::views
