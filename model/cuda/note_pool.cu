// The Note Block's bookkeeping on the GPU, for windows of one token (w = 1).
//
// Each token's decision depends on the pool as the earlier decisions left it (novelty
// compares the token with the notes in the pool; the priority policy evicts by what is
// there), so the walk over tokens is sequential. It runs as one warp per sequence,
// whole chunk in one launch, with no host round trip:
//   - the K slot unit vectors live in shared memory (rows padded by one float so that
//     32 lanes reading 32 different slots hit 32 banks);
//   - each lane owns slots `lane` and `lane + 32` (their priority, insertion position,
//     note id and bank index in registers) and computes their cosines;
//   - best match, free slot and eviction victim are warp reductions (shuffles, ballots);
//   - the token's summary is read two floats per lane, the next one prefetched.
// The decisions equal NoteTaker's (model/note_block.cpp) for w = 1: same tie rules
// (first best slot; lowest priority then oldest then lowest slot for eviction).
#include <cuda_runtime.h>

#include <cfloat>

#include "model/cuda/kernels.h"

namespace memmamba::cuda_kernels {
namespace {

constexpr int kMaxSlots = 64;
constexpr int kMaxWidth = 64;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__global__ void note_pool_kernel(NotePoolProblem p) {
  __shared__ float units[kMaxSlots][kMaxWidth + 1];
  __shared__ float token_unit[kMaxWidth];
  const int lane = threadIdx.x;
  const int64_t b = blockIdx.x;
  const int K = static_cast<int>(p.slots), S = static_cast<int>(p.width);
  const int64_t T = p.length;
  const int64_t pos0 = *p.position;

  // Slots owned by this lane: j0 = lane, j1 = lane + 32.
  const int j0 = lane, j1 = lane + 32;
  const bool has0 = j0 < K, has1 = j1 < K;
  float pri0 = 0.f, pri1 = 0.f;
  int64_t ins0 = -1, ins1 = -1, id0 = -1, id1 = -1, bank0 = -1, bank1 = -1;
  const int64_t sk = b * K;
  if (has0) { pri0 = p.slot_priority[sk + j0]; ins0 = p.slot_inserted[sk + j0]; id0 = p.slot_note_id[sk + j0]; }
  if (has1) { pri1 = p.slot_priority[sk + j1]; ins1 = p.slot_inserted[sk + j1]; id1 = p.slot_note_id[sk + j1]; }
  bank0 = id0 >= 0 ? j0 : -1;
  bank1 = id1 >= 0 ? j1 : -1;
  for (int j = 0; j < K; ++j)
    for (int k = lane; k < kMaxWidth; k += 32) units[j][k] = k < S ? p.slot_unit[(sk + j) * S + k] : 0.f;
  for (int k = lane; k < kMaxWidth; k += 32) token_unit[k] = 0.f;
  float next_istate = p.next_istate[b];
  int64_t notes_made = p.notes_made[b];
  __syncwarp();

  const float* summaries = p.summaries + b * T * S;
  float n0 = lane < S && T > 0 ? summaries[lane] : 0.f;
  float n1 = lane + 32 < S && T > 0 ? summaries[lane + 32] : 0.f;
  for (int64_t t = 0; t < T; ++t) {
    const float s0 = n0, s1 = n1;
    if (t + 1 < T) {  // prefetch the next token's summary
      n0 = lane < S ? summaries[(t + 1) * S + lane] : 0.f;
      n1 = lane + 32 < S ? summaries[(t + 1) * S + lane + 32] : 0.f;
    }
    const float sq = warp_sum(s0 * s0 + s1 * s1);
    const float inv = sq > 1e-24f ? rsqrtf(sq) : 0.f;
    if (lane < S) token_unit[lane] = s0 * inv;
    if (lane + 32 < S) token_unit[lane + 32] = s1 * inv;
    __syncwarp();

    // Cosine with this lane's slots.
    // Fixed-length dots over zero-padded rows, four partial sums each: the loop unrolls
    // and the shared-memory loads overlap instead of forming one long dependency chain.
    float c0 = -FLT_MAX, c1 = -FLT_MAX;
    {
      float a[4] = {0.f, 0.f, 0.f, 0.f}, e[4] = {0.f, 0.f, 0.f, 0.f};
      const float* r0 = units[j0 < K ? j0 : 0];
      const float* r1 = units[j1 < K ? j1 : 0];
#pragma unroll
      for (int k = 0; k < kMaxWidth; ++k) {
        const float x = token_unit[k];
        a[k & 3] += x * r0[k];
        e[k & 3] += x * r1[k];
      }
      if (id0 >= 0) c0 = (a[0] + a[1]) + (a[2] + a[3]);
      if (id1 >= 0) c1 = (e[0] + e[1]) + (e[2] + e[3]);
    }
    // Best slot: the largest cosine, the lowest slot on ties.
    float best = c0;
    int best_slot = id0 >= 0 ? j0 : kMaxSlots;
    if (c1 > best) { best = c1; best_slot = j1; }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int os = __shfl_xor_sync(0xffffffffu, best_slot, o);
      if (ob > best || (ob == best && os < best_slot)) { best = ob; best_slot = os; }
    }
    const bool pool_empty = best_slot >= kMaxSlots;

    const float istate = next_istate;
    next_istate = pool_empty ? 1.f : 1.f - best;
    const float importance = p.learned ? p.learned[b * T + t] : (pool_empty ? 1.f : 1.f - best);
    const bool noted = importance > p.tau_note;
    // The bank index of the reference slot, read from its owner lane.
    const int64_t ref_bank0 = __shfl_sync(0xffffffffu, best_slot < 32 ? bank0 : bank1, best_slot & 31);

    int64_t* vis = p.visible + (b * T + t) * K;
    if (has0) vis[j0] = bank0;
    if (has1) vis[j1] = bank1;

    int32_t taken = -1;
    int64_t evicted = -1;
    float evicted_priority = 0.f;
    if (noted) {
      const unsigned free0 = __ballot_sync(0xffffffffu, has0 && id0 < 0);
      const unsigned free1 = __ballot_sync(0xffffffffu, has1 && id1 < 0);
      int target = free0 ? __ffs(free0) - 1 : (free1 ? 32 + __ffs(free1) - 1 : -1);
      if (target < 0) {
        // Victim: FIFO the oldest; priority the lowest priority, oldest on ties; then lowest slot.
        float vp = pri0;
        int64_t vi = ins0;
        int vs = has0 ? j0 : kMaxSlots;
        auto better = [&](float op, int64_t oi, int os) {
          if (os >= kMaxSlots) return false;
          if (vs >= kMaxSlots) return true;
          if (!p.fifo) {
            if (op != vp) return op < vp;
          }
          if (oi != vi) return oi < vi;
          return os < vs;
        };
        if (has1 && better(pri1, ins1, j1)) { vp = pri1; vi = ins1; vs = j1; }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
          const float op = __shfl_xor_sync(0xffffffffu, vp, o);
          const int64_t oi = __shfl_xor_sync(0xffffffffu, vi, o);
          const int os = __shfl_xor_sync(0xffffffffu, vs, o);
          if (better(op, oi, os)) { vp = op; vi = oi; vs = os; }
        }
        if (p.fifo || importance > vp) {
          target = vs;
          evicted = __shfl_sync(0xffffffffu, vs < 32 ? id0 : id1, vs & 31);
          evicted_priority = vp;
        }
      }
      if (target >= 0) {
        taken = target;
        const int64_t bank = K + t;
        if (target == j0) { pri0 = importance; ins0 = pos0 + t; id0 = notes_made; bank0 = bank; }
        if (target == j1) { pri1 = importance; ins1 = pos0 + t; id1 = notes_made; bank1 = bank; }
        for (int k = lane; k < S; k += 32) units[target][k] = token_unit[k];
      }
      ++notes_made;  // a dropped note still takes an id, as in NoteTaker
    }
    if (lane == 0) {
      const int64_t i = b * T + t;
      p.importance[i] = importance;
      p.istate[i] = istate;
      p.flags[i] = static_cast<uint8_t>((noted ? 1 : 0) | (istate > p.tau_retrieve ? 2 : 0));
      p.reference[i] = pool_empty ? -1 : ref_bank0;
      p.slot_taken[i] = taken;
      p.evicted_note[i] = evicted;
      p.evicted_priority[i] = evicted_priority;
    }
    __syncwarp();
  }

  if (has0) p.final_bank[sk + j0] = bank0;
  if (has1) p.final_bank[sk + j1] = bank1;
  if (has0) { p.slot_priority[sk + j0] = pri0; p.slot_inserted[sk + j0] = ins0; p.slot_note_id[sk + j0] = id0; }
  if (has1) { p.slot_priority[sk + j1] = pri1; p.slot_inserted[sk + j1] = ins1; p.slot_note_id[sk + j1] = id1; }
  __syncwarp();
  for (int j = 0; j < K; ++j)
    for (int k = lane; k < S; k += 32) p.slot_unit[(sk + j) * S + k] = units[j][k];
  if (lane == 0) {
    p.next_istate[b] = next_istate;
    p.notes_made[b] = notes_made;
  }
}

}  // namespace

bool note_pool_supported(int64_t slots, int64_t width) {
  return slots >= 1 && slots <= kMaxSlots && width >= 1 && width <= kMaxWidth;
}

void note_pool(const NotePoolProblem& p, void* stream) {
  if (p.batch < 1) return;
  note_pool_kernel<<<static_cast<unsigned>(p.batch), 32, 0, static_cast<cudaStream_t>(stream)>>>(p);
}

}  // namespace memmamba::cuda_kernels
