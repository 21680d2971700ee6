// Writing figures and their data. Every file is written to a temporary name and renamed
// (QSaveFile), so an interrupted export never leaves half a file under the final name.
#pragma once
#include <QString>

class QCustomPlot;
class QObject;

namespace memmamba::views {

enum class ImageFormat { Png, Svg, Pdf };

struct ExportSize {
  int width = 1600;   // pixels (PNG) or points (SVG, PDF)
  int height = 900;
  double scale = 1.0; // PNG: pixel ratio, so 2.0 doubles the resolution at the same layout
  bool cursor = false; // draw the position cursor (off: a figure for a paper has none)
};

// Whether a figure has nothing drawn yet (no plottable holds data).
bool figureIsEmpty(QCustomPlot* plot);
// Marks an item as the views' position cursor, which exports leave out unless asked.
void markAsCursor(QObject* item);

// Returns an empty string on success, else why it failed (an empty figure is refused).
QString exportFigure(QCustomPlot* plot, const QString& path, ImageFormat format, const ExportSize& size);
QString writeTextAtomically(const QString& path, const QString& text);
// The points a plot's graphs draw, as CSV "series,X,Y": each graph named by `series` (in
// graph order), else by its legend name; a plot with no graphs gives the header alone.
QString graphsCsv(const QCustomPlot* plot, const QStringList& series, const QString& x_name, const QString& y_name);
ImageFormat formatForPath(const QString& path, bool* known = nullptr);

}  // namespace memmamba::views
