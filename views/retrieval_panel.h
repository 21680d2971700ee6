// Passkey retrieval: build one case (length, depth, key) for the app to run and trace, and
// show the document's evaluation grid (`memmamba eval passkey` or `eval facts` output, loaded
// by the app) as a length x depth accuracy heatmap (`eval docs` results: noise documents x
// where the golden document stood, their cases listed but not run). Clicking a cell lists its cases and asks the app to open the
// first one in every view at the answer token; the answer is shown beside the truth
// with where the key was noted, whether its notes survived, and what the answer attended to.
#pragma once
#include <QString>

#include <string>
#include <vector>

#include "model/eval/passkey_grid.h"
#include "model/json.h"
#include "views/plot_panel.h"

class QSpinBox;
class QDoubleSpinBox;
class QTextBrowser;
class QLabel;
class QComboBox;

namespace memmamba::views {

class RetrievalPanel : public PlotPanel {
  Q_OBJECT
 public:
  explicit RetrievalPanel(TraceDocument* document, QWidget* parent = nullptr);
  std::vector<Figure> figures() const override;
  QString csv(const QString& figure, CsvDetail detail) const override;

  int gridLengths() const;
  int gridDepths() const;
  // Whether a second grid is drawn beside the first (TraceDocument::setComparisonGrid).
  bool showsComparisonGrid() const;
  // The model a grid ran: its checkpoint's file name, "memory off" or DeciMamba where so.
  static QString gridModel(const Json& results);
  // The heatmap shows exact-match accuracy, or the share of key digits in place.
  void setShowDigits(bool digits);
  bool showsDigits() const { return show_digits_; }
  // Selects a cell as a click would: lists its cases and emits caseSelected for the first.
  void selectCell(int length_index, int depth_index);
  // Shows one case's record (from a grid or from a single run).
  void showCase(const Json& record, const QString& preface = {});
  // Puts the same case's answer by another model (the comparison run) under the shown case:
  // its answer, found or missed, the key's characters in place, and for DeciMamba whether
  // the key survived decimation.
  void showComparisonAnswer(const Json& record, const QString& model);
  // Which key token each answer token read, per layer (empty where the record has no reads).
  QString answerReadsTable(const Json& record) const;
  // A labelled-facts answer token's read of another fact's value, where it drew more than the
  // key's best note (`key_weight`): "9 (digit 3 of 80559939, grey gate) 0.62"; else empty.
  QString otherValueRead(const Json& record, const Json& read, double key_weight) const;
  // For a labelled-facts answer that ran on: which other fact the layers read right after the
  // key's last character (empty when none did).
  QString runOnSource(const Json& record) const;
  // An answer piece as text: "<0x39>" (a byte SentencePiece has no piece for) as "9".
  static QString readablePiece(const std::string& piece);

 Q_SIGNALS:
  void caseRequested(qint64 length, double depth, const QString& key, quint64 seed);
  void caseSelected(qint64 length, double depth, const QString& key, quint64 seed);
  // "Load evaluation grid..." was pressed: the app asks for the file and loads it.
  void gridLoadRequested();
  // "Compare with grid..." was pressed: the app asks for a second grid to draw beside it.
  void comparisonGridLoadRequested();

 private:
  static QString keyOf(const Json& record);  // the case's key as text (a number in older files)
  // A docs grid's column ("first third", ...) and a cell's heading in either kind of grid.
  static QString positionName(double bin);
  static QString cellTitle(const eval::PasskeyGrid& grid, int64_t length, double depth);
  void drawGrid();
  void drawGridOn(QCustomPlot* plot, const eval::PasskeyGrid& grid, const QString& title);
  // The cases of one cell of a grid's results, as HTML lines (key, answer, found or missed).
  QString cellCases(const Json& results, int64_t length, double depth, const Json** first) const;
  QSpinBox* length_;
  QDoubleSpinBox* depth_;
  QSpinBox* key_;
  QSpinBox* seed_;
  QCustomPlot* grid_;
  QCustomPlot* comparison_grid_;
  QTextBrowser* details_;
  QLabel* grid_label_;
  void onGridChanged();
  QComboBox* measure_;
  bool show_digits_ = false;
};

}  // namespace memmamba::views
