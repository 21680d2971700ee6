#include "model/note_block.h"

#include <algorithm>
#include <cmath>

namespace memmamba {

void normalize_into(const float* s, int64_t width, float* out) {
  double sq = 0;
  for (int64_t i = 0; i < width; ++i) sq += static_cast<double>(s[i]) * s[i];
  const float inv = sq > 1e-24 ? static_cast<float>(1.0 / std::sqrt(sq)) : 0.f;
  for (int64_t i = 0; i < width; ++i) out[i] = s[i] * inv;
}

namespace {
float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}
}  // namespace

int64_t StatePool::occupied() const {
  return std::count_if(note_id_.begin(), note_id_.end(), [](int64_t id) { return id >= 0; });
}

std::pair<float, int64_t> StatePool::best_match(const float* unit) const {
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_slot = -1;
  for (int64_t j = 0; j < slots_; ++j) {
    if (note_id_[j] < 0) continue;
    const float c = dot(unit, &unit_[j * width_], width_);
    if (c > best) { best = c; best_slot = j; }
  }
  return {best, best_slot};
}

int64_t StatePool::insert(int64_t note_id, float priority, int64_t window, const float* unit, PoolPolicy policy,
                          int64_t position, std::vector<PoolEventRecord>& events) {
  int64_t target = -1;
  for (int64_t j = 0; j < slots_ && target < 0; ++j)
    if (note_id_[j] < 0) target = j;
  if (target < 0) {
    // Victim: FIFO takes the oldest; priority takes the lowest priority, oldest on ties.
    int64_t victim = 0;
    for (int64_t j = 1; j < slots_; ++j) {
      const bool older = inserted_[j] < inserted_[victim] || (inserted_[j] == inserted_[victim] && j < victim);
      if (policy == PoolPolicy::Fifo) {
        if (older) victim = j;
      } else if (priority_[j] < priority_[victim] || (priority_[j] == priority_[victim] && older)) {
        victim = j;
      }
    }
    if (policy == PoolPolicy::Priority && !(priority > priority_[victim])) {
      events.push_back({position, PoolEventKind::Drop, -1, note_id, priority});
      return -1;
    }
    events.push_back({position, PoolEventKind::Evict, static_cast<int32_t>(victim), note_id_[victim], priority_[victim]});
    target = victim;
  }
  note_id_[target] = note_id;
  priority_[target] = priority;
  inserted_[target] = window;
  std::copy(unit, unit + width_, &unit_[target * width_]);
  events.push_back({position, PoolEventKind::Insert, static_cast<int32_t>(target), note_id, priority});
  return target;
}

NoteTaker::NoteTaker(int64_t slots, int64_t width, int64_t window)
    : pool_(slots, width), width_(width), window_(window), open_max_(width, 0.f), open_channel_source_(width, -1) {}

TokenDecision NoteTaker::observe(const float* s, float learned_importance, const MemorySettings& settings,
                                 std::vector<PoolEventRecord>& events, std::vector<NoteMade>& notes) {
  TokenDecision d;
  const int64_t pos = position_++;
  std::vector<float> unit(width_);
  normalize_into(s, width_, unit.data());

  // Retrieval trigger: the previous token's summary against the pool it could see.
  d.istate = next_istate_;
  d.trigger = d.istate > settings.tau_retrieve;

  const auto [pool_cos, pool_slot] = pool_.best_match(unit.data());
  next_istate_ = pool_slot < 0 ? 1.f : 1.f - pool_cos;

  if (settings.importance == ImportanceRule::Learned) {
    d.importance = learned_importance;
  } else {
    float best = pool_cos;
    d.reference = pool_slot < 0 ? ImportanceReference{} : ImportanceReference{ImportanceReference::Kind::Slot, pool_slot};
    for (size_t i = 0; i < open_units_.size(); ++i) {
      const float c = dot(unit.data(), open_units_[i].data(), width_);
      if (c > best) {
        best = c;
        d.reference = {ImportanceReference::Kind::Token, open_positions_[i]};
      }
    }
    d.importance = d.reference.kind == ImportanceReference::Kind::None ? 1.f : 1.f - best;
  }
  d.noted = d.importance > settings.tau_note;

  if (d.noted) {
    if (open_sources_.empty()) {
      std::copy(s, s + width_, open_max_.begin());
      std::fill(open_channel_source_.begin(), open_channel_source_.end(), pos);
    } else {
      for (int64_t c = 0; c < width_; ++c)
        if (s[c] > open_max_[c]) { open_max_[c] = s[c]; open_channel_source_[c] = pos; }
    }
    open_sources_.push_back(pos);
    if (d.importance > open_priority_) { open_priority_ = d.importance; open_priority_source_ = pos; }
  }
  if (window_ > 1) {  // earlier tokens of the window only matter when windows hold several tokens
    open_positions_.push_back(pos);
    open_summaries_.emplace_back(s, s + width_);
    open_units_.push_back(std::move(unit));
  }

  if ((pos + 1) % window_ == 0) {  // the window closes
    if (!open_sources_.empty()) {
      NoteMade note;
      note.note_id = next_note_id_++;
      note.window = pos / window_;
      note.priority = open_priority_;
      note.priority_source = open_priority_source_;
      note.sources = open_sources_;
      note.channel_source = open_channel_source_;
      note.vector = open_max_;
      std::vector<float> note_unit(width_);
      normalize_into(open_max_.data(), width_, note_unit.data());
      note.slot = static_cast<int32_t>(
          pool_.insert(note.note_id, note.priority, note.window, note_unit.data(), settings.policy, pos, events));
      notes.push_back(std::move(note));
    }
    open_positions_.clear();
    open_summaries_.clear();
    open_units_.clear();
    open_sources_.clear();
    open_priority_ = -std::numeric_limits<float>::infinity();
    open_priority_source_ = -1;
  }
  return d;
}

}  // namespace memmamba
