// The pool walked on the host: NoteTaker token by token (any window, any rule), then the
// bank built as tensors so that the notes' vectors and priorities stay differentiable.
#pragma once
#include "model/memory/layer_pool.h"

namespace memmamba {

class HostPool : public LayerPool {
 public:
  // edits: this layer's pool edits (interventions), or null; must outlive the pool.
  HostPool(const ModelConfig& config, int64_t batch, const torch::Device& device, const PoolEdits* edits = nullptr);
  PoolWalkResult walk(const NoteInputs& in, const MemorySettings& settings, const WalkRequest& request) override;
  std::vector<int64_t> slot_note_ids(int64_t sequence) const override;
  int64_t notes_made(int64_t sequence) const override { return takers_.at(sequence).notes_made(); }
  bool capturable() const override { return false; }
  std::vector<torch::Tensor*> carried_tensors() override;

 private:
  // Walks sequence b; its importance [T] and trigger [T] go to the two lists.
  SequenceBank walk_sequence(int64_t b, const NoteInputs& in, const torch::Tensor& summaries_cpu,
                             const torch::Tensor& learned_cpu, const MemorySettings& settings,
                             const WalkRequest& request, PoolWalkResult& result,
                             std::vector<torch::Tensor>& importance_out, std::vector<torch::Tensor>& triggered_out);
  int64_t slots_, width_;
  std::vector<NoteTaker> takers_;
  std::vector<torch::Tensor> vectors_;   // [K, S] per sequence, zero rows for empty slots
  std::vector<torch::Tensor> priority_;  // [K], 1 for empty slots (masked anyway)
};

}  // namespace memmamba
