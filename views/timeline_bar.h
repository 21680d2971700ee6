// The scrubber over token positions: slider, play/pause at a chosen speed, single steps,
// and the layer every view shows. Playing moves the document's position on a timer;
// each frame's cost (all views updating) is measured so the app can report frame rates.
#pragma once
#include <QElapsedTimer>
#include <QWidget>

class QSlider;
class QToolButton;
class QComboBox;
class QSpinBox;
class QLabel;
class QTimer;

namespace memmamba::views {

class TraceDocument;

class TimelineBar : public QWidget {
  Q_OBJECT
 public:
  explicit TimelineBar(TraceDocument* document, QWidget* parent = nullptr);
  bool playing() const;
  // Milliseconds the last frames took to update every view (mean, worst) since reset.
  double meanFrameMs() const { return frames_ ? total_ms_ / frames_ : 0; }
  double worstFrameMs() const { return worst_ms_; }
  int64_t frames() const { return frames_; }
  // The chapter list (hidden when the trace has no chapters).
  QComboBox* chapterBox() const { return chapter_; }
  void resetFrameStats() { frames_ = 0; total_ms_ = worst_ms_ = 0; }
  // The keys that step and play, as the window's actions have them: the buttons' tooltips
  // name these, so they cannot promise keys that do nothing.
  void setShortcuts(const QKeySequence& back, const QKeySequence& play, const QKeySequence& forward);

 public Q_SLOTS:
  void setPlaying(bool playing);
  void stepBy(int tokens);
  void advanceFrame();  // one playback frame

 private:
  void sync();
  void syncChapters();
  TraceDocument* document_;
  class ChapterSlider* slider_;
  QComboBox* chapter_;
  QToolButton* back_;
  QToolButton* play_;
  QToolButton* forward_;
  QComboBox* speed_;
  QSpinBox* layer_;
  QLabel* label_;
  QTimer* timer_;
  double carry_ = 0;
  int64_t frames_ = 0;
  double total_ms_ = 0, worst_ms_ = 0;
};

}  // namespace memmamba::views
