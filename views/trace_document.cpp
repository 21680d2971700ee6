#include "views/trace_document.h"

#include <algorithm>
#include <cmath>

namespace memmamba::views {

TraceDocument::TraceDocument(QObject* parent) : QObject(parent) {}

void TraceDocument::setTrace(std::shared_ptr<const Trace> trace, const QString& source) {
  replay_.reset();
  trace_ = std::move(trace);
  source_ = source;
  if (trace_) replay_ = std::make_unique<PoolReplay>(*trace_);
  chapters_.clear();
  // A trace written by another tool may carry anything here: only well-formed, ordered
  // entries inside the trace are kept.
  if (trace_ && trace_->run_info.is_object() && trace_->run_info.contains("book")) {
    const Json& book = trace_->run_info.at("book");
    if (book.is_object() && book.contains("chapters") && book.at("chapters").is_array()) {
      for (const Json& c : book.at("chapters").as_array()) {
        if (!c.is_object() || !c.contains("title") || !c.contains("token_begin") || !c.at("title").is_string() ||
            !c.at("token_begin").is_integer())
          continue;
        const int64_t token = c.at("token_begin").as_int();
        if (token < 0 || token >= trace_->length() || (!chapters_.empty() && token <= chapters_.back().token)) continue;
        chapters_.push_back({QString::fromStdString(c.at("title").as_string()), token});
      }
    }
  }
  position_ = trace_ && trace_->length() > 0 ? std::min<int64_t>(position_, trace_->length() - 1) : 0;
  layer_ = std::clamp(layer_, 0, std::max(0, layers() - 1));
  comparisons_.clear();
  decimated_comparison_ = -1;
  Q_EMIT traceChanged();
  Q_EMIT comparisonChanged();
  Q_EMIT layerChanged(layer_);
  Q_EMIT positionChanged(position_);
}

int TraceDocument::chapterAt(int64_t position) const {
  auto it = std::upper_bound(chapters_.begin(), chapters_.end(), position,
                             [](int64_t p, const ChapterMark& c) { return p < c.token; });
  return static_cast<int>(it - chapters_.begin()) - 1;
}

void TraceDocument::setComparison(std::shared_ptr<const Trace> trace, const QString& label) {
  comparisons_.clear();
  if (trace) comparisons_.push_back({label, std::move(trace)});
  findDecimatedComparison();
  Q_EMIT comparisonChanged();
}

void TraceDocument::addComparison(std::shared_ptr<const Trace> trace, const QString& label) {
  if (!trace) return;
  auto same = std::find_if(comparisons_.begin(), comparisons_.end(), [&](const Comparison& c) { return c.label == label; });
  if (same != comparisons_.end()) same->trace = std::move(trace);
  else comparisons_.push_back({label, std::move(trace)});
  findDecimatedComparison();
  Q_EMIT comparisonChanged();
}

const TraceDocument::Comparison* TraceDocument::decimatedComparison() const {
  return decimated_comparison_ >= 0 ? &comparisons_[static_cast<size_t>(decimated_comparison_)] : nullptr;
}

void TraceDocument::findDecimatedComparison() {
  // Found once per change of the comparisons: the book and the raster ask at every rebuild,
  // and the scan reads every flag of every layer.
  decimated_comparison_ = -1;
  if (!trace_) return;
  for (size_t k = 0; k < comparisons_.size() && decimated_comparison_ < 0; ++k) {
    const Trace& c = *comparisons_[k].trace;
    if (c.tokens != trace_->tokens) continue;
    for (const LayerTrace& layer : c.layers)
      if (std::any_of(layer.flags.begin(), layer.flags.end(), [](uint8_t f) { return (f & kDecimated) != 0; })) {
        decimated_comparison_ = static_cast<int>(k);
        break;
      }
  }
}

void TraceDocument::setGrid(Json results, eval::PasskeyGrid grid, const QString& source) {
  grid_results_ = std::move(results);
  grid_ = std::move(grid);
  grid_source_ = source;
  Q_EMIT gridChanged();
}

void TraceDocument::setComparisonGrid(Json results, eval::PasskeyGrid grid, const QString& source) {
  comparison_grid_results_ = std::move(results);
  comparison_grid_ = std::move(grid);
  comparison_grid_source_ = source;
  Q_EMIT gridChanged();
}

void TraceDocument::clearComparisonGrid() { setComparisonGrid(Json(), eval::PasskeyGrid(), QString()); }

int64_t TraceDocument::nextNoted(int layer, int64_t from, int direction) const {
  if (!trace_ || layer < 0 || layer >= layers() || direction == 0) return -1;
  const auto& flags = trace_->layers[layer].flags;
  const int64_t n = std::min<int64_t>(static_cast<int64_t>(flags.size()), length());
  const int64_t step = direction > 0 ? 1 : -1;
  for (int64_t t = from + step; t >= 0 && t < n; t += step)
    if (flags[t] & kNoted) return t;
  return -1;
}

void TraceDocument::setPosition(qint64 position) {
  if (!hasTrace()) return;
  position = std::clamp<qint64>(position, 0, length() - 1);
  if (position == position_) return;
  position_ = position;
  Q_EMIT positionChanged(position_);
}

void TraceDocument::setLayer(int layer) {
  if (!hasTrace()) return;
  layer = std::clamp(layer, 0, layers() - 1);
  if (layer == layer_) return;
  layer_ = layer;
  Q_EMIT layerChanged(layer_);
}

std::vector<int64_t> TraceDocument::poolAt(int layer, int64_t position) const {
  if (!replay_) return {};
  return replay_->pool_at(layer, position);
}

int64_t TraceDocument::tokenAtByte(int64_t byte) const {
  if (!trace_ || trace_->char_begin.empty()) return -1;
  const auto& begin = trace_->char_begin;
  auto it = std::upper_bound(begin.begin(), begin.end(), byte);
  if (it == begin.begin()) return 0;
  return static_cast<int64_t>(it - begin.begin()) - 1;
}

QString TraceDocument::tokenText(int64_t t) const {
  if (!trace_ || t < 0 || t >= trace_->length()) return {};
  if (const auto bytes = trace_->token_bytes(t))
    return bytes->empty() ? QString() : QString::fromUtf8(bytes->data(), static_cast<qsizetype>(bytes->size()));
  return QStringLiteral("#%1").arg(trace_->tokens[t]);
}

QString TraceDocument::context(int64_t position, int radius) const {
  if (!trace_ || position < 0 || position >= length()) return {};
  QString out;
  for (int64_t t = std::max<int64_t>(0, position - radius); t <= std::min(length() - 1, position + radius); ++t) {
    const QString piece = tokenText(t);
    out += t == position ? QStringLiteral("[") + piece + QStringLiteral("]") : piece;
  }
  return out.simplified();
}

QString TraceDocument::whyNoted(int layer, int64_t token) const {
  if (!trace_ || layer < 0 || layer >= layers() || token < 0 || token >= length()) return {};
  const LayerTrace& l = trace_->layers[layer];
  QString text = tr("token %L1 \"%2\", layer %3").arg(token).arg(tokenText(token).trimmed().toHtmlEscaped()).arg(layer);
  const Json& info = trace_->run_info;
  const bool has_tau = info.is_object() && info.contains("tau_note") && info.at("tau_note").is_number();
  const double tau = has_tau ? info.at("tau_note").as_double() : std::nan("");
  const bool noted = token < static_cast<int64_t>(l.flags.size()) && (l.flags[token] & kNoted);
  if (token < static_cast<int64_t>(l.importance.size())) {
    const double importance = l.importance[token];
    text += tr("<br>importance %1").arg(importance, 0, 'f', 3);
    if (has_tau) text += importance > tau ? tr(" &gt; tau1 %1").arg(tau, 0, 'f', 3) : tr(" &le; tau1 %1").arg(tau, 0, 'f', 3);
  }
  if (!noted) return text + tr("<br>not noted");
  // The note that holds this token, and what became of it in the pool.
  int64_t note = -1;
  for (size_t n = 0; n < trace_->notes.size() && note < 0; ++n) {
    const NoteInfo& info_n = trace_->notes[n];
    if (info_n.layer != layer) continue;
    for (int64_t s : info_n.sources)
      if (s == token) note = static_cast<int64_t>(n);
  }
  if (note < 0) return text + tr("<br>noted (its note is not in the trace)");
  return text + QStringLiteral("<br>") + noteStory(note);
}

QString TraceDocument::noteStory(int64_t note) const {
  if (!trace_ || note < 0 || note >= static_cast<int64_t>(trace_->notes.size())) return {};
  const NoteInfo& n = trace_->notes[note];
  QString text = tr("<b>note %1</b> of layer %2, priority %3").arg(n.local_id).arg(n.layer).arg(n.priority, 0, 'f', 3);
  if (!n.sources.empty())
    text += tr("<br>from token %L1 \"%2\": %3")
                .arg(n.sources.front())
                .arg(tokenText(n.sources.front()).trimmed().toHtmlEscaped(), context(n.sources.front(), 4).toHtmlEscaped());
  const NoteLife life = note_life(*trace_, note);
  if (life.dropped) return text + tr("<br>dropped: not kept in the pool (full of notes of higher priority, or a memory edit)");
  if (life.inserted >= 0) text += tr("<br>slot %1 from token %L2").arg(life.slot).arg(life.inserted + 1);
  text += life.evicted >= 0 ? tr(", evicted at token %L1").arg(life.evicted) : tr(", still in the pool at the end");
  return text;
}

QString TraceDocument::spanSummary(int layer, int64_t begin, int64_t end) const {
  if (!trace_ || layer < 0 || layer >= layers()) return {};
  begin = std::max<int64_t>(0, begin);
  end = std::min(end, length());
  if (end <= begin) return {};
  if (end - begin == 1) return whyNoted(layer, begin);
  const LayerTrace& l = trace_->layers[layer];
  int64_t noted = 0, triggered = 0, top = begin;
  for (int64_t t = begin; t < end; ++t) {
    noted += (l.flags[t] & kNoted) != 0;
    triggered += (l.flags[t] & kTriggered) != 0;
    if (l.importance[t] > l.importance[top]) top = t;
  }
  return tr("layer %1, tokens %L2-%L3: %4 noted, %5 read the pool<br>the most important of them:<br>")
             .arg(layer).arg(begin).arg(end - 1).arg(noted).arg(triggered) +
         whyNoted(layer, top);
}

QString TraceDocument::noteLabel(int64_t note) const {
  if (!trace_ || note < 0 || note >= static_cast<int64_t>(trace_->notes.size())) return {};
  const NoteInfo& n = trace_->notes[note];
  if (n.sources.empty()) return QStringLiteral("note %1").arg(note);
  return QStringLiteral("@%1 %2").arg(n.sources.front()).arg(context(n.sources.front(), 3));
}

}  // namespace memmamba::views
