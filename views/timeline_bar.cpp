#include "views/timeline_bar.h"

#include <QKeySequence>

#include <QComboBox>
#include <QPainter>
#include <QStyleOptionSlider>
#include <QHBoxLayout>
#include <QLabel>
#include <QSignalBlocker>
#include <QSlider>
#include <QSpinBox>
#include <QStyle>
#include <QTimer>
#include <QToolButton>

#include <algorithm>

#include "views/trace_document.h"

namespace memmamba::views {

namespace {
constexpr int kFrameMs = 33;  // 30 frames per second
}

// The position slider with a tick at every chapter start.
class ChapterSlider : public QSlider {
 public:
  ChapterSlider(TraceDocument* document, QWidget* parent) : QSlider(Qt::Horizontal, parent), document_(document) {}

 protected:
  void paintEvent(QPaintEvent* event) override {
    QSlider::paintEvent(event);
    if (document_->chapters().empty() || maximum() <= minimum()) return;
    QStyleOptionSlider option;
    initStyleOption(&option);
    const QRect groove = style()->subControlRect(QStyle::CC_Slider, &option, QStyle::SC_SliderGroove, this);
    const QRect handle = style()->subControlRect(QStyle::CC_Slider, &option, QStyle::SC_SliderHandle, this);
    const int span = groove.width() - handle.width();
    QPainter painter(this);
    painter.setPen(QPen(palette().color(QPalette::Highlight), 1));
    for (const auto& chapter : document_->chapters()) {
      const int x = groove.x() + handle.width() / 2 +
                    QStyle::sliderPositionFromValue(minimum(), maximum(), static_cast<int>(chapter.token), span);
      painter.drawLine(x, rect().top(), x, rect().top() + 4);
      painter.drawLine(x, rect().bottom() - 4, x, rect().bottom());
    }
  }

 private:
  TraceDocument* document_;
};

TimelineBar::TimelineBar(TraceDocument* document, QWidget* parent) : QWidget(parent), document_(document) {
  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(4, 2, 4, 2);
  auto button = [this, layout](QStyle::StandardPixmap icon, const QString& tip) {
    auto* b = new QToolButton(this);
    b->setIcon(style()->standardIcon(icon));
    b->setToolTip(tip);
    layout->addWidget(b);
    return b;
  };
  auto* back = button(QStyle::SP_MediaSeekBackward, tr("Step back"));
  back_ = back;
  play_ = button(QStyle::SP_MediaPlay, tr("Play / pause"));
  play_->setCheckable(true);
  auto* forward = button(QStyle::SP_MediaSeekForward, tr("Step forward"));
  forward_ = forward;
  speed_ = new QComboBox(this);
  for (int s : {5, 20, 100, 500, 2000, 10000, 50000}) speed_->addItem(tr("%1 tok/s").arg(s), s);
  speed_->setCurrentIndex(2);
  speed_->setToolTip(tr("Playback speed"));
  layout->addWidget(speed_);
  slider_ = new ChapterSlider(document_, this);
  slider_->setToolTip(tr("Token position (ticks mark chapter starts)"));
  layout->addWidget(slider_, 1);
  chapter_ = new QComboBox(this);
  chapter_->setToolTip(tr("Chapter: jump to its first token"));
  chapter_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  chapter_->setMinimumContentsLength(18);
  layout->addWidget(chapter_);
  label_ = new QLabel(this);
  label_->setMinimumWidth(140);
  layout->addWidget(label_);
  layout->addWidget(new QLabel(tr("Layer"), this));
  layer_ = new QSpinBox(this);
  layer_->setToolTip(tr("Layer shown by every view"));
  layout->addWidget(layer_);
  timer_ = new QTimer(this);
  timer_->setInterval(kFrameMs);

  connect(back, &QToolButton::clicked, this, [this] { stepBy(-1); });
  connect(forward, &QToolButton::clicked, this, [this] { stepBy(1); });
  connect(play_, &QToolButton::toggled, this, &TimelineBar::setPlaying);
  connect(timer_, &QTimer::timeout, this, &TimelineBar::advanceFrame);
  connect(slider_, &QSlider::valueChanged, this, [this](int v) { document_->setPosition(v); });
  connect(layer_, qOverload<int>(&QSpinBox::valueChanged), document_, &TraceDocument::setLayer);
  connect(chapter_, qOverload<int>(&QComboBox::activated), this, [this](int index) {
    const auto& chapters = document_->chapters();
    if (index >= 0 && index < static_cast<int>(chapters.size())) document_->setPosition(chapters[index].token);
  });
  connect(document_, &TraceDocument::traceChanged, this, &TimelineBar::syncChapters);
  connect(document_, &TraceDocument::traceChanged, this, &TimelineBar::sync);
  connect(document_, &TraceDocument::positionChanged, this, &TimelineBar::sync);
  connect(document_, &TraceDocument::layerChanged, this, &TimelineBar::sync);
  syncChapters();
  sync();
}

void TimelineBar::syncChapters() {
  const QSignalBlocker block(chapter_);
  chapter_->clear();
  for (const auto& c : document_->chapters()) chapter_->addItem(c.title);
  chapter_->setVisible(!document_->chapters().empty());
  slider_->update();
}

bool TimelineBar::playing() const { return timer_->isActive(); }

void TimelineBar::setShortcuts(const QKeySequence& back, const QKeySequence& play, const QKeySequence& forward) {
  auto tip = [](const QString& what, const QKeySequence& keys) {
    return keys.isEmpty() ? what : tr("%1 (%2)").arg(what, keys.toString(QKeySequence::NativeText));
  };
  back_->setToolTip(tip(tr("Step back"), back));
  play_->setToolTip(tip(tr("Play / pause"), play));
  forward_->setToolTip(tip(tr("Step forward"), forward));
}

void TimelineBar::setPlaying(bool playing) {
  if (playing && document_->hasTrace()) {
    if (document_->position() >= document_->length() - 1) document_->setPosition(0);
    carry_ = 0;
    timer_->start();
  } else {
    timer_->stop();
  }
  const QSignalBlocker block(play_);
  play_->setChecked(timer_->isActive());
  play_->setIcon(style()->standardIcon(timer_->isActive() ? QStyle::SP_MediaPause : QStyle::SP_MediaPlay));
}

void TimelineBar::stepBy(int tokens) { document_->setPosition(document_->position() + tokens); }

void TimelineBar::advanceFrame() {
  QElapsedTimer clock;
  clock.start();
  carry_ += speed_->currentData().toDouble() * kFrameMs / 1000.0;
  const auto step = static_cast<int64_t>(carry_);
  carry_ -= static_cast<double>(step);
  if (step > 0) document_->setPosition(document_->position() + step);
  if (document_->position() >= document_->length() - 1) setPlaying(false);
  const double ms = static_cast<double>(clock.nsecsElapsed()) / 1e6;
  ++frames_;
  total_ms_ += ms;
  worst_ms_ = std::max(worst_ms_, ms);
}

void TimelineBar::sync() {
  const QSignalBlocker b1(slider_), b2(layer_);
  const int64_t n = document_->length();
  slider_->setRange(0, static_cast<int>(std::max<int64_t>(0, n - 1)));
  slider_->setValue(static_cast<int>(document_->position()));
  slider_->setPageStep(static_cast<int>(std::max<int64_t>(1, n / 50)));
  layer_->setRange(0, std::max(0, document_->layers() - 1));
  layer_->setValue(document_->layer());
  label_->setText(n ? tr("token %L1 / %L2").arg(document_->position()).arg(n) : tr("no trace"));
  const int chapter = document_->chapterAt(document_->position());
  const QSignalBlocker b3(chapter_);
  chapter_->setCurrentIndex(chapter);
}

}  // namespace memmamba::views
