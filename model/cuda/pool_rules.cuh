// The pool's rules as warp operations, shared by the GPU walks (note_pool.cu) and step
// mode's fused kernels (step_kernels.cu), so that both decide alike: the best match and
// its tie rule, the summary's norm, the eviction victim. A warp holds up to 64 slots (lanes
// own slots lane and lane + 32).
#pragma once
#include <cstdint>

namespace memmamba::cuda_kernels {

constexpr int kMaxSlots = 64;
constexpr int kMaxWidth = 64;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

// 1 / |s| of the summary whose channels lane and lane + 32 hold (0 for a zero vector).
__device__ __forceinline__ float warp_inverse_norm(float s0, float s1) {
  const float sq = warp_sum(fmaf(s0, s0, s1 * s1));
  return sq > 1e-24f ? rsqrtf(sq) : 0.f;
}

// The cosine of two unit vectors stored as kMaxWidth floats, zero-padded: the one dot
// product both walks use. Four partial sums: the loop unrolls into independent chains.
__device__ __forceinline__ float unit_dot(const float* x, const float* y) {
  float a[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int k = 0; k < kMaxWidth; ++k) a[k & 3] = fmaf(x[k], y[k], a[k & 3]);
  return (a[0] + a[1]) + (a[2] + a[3]);
}

// The eviction victim among the slots a lane owns and the rest of the warp's: FIFO the
// oldest; priority the lowest priority, oldest on ties; then the lowest slot.
struct Victim {
  float priority;
  int64_t inserted;
  int slot;  // kMaxSlots: none
};
__device__ __forceinline__ bool victim_before(const Victim& a, const Victim& b, bool fifo) {
  if (a.slot >= kMaxSlots) return false;
  if (b.slot >= kMaxSlots) return true;
  if (!fifo && a.priority != b.priority) return a.priority < b.priority;
  if (a.inserted != b.inserted) return a.inserted < b.inserted;
  return a.slot < b.slot;
}
__device__ __forceinline__ Victim warp_victim(Victim v, bool fifo) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const Victim other{__shfl_xor_sync(kFullMask, v.priority, o), __shfl_xor_sync(kFullMask, v.inserted, o),
                       __shfl_xor_sync(kFullMask, v.slot, o)};
    if (victim_before(other, v, fifo)) v = other;
  }
  return v;
}

// Largest cosine and its slot (the lowest on ties) across a warp; slot kMaxSlots when empty.
__device__ __forceinline__ void warp_best(float& best, int& best_slot) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(kFullMask, best, o);
    const int os = __shfl_xor_sync(kFullMask, best_slot, o);
    if (ob > best || (ob == best && os < best_slot)) { best = ob; best_slot = os; }
  }
}

}  // namespace memmamba::cuda_kernels
