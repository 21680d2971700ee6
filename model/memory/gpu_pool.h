// The pool walked on the GPU (model/cuda/note_pool.cu), windows of one token: every token
// is a candidate note, so a chunk's bank is the K carried slots followed by the T
// summaries (bank index K + t is token t's note) and no host round trip builds it.
#pragma once
#include "model/cuda/note_pool_op.h"
#include "model/memory/layer_pool.h"

namespace memmamba {

class GpuPool : public LayerPool {
 public:
  // position: int64 [1] on the device, the run's absolute position (RunState::device_position).
  GpuPool(const ModelConfig& config, int64_t batch, const torch::Device& device, torch::Tensor position);
  PoolWalkResult walk(const NoteInputs& in, const MemorySettings& settings, const WalkRequest& request) override;
  std::vector<int64_t> slot_note_ids(int64_t sequence) const override;
  int64_t notes_made(int64_t sequence) const override { return pool_.notes_made[sequence].item<int64_t>(); }
  bool capturable() const override { return true; }
  std::vector<torch::Tensor*> carried_tensors() override { return {&vectors_, &priority_}; }
  // Step mode's fused kernels read and update these in place (model/cuda/fused_step.cpp).
  struct StepTensors {
    cuda_ops::DevicePool* pool;
    torch::Tensor* vectors;
    torch::Tensor* priority;
  };
  StepTensors step_tensors() { return {&pool_, &vectors_, &priority_}; }

 private:
  int64_t slots_, width_;
  cuda_ops::DevicePool pool_;
  torch::Tensor position_;
  torch::Tensor vectors_;   // [B, K, S], zero rows for empty slots
  torch::Tensor priority_;  // [B, K], 1 for empty slots
};

}  // namespace memmamba
