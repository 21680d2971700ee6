// The Note Block's decisions on the host (paper section 3.2, eq. 5, 8, 9): which tokens
// are noted, windows closed into notes, notes put into the state pool, and the retrieval
// trigger. Plain floats, one token at a time: the host pool walk (host_pool.cpp) runs it
// for chunks and for single steps alike. The GPU walks the same rules in
// model/cuda/note_pool.cu. Torch-free.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <vector>

#include "model/config.h"
#include "model/memory/memory_edits.h"
#include "model/memory/state_pool.h"

namespace memmamba {

// The memory switches a run may change without retraining.
struct MemorySettings {
  bool enabled = true;
  double tau_note = 0.3;
  double tau_retrieve = 0.5;
  ImportanceRule importance = ImportanceRule::Novelty;
  PoolPolicy policy = PoolPolicy::Priority;
  double fusion_gain = 1.0;  // multiplies the memory's fusion terms (ModelConfig::fusion_gain)
  static MemorySettings from(const ModelConfig& c) {
    return {c.memory, c.tau_note, c.tau_retrieve, c.importance, c.pool_policy, c.fusion_gain};
  }
  // As recorded in traces and result files; `model_has_memory` is the config's switch.
  Json to_json(bool model_has_memory) const {
    Json j = Json::object();
    j["memory_enabled"] = enabled && model_has_memory;
    j["tau_note"] = tau_note;
    j["tau_retrieve"] = tau_retrieve;
    j["importance"] = memmamba::to_string(importance);
    j["pool_policy"] = memmamba::to_string(policy);
    j["fusion_gain"] = fusion_gain;
    return j;
  }
};

struct NoteMade {
  int64_t note_id;
  int64_t window;
  float priority;
  int64_t priority_source;            // position whose importance is the note's priority
  std::vector<int64_t> sources;       // noted positions of the window
  std::vector<int64_t> channel_source;  // per summary channel, the position holding the max
  std::vector<float> vector;          // the note (element-wise max of the noted summaries)
  int32_t slot = -1;                  // where it went, -1 when dropped
};

// What the decision at one token referred to, so the parallel mode can rebuild the
// importance differentiably: a pool slot, an earlier token of the same window, or nothing.
struct ImportanceReference {
  enum class Kind : uint8_t { None, Slot, Token } kind = Kind::None;
  int64_t index = -1;  // slot index, or absolute token position
};

struct TokenDecision {
  float importance = 0;
  bool noted = false;
  float istate = 1;
  bool trigger = false;
  ImportanceReference reference;
};

// One layer's note-taking over one sequence, one token at a time.
class NoteTaker {
 public:
  NoteTaker(int64_t slots, int64_t width, int64_t window);

  // s: the token's candidate summary (width floats); learned_importance is used by the learned rule.
  // Appends pool events and, when the token closes a window with notes, the note made.
  TokenDecision observe(const float* s, float learned_importance, const MemorySettings& settings,
                        std::vector<PoolEventRecord>& events, std::vector<NoteMade>& notes);

  // Edits of this layer's pool (interventions), applied as the walk reaches them; the
  // object must outlive the taker.
  void set_edits(const PoolEdits* edits) { edits_ = edits && !edits->empty() ? edits : nullptr; }

  const StatePool& pool() const { return pool_; }
  int64_t position() const { return position_; }
  int64_t notes_made() const { return next_note_id_; }
  // Raw summary of an earlier token of the open window (for the parallel mode's constants).
  const std::vector<int64_t>& open_positions() const { return open_positions_; }
  const std::vector<std::vector<float>>& open_summaries() const { return open_summaries_; }
  // The open window's running max and its sources (the parallel mode needs them as constants).
  const std::vector<float>& open_max() const { return open_max_; }
  float open_priority() const { return open_priority_; }

 private:
  void apply_edits(int64_t pos, const TokenDecision& d, const float* s, const MemorySettings& settings,
                   std::vector<PoolEventRecord>& events, std::vector<NoteMade>& notes);
  StatePool pool_;
  const PoolEdits* edits_ = nullptr;
  std::map<int64_t, std::pair<std::vector<float>, float>> plant_summaries_;  // source -> (summary, importance)
  int64_t width_, window_;
  int64_t position_ = 0;
  int64_t next_note_id_ = 0;
  float next_istate_ = 1.f;
  // Open window.
  std::vector<int64_t> open_positions_;             // every token of the window so far
  std::vector<std::vector<float>> open_summaries_;  // their raw summaries
  std::vector<std::vector<float>> open_units_;      // and unit vectors
  std::vector<int64_t> open_sources_;               // the noted ones
  std::vector<float> open_max_;
  std::vector<int64_t> open_channel_source_;
  float open_priority_ = -std::numeric_limits<float>::infinity();
  int64_t open_priority_source_ = -1;
};

}  // namespace memmamba
