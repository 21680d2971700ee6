#include "model/memory/state_pool.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace memmamba {

void normalize_into(const float* s, int64_t width, float* out) {
  double sq = 0;
  for (int64_t i = 0; i < width; ++i) sq += static_cast<double>(s[i]) * s[i];
  const float inv = sq > 1e-24 ? static_cast<float>(1.0 / std::sqrt(sq)) : 0.f;
  for (int64_t i = 0; i < width; ++i) out[i] = s[i] * inv;
}

float unit_dot(const float* a, const float* b, int64_t n) {
  float acc = 0.f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

int64_t StatePool::occupied() const {
  return std::count_if(note_id_.begin(), note_id_.end(), [](int64_t id) { return id >= 0; });
}

std::pair<float, int64_t> StatePool::best_match(const float* unit) const {
  float best = -std::numeric_limits<float>::infinity();
  int64_t best_slot = -1;
  for (int64_t j = 0; j < slots_; ++j) {
    if (note_id_[j] < 0) continue;
    const float c = unit_dot(unit, &unit_[j * width_], width_);
    if (c > best) { best = c; best_slot = j; }
  }
  return {best, best_slot};
}

int64_t StatePool::remove(int64_t note_id, int64_t position, std::vector<PoolEventRecord>& events) {
  for (int64_t j = 0; j < slots_; ++j) {
    if (note_id_[j] != note_id) continue;
    events.push_back({position, PoolEventKind::Evict, static_cast<int32_t>(j), note_id, priority_[j]});
    note_id_[j] = -1;
    priority_[j] = 0.f;
    inserted_[j] = -1;
    std::fill(&unit_[j * width_], &unit_[(j + 1) * width_], 0.f);
    return j;
  }
  return -1;
}

int64_t StatePool::insert(int64_t note_id, float priority, int64_t window, const float* unit, PoolPolicy policy,
                          int64_t position, std::vector<PoolEventRecord>& events, const std::set<int64_t>* pinned,
                          bool forced) {
  int64_t target = -1;
  for (int64_t j = 0; j < slots_ && target < 0; ++j)
    if (note_id_[j] < 0) target = j;
  if (target < 0 && ((pinned && !pinned->empty()) || forced)) {
    // Pinned notes are out of the contest: the victim is chosen among the others.
    int64_t victim = -1;
    for (int64_t j = 0; j < slots_; ++j) {
      if (pinned && pinned->count(note_id_[j])) continue;
      if (victim < 0) { victim = j; continue; }
      const bool older = inserted_[j] < inserted_[victim] || (inserted_[j] == inserted_[victim] && j < victim);
      if (policy == PoolPolicy::Fifo ? older : (priority_[j] < priority_[victim] || (priority_[j] == priority_[victim] && older)))
        victim = j;
    }
    if (victim < 0 || (!forced && policy == PoolPolicy::Priority && !(priority > priority_[victim]))) {
      events.push_back({position, PoolEventKind::Drop, -1, note_id, priority});
      return -1;
    }
    events.push_back({position, PoolEventKind::Evict, static_cast<int32_t>(victim), note_id_[victim], priority_[victim]});
    target = victim;
  }
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

}  // namespace memmamba
