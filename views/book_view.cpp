#include "views/book_view.h"

#include <QContextMenuEvent>
#include <QMenu>

#include <QEvent>
#include <QHelpEvent>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMouseEvent>
#include <QToolTip>
#include <QScrollBar>
#include <QTextBlock>
#include <QTextBrowser>
#include <QTextCharFormat>
#include <QTextCursor>
#include <QVBoxLayout>

#include <algorithm>

#include "views/trace_document.h"

namespace memmamba::views {

BookView::BookView(TraceDocument* document, QWidget* parent) : QWidget(parent), document_(document) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  auto* bar = new QHBoxLayout;
  search_ = new QLineEdit(this);
  search_->setPlaceholderText(tr("Find in text (Enter: next)"));
  search_->setClearButtonEnabled(true);
  search_->setMinimumWidth(160);  // a long status line (three runs compared) must not squeeze it away
  status_ = new QLabel(this);
  bar->addWidget(search_, 1);
  bar->addWidget(status_);
  layout->addLayout(bar);
  text_ = new QTextBrowser(this);
  text_->setOpenLinks(false);
  text_->setReadOnly(true);
  text_->viewport()->installEventFilter(this);
  text_->setMouseTracking(false);
  layout->addWidget(text_, 1);
  connect(search_, &QLineEdit::returnPressed, this, [this] {
    if (!search_->text().isEmpty() && !findNext(search_->text())) status_->setText(tr("not found"));
  });
  connect(document_, &TraceDocument::traceChanged, this, [this] { begin_ = end_ = 0; rebuild(); });
  connect(document_, &TraceDocument::layerChanged, this, [this] { rebuild(); });
  connect(document_, &TraceDocument::comparisonChanged, this, [this] { rebuild(); });
  connect(document_, &TraceDocument::positionChanged, this, [this] { onPosition(); });
}

bool BookView::findNext(const QString& needle) {
  const Trace* t = document_->trace();
  if (!t || t->text.empty() || needle.isEmpty()) return false;
  const std::string n = needle.toStdString();
  const int64_t pos = document_->position();
  const int64_t from = pos + 1 < t->length() ? t->char_begin[pos + 1] : 0;
  size_t hit = t->text.find(n, static_cast<size_t>(std::max<int64_t>(0, from)));
  if (hit == std::string::npos) hit = t->text.find(n);
  if (hit == std::string::npos) return false;
  const int64_t token = document_->tokenAtByte(static_cast<int64_t>(hit));
  status_->setText(tr("token %1").arg(token));
  document_->setPosition(token);
  return true;
}

void BookView::onPosition() {
  // Within the middle of the laid-out window only two tokens change style (the old and the
  // new current token): restyle those instead of laying the window out again.
  const int64_t pos = document_->position();
  const int64_t margin = window_tokens_ / 4;
  const bool inside = pos >= begin_ && pos < end_ && (pos - begin_ >= margin || begin_ == 0) &&
                      (end_ - pos > margin || end_ == document_->length());
  if (!inside || layer_ != document_->layer() || current_ < begin_ || current_ >= end_) {
    rebuild();
    return;
  }
  const int64_t previous = current_;
  current_ = pos;
  restyle(previous);
  restyle(pos);
  QTextCursor c(text_->document());
  c.setPosition(token_start_[pos - begin_]);
  text_->setTextCursor(c);
  text_->ensureCursorVisible();
}

void BookView::changeEvent(QEvent* event) {
  QWidget::changeEvent(event);
  if (event->type() == QEvent::PaletteChange && document_->hasTrace()) rebuild();
}

bool BookView::droppedByComparison(int64_t i) const {
  if (!dropped_by_) return false;
  const auto& layers = dropped_by_->layers;
  if (layers.empty()) return false;
  const auto& flags = layers[std::min<size_t>(static_cast<size_t>(document_->layer()), layers.size() - 1)].flags;
  return static_cast<size_t>(i) < flags.size() && (flags[static_cast<size_t>(i)] & kDecimated) != 0;
}

QTextCharFormat BookView::formatFor(int64_t i) const {
  const Trace* t = document_->trace();
  const LayerTrace& lt = t->layers[document_->layer()];
  const bool dark = palette().color(QPalette::Base).lightness() < 128;
  QTextCharFormat f;
  f.setForeground(palette().color(QPalette::Text));
  const uint8_t flags = lt.flags[i];
  if (flags & kNoted) {
    const float imp = std::clamp(lt.importance[i], 0.f, 1.f);
    QColor c = dark ? QColor(255, 170, 40) : QColor(255, 150, 0);
    c.setAlphaF(0.15 + 0.75 * imp);
    f.setBackground(c);
  }
  if (flags & kDecimated) {
    // DeciMamba dropped the token at this layer or before: it is not in this layer's scan.
    f.setForeground(dark ? QColor(110, 110, 110) : QColor(165, 165, 165));
    f.setFontStrikeOut(true);
  } else if (droppedByComparison(i)) {
    // The DeciMamba comparison dropped it: struck out in its colour, this run's notes stay.
    f.setForeground(dark ? QColor(90, 170, 160) : QColor(20, 120, 110));
    f.setFontStrikeOut(true);
  }
  if (flags & kTriggered) {
    f.setUnderlineStyle(QTextCharFormat::DotLine);
    f.setUnderlineColor(dark ? QColor(120, 180, 255) : QColor(30, 90, 200));
  }
  if (i == current_) {
    f.setFontWeight(QFont::Bold);
    f.setForeground(dark ? QColor(255, 255, 255) : QColor(0, 0, 0));
    f.setBackground(dark ? QColor(200, 40, 80) : QColor(255, 120, 150));
  }
  return f;
}

void BookView::restyle(int64_t i) {
  if (i < begin_ || i >= end_) return;
  const size_t k = static_cast<size_t>(i - begin_);
  const int from = token_start_[k];
  const int to = k + 1 < token_start_.size() ? token_start_[k + 1] : text_->document()->characterCount() - 1;
  QTextCursor c(text_->document());
  c.setPosition(from);
  c.setPosition(to, QTextCursor::KeepAnchor);
  c.setCharFormat(formatFor(i));
}

void BookView::rebuild() {
  const Trace* t = document_->trace();
  token_start_.clear();
  highlighted_ = 0;
  current_ = -1;
  const TraceDocument::Comparison* decimated = document_->decimatedComparison();
  dropped_by_ = decimated ? decimated->trace : nullptr;
  dropped_by_label_ = decimated ? decimated->label : QString();
  if (!t || t->length() == 0) {
    text_->clear();
    begin_ = end_ = 0;
    return;
  }
  const int64_t pos = document_->position();
  const int layer = document_->layer();
  begin_ = std::max<int64_t>(0, pos - window_tokens_);
  end_ = std::min<int64_t>(t->length(), pos + window_tokens_);
  const LayerTrace& lt = t->layers[layer];
  layer_ = layer;
  current_ = pos;

  QTextDocument* doc = text_->document();
  doc->clear();
  QTextCursor cursor(doc);
  int current_offset = 0;
  cursor.beginEditBlock();
  int64_t dropped = 0, dropped_there = 0;
  for (int64_t i = begin_; i < end_; ++i) {
    highlighted_ += (lt.flags[i] & kNoted) != 0;
    dropped += (lt.flags[i] & kDecimated) != 0;
    dropped_there += droppedByComparison(i);
    if (i == pos) current_offset = cursor.position();
    token_start_.push_back(cursor.position());
    QString piece = document_->tokenText(i);
    if (t->text.empty()) piece += QLatin1Char(' ');
    cursor.insertText(piece, formatFor(i));
  }
  cursor.endEditBlock();
  QTextCursor c(doc);
  c.setPosition(current_offset);
  text_->setTextCursor(c);
  text_->ensureCursorVisible();
  status_->setText(dropped > 0 ? tr("layer %1: %2 of %3 shown dropped by DeciMamba (struck out), %4 noted")
                                     .arg(layer).arg(dropped).arg(end_ - begin_).arg(highlighted_)
                   : dropped_by_ ? tr("layer %1: %2 noted of %3 shown; %4 dropped by %5 (struck out)")
                                       .arg(layer).arg(highlighted_).arg(end_ - begin_).arg(dropped_there).arg(dropped_by_label_)
                               : tr("layer %1: %2 noted of %3 shown").arg(layer).arg(highlighted_).arg(end_ - begin_));
}

int64_t BookView::tokenAtCursor(int cursor_position) const {
  if (token_start_.empty()) return -1;
  auto it = std::upper_bound(token_start_.begin(), token_start_.end(), cursor_position);
  const int64_t index = std::max<int64_t>(0, static_cast<int64_t>(it - token_start_.begin()) - 1);
  return begin_ + index;
}

bool BookView::eventFilter(QObject* watched, QEvent* event) {
  if (watched == text_->viewport() && event->type() == QEvent::ContextMenu && document_->hasTrace()) {
    auto* ce = static_cast<QContextMenuEvent*>(event);
    const int at = text_->cursorForPosition(ce->pos()).position();
    const int64_t token = tokenAtCursor(at > 0 ? at - 1 : at);
    if (token < 0) return true;
    const int layer = document_->layer();
    const int64_t position = std::max<int64_t>(token, document_->position());
    QMenu menu(this);
    menu.addAction(tr("Plant a note of token %L1 (\"%2\") in layer %3 after token %L4 and re-run")
                       .arg(token).arg(document_->tokenText(token).trimmed()).arg(layer).arg(position),
                   this, [this, layer, token, position] { Q_EMIT plantRequested(layer, token, position); });
    menu.exec(ce->globalPos());
    return true;
  }
  if (watched == text_->viewport() && event->type() == QEvent::ToolTip && document_->hasTrace()) {
    // Why this token was (not) noted in the current layer.
    auto* he = static_cast<QHelpEvent*>(event);
    const int at = text_->cursorForPosition(he->pos()).position();
    const int64_t token = tokenAtCursor(at > 0 ? at - 1 : at);
    const QString why = token >= 0 ? document_->whyNoted(document_->layer(), token) : QString();
    if (why.isEmpty()) QToolTip::hideText();
    else QToolTip::showText(he->globalPos(), why, text_->viewport());
    return true;
  }
  if (watched == text_->viewport() && event->type() == QEvent::MouseButtonRelease) {
    auto* me = static_cast<QMouseEvent*>(event);
    const int at = text_->cursorForPosition(me->position().toPoint()).position();
    const int64_t token = tokenAtCursor(at > 0 ? at - 1 : at);
    if (token >= 0) document_->setPosition(token);
    return true;
  }
  return QWidget::eventFilter(watched, event);
}

}  // namespace memmamba::views
