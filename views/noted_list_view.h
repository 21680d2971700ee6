// The strings the current layer notes most (model/noted_strings.h): text, count, share of the
// layer's notes, first place. Double-clicking a row steps to the next place that string was
// noted; the list follows the layer. Says whether notes go to names, numbers and rare words
// or to punctuation and frequent words.
#pragma once
#include <QWidget>

#include <vector>

#include "model/noted_strings.h"

class QLabel;
class QTableWidget;

namespace memmamba::views {

class TraceDocument;

class NotedListView : public QWidget {
  Q_OBJECT
 public:
  explicit NotedListView(TraceDocument* document, QWidget* parent = nullptr);
  static constexpr size_t kShown = 30;
  int rows() const;
  QString caption() const;
  // The current layer's list as CSV (every noted string, not only those shown).
  QString csv() const;
  // Moves the document to the next place (after the current token, wrapping) where row's string was noted.
  void stepToNext(int row);

 private:
  void rebuild();
  TraceDocument* document_;
  QLabel* caption_;
  QTableWidget* table_;
  std::vector<NotedString> shown_;
};

}  // namespace memmamba::views
