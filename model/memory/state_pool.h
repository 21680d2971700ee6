// The state pool (paper section 3.2): K slots of notes per layer and sequence, with
// priority or FIFO eviction. Host version; the GPU's copy of the same rules is
// model/cuda/note_pool.cu (`warp_victim`). Torch-free.
#pragma once
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "model/config.h"

namespace memmamba {

enum class PoolEventKind : uint8_t { Insert = 0, Evict = 1, Drop = 2 };

struct PoolEventRecord {
  int64_t position;  // the window's last token; the change is visible from position + 1
  PoolEventKind kind;
  int32_t slot;      // -1 for Drop
  int64_t note_id;   // layer-local id, sequential from 0
  float priority;
};

class StatePool {
 public:
  StatePool(int64_t slots, int64_t width) : slots_(slots), width_(width), note_id_(slots, -1), priority_(slots, 0.f),
                                            inserted_(slots, -1), unit_(slots * width, 0.f) {}
  int64_t slots() const { return slots_; }
  int64_t occupied() const;
  int64_t note_id(int64_t slot) const { return note_id_[slot]; }
  float priority(int64_t slot) const { return priority_[slot]; }
  int64_t inserted_at(int64_t slot) const { return inserted_[slot]; }
  // Largest cosine between `unit` (a unit vector) and the occupied slots, lowest slot on
  // ties; slot -1 when empty.
  std::pair<float, int64_t> best_match(const float* unit) const;
  // Applies the policy; appends the events; returns the slot taken or -1 when dropped.
  // Notes in `pinned` (an edit) are never chosen as victims; `forced` (a planted note)
  // evicts the policy's victim even where its priority is higher.
  int64_t insert(int64_t note_id, float priority, int64_t window, const float* unit, PoolPolicy policy,
                 int64_t position, std::vector<PoolEventRecord>& events, const std::set<int64_t>* pinned = nullptr,
                 bool forced = false);
  // Empties the slot holding `note_id` (an edit); returns it, or -1 when the note is not in the pool.
  int64_t remove(int64_t note_id, int64_t position, std::vector<PoolEventRecord>& events);

 private:
  int64_t slots_, width_;
  std::vector<int64_t> note_id_;
  std::vector<float> priority_;
  std::vector<int64_t> inserted_;  // window index of insertion, for ties and FIFO
  std::vector<float> unit_;
};

// Unit vector of s (zero vector stays zero).
void normalize_into(const float* s, int64_t width, float* out);
// Plain float dot product, summed in index order (the GPU walk's `unit_dot` sums the same way).
float unit_dot(const float* a, const float* b, int64_t n);

}  // namespace memmamba
