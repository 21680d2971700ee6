// The Note Block's bookkeeping as one GPU launch per chunk and layer (windows of one
// token; see model/cuda/note_pool.cu). Without CUDA kernels in the build, available()
// is false and the model keeps the host bookkeeping.
#pragma once
#include <torch/types.h>

#include "model/memory/note_block.h"

namespace memmamba::cuda_ops {

// One layer's pool on the device, per sequence of the batch.
struct DevicePool {
  torch::Tensor slot_unit;      // [B, K, S] fp32
  torch::Tensor slot_priority;  // [B, K] fp32 (the decisions' priorities)
  torch::Tensor slot_inserted;  // [B, K] int64
  torch::Tensor slot_note_id;   // [B, K] int64, -1 empty
  torch::Tensor next_istate;    // [B] fp32
  torch::Tensor notes_made;     // [B] int64
  bool defined() const { return slot_unit.defined(); }
};

struct DevicePoolDecisions {
  torch::Tensor importance, istate;  // [B, T] fp32
  torch::Tensor flags;               // [B, T] uint8: 1 noted, 2 trigger
  torch::Tensor reference;           // [B, T] int64 bank index or -1
  torch::Tensor visible;             // [B, T, K] int64 bank index or -1 (bank = K slots, then T tokens)
  torch::Tensor slot_taken;          // [B, T] int32
  torch::Tensor evicted_note;        // [B, T] int64
  torch::Tensor evicted_priority;    // [B, T] fp32
  torch::Tensor final_bank;          // [B, K] int64
};

inline DevicePool new_device_pool(int64_t batch, int64_t slots, int64_t width, const torch::Device& device) {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  auto i64 = f32.dtype(torch::kInt64);
  return {torch::zeros({batch, slots, width}, f32), torch::zeros({batch, slots}, f32),
          torch::full({batch, slots}, -1, i64),         torch::full({batch, slots}, -1, i64),
          torch::ones({batch}, f32),                    torch::zeros({batch}, i64)};
}

// How the pool's decisions are walked (model/cuda/note_pool.cu): one token at a time, or
// note by note with the tokens between two notes decided together. Both decide the same,
// bit for bit; Auto takes events for chunks of kEventWalkMinTokens tokens or more.
enum class PoolWalk { Auto, Sequential, Events };
constexpr int64_t kEventWalkMinTokens = 64;

// Slot attention without autograd on the GPU (model/cuda/slot_attention.cu): queries [n, S]
// already projected, keys and values [nb, S], log priorities [nb], visible [n, M] int64.
struct SlotAttentionRows {
  torch::Tensor context;  // [n, S] fp32 (before the output projection)
  torch::Tensor weights;  // [n, M] fp32
};

#ifdef MEMMAMBA_WITH_CUDA
bool slot_attention_available(const torch::Tensor& queries, int64_t columns);
SlotAttentionRows slot_attention_rows(const torch::Tensor& queries, const torch::Tensor& keys, const torch::Tensor& values,
                                      const torch::Tensor& log_priority, const torch::Tensor& visible, double scale);
bool note_pool_available(int64_t slots, int64_t width);
// summaries [B, T, S] and learned [B, T] (undefined for novelty) on the pool's device;
// position: int64 [1] on the device, the absolute position of token 0.
DevicePoolDecisions note_pool(const torch::Tensor& summaries, const torch::Tensor& learned,
                              const MemorySettings& settings, DevicePool& pool, const torch::Tensor& position,
                              PoolWalk walk = PoolWalk::Auto);
#else
inline bool slot_attention_available(const torch::Tensor&, int64_t) { return false; }
[[noreturn]] inline SlotAttentionRows slot_attention_rows(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                                          const torch::Tensor&, const torch::Tensor&, double) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels (Torch without CUDA)");
}
inline bool note_pool_available(int64_t, int64_t) { return false; }
[[noreturn]] inline DevicePoolDecisions note_pool(const torch::Tensor&, const torch::Tensor&, const MemorySettings&,
                                                  DevicePool&, const torch::Tensor&, PoolWalk = PoolWalk::Auto) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels (Torch without CUDA)");
}
#endif

}  // namespace memmamba::cuda_ops
