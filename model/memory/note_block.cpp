#include "model/memory/note_block.h"

#include <algorithm>
#include <cmath>

#include "model/memory/retrieval_trigger.h"

namespace memmamba {

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
  // Thresholds compared in float, as on the GPU, so both walks agree on a tie.
  d.trigger = retrieval_fires(d.istate, static_cast<float>(settings.tau_retrieve));

  const auto [pool_cos, pool_slot] = pool_.best_match(unit.data());
  next_istate_ = state_importance(pool_cos, pool_slot < 0);

  if (settings.importance == ImportanceRule::Learned) {
    d.importance = learned_importance;
  } else {
    float best = pool_cos;
    d.reference = pool_slot < 0 ? ImportanceReference{} : ImportanceReference{ImportanceReference::Kind::Slot, pool_slot};
    for (size_t i = 0; i < open_units_.size(); ++i) {
      const float c = unit_dot(unit.data(), open_units_[i].data(), width_);
      if (c > best) {
        best = c;
        d.reference = {ImportanceReference::Kind::Token, open_positions_[i]};
      }
    }
    d.importance = d.reference.kind == ImportanceReference::Kind::None ? 1.f : 1.f - best;
  }
  d.noted = d.importance > static_cast<float>(settings.tau_note);

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
      if (edits_ && edits_->drops(note.note_id, note.sources)) {  // an edit: the note is made but never kept
        events.push_back({pos, PoolEventKind::Drop, -1, note.note_id, note.priority});
        note.slot = -1;
      } else {
        note.slot = static_cast<int32_t>(pool_.insert(note.note_id, note.priority, note.window, note_unit.data(),
                                                      settings.policy, pos, events, edits_ ? &edits_->pinned : nullptr));
      }
      notes.push_back(std::move(note));
    }
    open_positions_.clear();
    open_summaries_.clear();
    open_units_.clear();
    open_sources_.clear();
    open_priority_ = -std::numeric_limits<float>::infinity();
    open_priority_source_ = -1;
  }
  if (edits_) apply_edits(pos, d, s, settings, events, notes);
  return d;
}

// Edits that act at a token, after its own decisions: a planted note goes in, then the
// notes to remove leave (both visible from the next token, as every pool change).
void NoteTaker::apply_edits(int64_t pos, const TokenDecision& d, const float* s, const MemorySettings& settings,
                            std::vector<PoolEventRecord>& events, std::vector<NoteMade>& notes) {
  if (edits_->plant_sources.count(pos)) plant_summaries_[pos] = {std::vector<float>(s, s + width_), d.importance};
  if (auto it = edits_->plant_after.find(pos); it != edits_->plant_after.end()) {
    for (int64_t source : it->second) {
      const auto& [summary, importance] = plant_summaries_.at(source);
      NoteMade note;
      note.note_id = next_note_id_++;
      note.window = pos / window_;
      note.priority = importance;
      note.priority_source = source;
      note.sources = {source};
      note.channel_source.assign(static_cast<size_t>(width_), source);
      note.vector = summary;
      std::vector<float> unit(width_);
      normalize_into(summary.data(), width_, unit.data());
      note.slot = static_cast<int32_t>(
          pool_.insert(note.note_id, note.priority, note.window, unit.data(), settings.policy, pos, events, &edits_->pinned,
                       /*forced=*/true));
      notes.push_back(std::move(note));
    }
  }
  if (auto it = edits_->remove_after.find(pos); it != edits_->remove_after.end())
    for (int64_t id : it->second) pool_.remove(id, pos, events);
}

}  // namespace memmamba
