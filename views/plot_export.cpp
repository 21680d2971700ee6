#include "views/plot_export.h"

#include <QBuffer>
#include <QFileInfo>
#include <QPainter>
#include <QPdfWriter>
#include <QSaveFile>
#include <QSvgGenerator>
#include <qcustomplot.h>

#include <optional>
#include <vector>

namespace memmamba::views {

namespace {

QString commit(QSaveFile& file, const QByteArray& bytes) {
  if (file.write(bytes) != bytes.size()) {
    file.cancelWriting();
    return QStringLiteral("could not write %1: %2").arg(file.fileName(), file.errorString());
  }
  if (!file.commit()) return QStringLiteral("could not save %1: %2").arg(file.fileName(), file.errorString());
  return {};
}

}  // namespace

ImageFormat formatForPath(const QString& path, bool* known) {
  const QString suffix = QFileInfo(path).suffix().toLower();
  if (known) *known = suffix == QLatin1String("png") || suffix == QLatin1String("svg") || suffix == QLatin1String("pdf");
  if (suffix == QLatin1String("svg")) return ImageFormat::Svg;
  if (suffix == QLatin1String("pdf")) return ImageFormat::Pdf;
  return ImageFormat::Png;
}

bool figureIsEmpty(QCustomPlot* plot) {
  for (int i = 0; i < plot->plottableCount(); ++i) {
    bool found = false;
    plot->plottable(i)->getKeyRange(found);
    if (found) return false;
  }
  return true;
}

void markAsCursor(QObject* item) { item->setProperty("position_cursor", true); }

namespace {
// Hides the position cursors of a plot while it lives (exports), then shows them again.
class CursorsHidden {
 public:
  explicit CursorsHidden(QCustomPlot* plot) {
    for (int i = 0; i < plot->itemCount(); ++i) {
      QCPAbstractItem* item = plot->item(i);
      if (item->property("position_cursor").toBool() && item->visible()) {
        item->setVisible(false);
        hidden_.push_back(item);
      }
    }
  }
  ~CursorsHidden() {
    for (QCPAbstractItem* item : hidden_) item->setVisible(true);
  }
  CursorsHidden(const CursorsHidden&) = delete;
  CursorsHidden& operator=(const CursorsHidden&) = delete;

 private:
  std::vector<QCPAbstractItem*> hidden_;
};
}  // namespace

QString exportFigure(QCustomPlot* plot, const QString& path, ImageFormat format, const ExportSize& size) {
  if (!plot) return QStringLiteral("no figure to export");
  if (figureIsEmpty(plot))
    return QStringLiteral("%1 is empty: nothing is drawn in it yet (load a trace, a grid or a measurement first)")
        .arg(plot->objectName());
  std::optional<CursorsHidden> cursors;
  if (!size.cursor) cursors.emplace(plot);
  if (size.width < 16 || size.height < 16 || size.width > 20000 || size.height > 20000 || !(size.scale > 0.1) ||
      size.scale > 8)
    return QStringLiteral("export size %1 x %2 at scale %3 is out of range").arg(size.width).arg(size.height).arg(size.scale);
  QByteArray bytes;
  QBuffer buffer(&bytes);
  buffer.open(QIODevice::WriteOnly);
  switch (format) {
    case ImageFormat::Png: {
      const QPixmap pixmap = plot->toPixmap(size.width, size.height, size.scale);
      if (pixmap.isNull() || !pixmap.save(&buffer, "PNG")) return QStringLiteral("could not render the PNG");
      break;
    }
    case ImageFormat::Svg: {
      QSvgGenerator svg;
      svg.setOutputDevice(&buffer);
      svg.setSize(QSize(size.width, size.height));
      svg.setViewBox(QRect(0, 0, size.width, size.height));
      svg.setTitle(plot->objectName());
      QCPPainter painter;
      if (!painter.begin(&svg)) return QStringLiteral("could not start the SVG");
      plot->toPainter(&painter, size.width, size.height);
      painter.end();
      break;
    }
    case ImageFormat::Pdf: {
      QPdfWriter pdf(&buffer);
      pdf.setResolution(72);
      pdf.setPageSize(QPageSize(QSizeF(size.width, size.height), QPageSize::Point));
      pdf.setPageMargins(QMarginsF(0, 0, 0, 0));
      pdf.setCreator(QStringLiteral("MemMamba Explorer"));
      QCPPainter painter;
      if (!painter.begin(&pdf)) return QStringLiteral("could not start the PDF");
      plot->toPainter(&painter, size.width, size.height);
      painter.end();
      break;
    }
  }
  buffer.close();
  QSaveFile file(path);
  if (!file.open(QIODevice::WriteOnly)) return QStringLiteral("could not open %1: %2").arg(path, file.errorString());
  return commit(file, bytes);
}

QString graphsCsv(const QCustomPlot* plot, const QStringList& series, const QString& x_name, const QString& y_name) {
  QString out = QStringLiteral("series,%1,%2\n").arg(x_name, y_name);
  for (int g = 0; g < plot->graphCount(); ++g) {
    const QCPGraph* graph = plot->graph(g);
    const QString label = g < series.size() ? series[g] : graph->name();
    const QString name = QLatin1Char('"') + QString(label).replace(QLatin1Char('"'), QStringLiteral("\"\"")) + QLatin1Char('"');
    for (auto it = graph->data()->constBegin(); it != graph->data()->constEnd(); ++it)
      out += QStringLiteral("%1,%2,%3\n").arg(name).arg(it->key, 0, 'g', 9).arg(it->value, 0, 'g', 7);
  }
  return out;
}

QString writeTextAtomically(const QString& path, const QString& text) {
  QSaveFile file(path);
  if (!file.open(QIODevice::WriteOnly | QIODevice::Text))
    return QStringLiteral("could not open %1: %2").arg(path, file.errorString());
  return commit(file, text.toUtf8());
}

}  // namespace memmamba::views
