// The text with the current layer's notes highlighted by importance, retrieval triggers
// underlined and the current token framed. Only a window of tokens around the current
// one is laid out, so a 1M-token book scrolls as fast as a short one. Clicking a token
// selects it everywhere; the search box finds text and jumps to it.
#pragma once
#include <QTextCharFormat>
#include <QWidget>

#include <memory>
#include <vector>

#include "model/trace.h"

class QTextBrowser;
class QLineEdit;
class QLabel;

namespace memmamba::views {

class TraceDocument;

class BookView : public QWidget {
  Q_OBJECT
 public:
  explicit BookView(TraceDocument* document, QWidget* parent = nullptr);
  // Tokens laid out around the current one (each side).
  void setWindowTokens(int64_t tokens) { window_tokens_ = tokens; }
  int64_t renderedBegin() const { return begin_; }
  int64_t renderedEnd() const { return end_; }
  int64_t highlightedNotes() const { return highlighted_; }
  // Finds `text` after the current token (wrapping); false when absent.
  bool findNext(const QString& text);

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;
  // A palette switch lays the text out again in the new colours.
  void changeEvent(QEvent* event) override;

 Q_SIGNALS:
  // "Plant a note of this token": token `source`'s summary enters layer `layer`'s pool
  // after token `position` (the current token, or the source itself when it comes later).
  void plantRequested(int layer, qint64 source, qint64 position);

 private:
  void rebuild();
  void onPosition();
  void restyle(int64_t token);
  QTextCharFormat formatFor(int64_t token) const;
  bool droppedByComparison(int64_t token) const;
  int64_t tokenAtCursor(int cursor_position) const;

  TraceDocument* document_;
  QTextBrowser* text_;
  QLineEdit* search_;
  QLabel* status_;
  int64_t window_tokens_ = 300;
  int64_t begin_ = 0, end_ = 0, highlighted_ = 0;
  int layer_ = -1;
  int64_t current_ = -1;  // the token styled as current
  // A DeciMamba comparison of the same tokens: the tokens it dropped by the current layer are
  // struck out beside this run's notes (notes against dropped tokens, on one page).
  std::shared_ptr<const Trace> dropped_by_;
  QString dropped_by_label_;
  std::vector<int> token_start_;  // per rendered token, its offset in the document
};

}  // namespace memmamba::views
