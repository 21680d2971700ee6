// The current layer's state pool: the K slots at the current token (source text,
// priority, age), with the slots that changed since the previous frame flashed (green:
// a note came in; the text of the note it replaced is shown struck through), and the
// slots x tokens occupancy map of the whole run (colour = priority of the note held).
#pragma once
#include <QString>

#include <vector>

#include "views/plot_panel.h"

class QTableWidget;
class QCPColorMap;
class QCPItemStraightLine;
class QLabel;

namespace memmamba::views {

class PoolView : public PlotPanel {
  Q_OBJECT
 public:
  explicit PoolView(TraceDocument* document, QWidget* parent = nullptr);
  std::vector<Figure> figures() const override;
  QString csv(const QString& figure, CsvDetail detail) const override;
  int slotRows() const;
  int occupiedRows() const { return occupied_; }
  int changedRows() const { return changed_; }
  int occupancyColumns() const { return columns_; }

 Q_SIGNALS:
  // A memory edit asked for from the slot table's menu (kind: "drop", "drop_after", "pin"),
  // for layer-local note `note` of `layer`; `position` is the current token.
  void editRequested(const QString& kind, int layer, qint64 note, qint64 position);

 protected:
  // Tooltips on the slot table and the occupancy map: the hovered slot's note, its story.
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void rebuildMap();
  void fitColumns();
  void updateSlots();
  QTableWidget* table_;
  QLabel* summary_;
  QCustomPlot* plot_;
  QCPColorMap* map_ = nullptr;
  QCPItemStraightLine* cursor_ = nullptr;
  std::vector<int64_t> previous_;
  int previous_layer_ = -1;
  int64_t previous_position_ = -1;
  static constexpr int64_t kLargestComparedStep = 1024;
  int occupied_ = 0, changed_ = 0, columns_ = 0;
  std::vector<std::vector<float>> cells_;  // [slot][column] priority of the note held, NaN empty
  int64_t bin_ = 1;
};

}  // namespace memmamba::views
