// The Note Block's bookkeeping on the GPU, for windows of one token (w = 1).
//
// Token t's novelty reads the pool that the decisions before t left, so the decisions look
// sequential. But the pool changes only when a note is made, and a trained model notes a
// fraction of a percent of tokens: between two notes every token sees the same pool. Two
// walks give the same decisions, bit for bit:
//
// The sequential walk (the reference, and short chunks such as step mode): one warp per
// sequence visits every token in order. The K slot unit vectors live in shared memory; each
// lane owns slots `lane` and `lane + 32`; best match, free slot and eviction victim are warp
// reductions.
//
// The walk by events (long chunks), span by span (kSpanTokens), the spans in order:
//   1. prepare (all SMs): the span's unit vectors, and each token's best match against the
//      pool as the span begins;
//   2. walk (one block per sequence, 512 tokens a tile): each thread holds one token's best
//      match against the pool as it stands: the prepared match while its slot still holds
//      the same note, folded with the notes this span has made. The block finds the first
//      token of the tile that is noted, applies that one note (insert, evict or drop), and
//      the later tokens of the tile fold in the new slot (one dot product each; a token
//      whose best slot was evicted compares again with every slot). Tokens before the note
//      are final as held.
//   3. visible (all SMs, once per chunk): for each token and slot, the note the slot held at
//      that token, from the list of inserts each slot received.
// Spans keep the walk's own work small: a trained model's pool rarely changes within one,
// so most tokens take their prepared match as it is.
// A token's best match is always the maximum over the slots as they stand, computed with
// one dot product (unit_dot) and one tie rule (the lowest slot among equal cosines) in both
// walks, so no token near a threshold can flip between them.
#include <cuda_runtime.h>

#include <cfloat>
#include <climits>

#include "model/cuda/kernels.h"
#include "model/cuda/pool_rules.cuh"
#include "model/memory/retrieval_trigger.h"

namespace memmamba::cuda_kernels {
namespace {

// ---------------------------------------------------------------------------------------
// The sequential walk: one warp per sequence, every token in order.
__global__ void note_pool_sequential_kernel(NotePoolProblem p) {
  __shared__ float units[kMaxSlots][kMaxWidth + 1];  // rows padded: 32 lanes, 32 banks
  __shared__ float token_unit[kMaxWidth];
  const int lane = threadIdx.x;
  const int64_t b = blockIdx.x;
  const int K = static_cast<int>(p.slots), S = static_cast<int>(p.width);
  const int64_t T = p.length;
  const int64_t pos0 = *p.position;

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
    const float inv = warp_inverse_norm(s0, s1);
    if (lane < S) token_unit[lane] = s0 * inv;
    if (lane + 32 < S) token_unit[lane + 32] = s1 * inv;
    __syncwarp();

    float best = -FLT_MAX;
    int best_slot = kMaxSlots;
    if (id0 >= 0) { best = unit_dot(token_unit, units[j0]); best_slot = j0; }
    if (id1 >= 0) {
      const float c1 = unit_dot(token_unit, units[j1]);
      if (c1 > best) { best = c1; best_slot = j1; }
    }
    warp_best(best, best_slot);
    const bool pool_empty = best_slot >= kMaxSlots;

    const float istate = next_istate;
    next_istate = state_importance(best, pool_empty);
    const float importance = p.learned ? p.learned[b * T + t] : (pool_empty ? 1.f : 1.f - best);
    const bool noted = importance > p.tau_note;
    // The bank index of the reference slot, read from its owner lane.
    const int64_t ref_bank = __shfl_sync(kFullMask, best_slot < 32 ? bank0 : bank1, best_slot & 31);

    int64_t* vis = p.visible + (b * T + t) * K;
    if (has0) vis[j0] = bank0;
    if (has1) vis[j1] = bank1;

    int32_t taken = -1;
    int64_t evicted = -1;
    float evicted_priority = 0.f;
    if (noted) {
      const unsigned free0 = __ballot_sync(kFullMask, has0 && id0 < 0);
      const unsigned free1 = __ballot_sync(kFullMask, has1 && id1 < 0);
      int target = free0 ? __ffs(free0) - 1 : (free1 ? 32 + __ffs(free1) - 1 : -1);
      if (target < 0) {
        Victim v{pri0, ins0, has0 ? j0 : kMaxSlots};
        const Victim v1{pri1, ins1, has1 ? j1 : kMaxSlots};
        if (victim_before(v1, v, p.fifo)) v = v1;
        v = warp_victim(v, p.fifo);
        if (p.fifo || importance > v.priority) {
          target = v.slot;
          evicted = __shfl_sync(kFullMask, v.slot < 32 ? id0 : id1, v.slot & 31);
          evicted_priority = v.priority;
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
      p.flags[i] = static_cast<uint8_t>((noted ? 1 : 0) | (retrieval_fires(istate, p.tau_retrieve) ? 2 : 0));
      p.reference[i] = pool_empty ? -1 : ref_bank;
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

// ---------------------------------------------------------------------------------------
// The walk by events, step 1: unit vectors and the best match against the starting pool.
constexpr int kPrepareWarps = 8;

__global__ void __launch_bounds__(kPrepareWarps * 32) note_pool_prepare_kernel(NotePoolProblem p) {
  __shared__ float units[kMaxSlots][kMaxWidth + 1];
  __shared__ float token_unit[kPrepareWarps][kMaxWidth];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t b = blockIdx.y;
  const int K = static_cast<int>(p.slots), S = static_cast<int>(p.width);
  const int64_t T = p.length, sk = b * K;
  for (int i = threadIdx.x; i < K * kMaxWidth; i += blockDim.x) {
    const int j = i / kMaxWidth, k = i % kMaxWidth;
    units[j][k] = k < S ? p.slot_unit[(sk + j) * S + k] : 0.f;
  }
  const int j0 = lane, j1 = lane + 32;
  const int64_t id0 = j0 < K ? p.slot_note_id[sk + j0] : -1, id1 = j1 < K ? p.slot_note_id[sk + j1] : -1;
  __syncthreads();

  const float* summaries = p.summaries + b * T * S;
  for (int64_t t = p.row_begin + static_cast<int64_t>(blockIdx.x) * kPrepareWarps + warp; t < p.row_end;
       t += static_cast<int64_t>(gridDim.x) * kPrepareWarps) {
    const float s0 = lane < S ? summaries[t * S + lane] : 0.f;
    const float s1 = lane + 32 < S ? summaries[t * S + lane + 32] : 0.f;
    const float inv = warp_inverse_norm(s0, s1);
    const float u0 = lane < S ? s0 * inv : 0.f, u1 = lane + 32 < S ? s1 * inv : 0.f;
    token_unit[warp][lane] = u0;
    token_unit[warp][lane + 32] = u1;
    float* row = p.work_units + (b * T + t) * kMaxWidth;
    row[lane] = u0;
    row[lane + 32] = u1;
    __syncwarp();
    float best = -FLT_MAX;
    int best_slot = kMaxSlots;
    if (id0 >= 0) { best = unit_dot(token_unit[warp], units[j0]); best_slot = j0; }
    if (id1 >= 0) {
      const float c1 = unit_dot(token_unit[warp], units[j1]);
      if (c1 > best) { best = c1; best_slot = j1; }
    }
    warp_best(best, best_slot);
    if (lane == 0) {
      p.work_bound[b * T + t] = best;
      p.work_bound_slot[b * T + t] = best_slot >= kMaxSlots ? -1 : best_slot;
    }
    __syncwarp();
  }
}

// Step 2: one block per sequence walks the chunk tile by tile, note by note.
constexpr int kWalkThreads = 512;
constexpr int64_t kSpanTokens = 4096;
constexpr int kWalkWarps = kWalkThreads / 32;

__global__ void __launch_bounds__(kWalkThreads) note_pool_walk_kernel(NotePoolProblem p) {
  __shared__ float units[kMaxSlots][kMaxWidth];
  __shared__ float priority[kMaxSlots];
  __shared__ int64_t inserted[kMaxSlots], note_id[kMaxSlots], bank[kMaxSlots];
  __shared__ int insert_count[kMaxSlots];
  __shared__ bool dirty[kMaxSlots];  // took a note in this span
  __shared__ int warp_first[kWalkWarps];
  __shared__ float candidate_importance[kWalkThreads];
  __shared__ float handed_istate[kWalkThreads];
  __shared__ int first_noted, taken_slot;
  __shared__ int64_t evicted_id, notes_made;
  __shared__ float evicted_priority, carried_istate;

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t b = blockIdx.x;
  const int K = static_cast<int>(p.slots), S = static_cast<int>(p.width);
  const int64_t T = p.length, sk = b * K;
  const int64_t pos0 = *p.position;
  for (int i = tid; i < K * kMaxWidth; i += kWalkThreads) {
    const int j = i / kMaxWidth, k = i % kMaxWidth;
    units[j][k] = k < S ? p.slot_unit[(sk + j) * S + k] : 0.f;
  }
  if (tid < K) {
    priority[tid] = p.slot_priority[sk + tid];
    inserted[tid] = p.slot_inserted[sk + tid];
    note_id[tid] = p.slot_note_id[sk + tid];
    dirty[tid] = false;
    if (p.row_begin == 0) {  // the chunk's first span: slot j is bank index j
      bank[tid] = note_id[tid] >= 0 ? tid : -1;
      insert_count[tid] = 0;
      p.work_initial_bank[sk + tid] = bank[tid];
    } else {  // as the previous span left it
      bank[tid] = p.final_bank[sk + tid];
      insert_count[tid] = p.work_insert_count[sk + tid];
    }
  }
  if (tid == 0) {
    notes_made = p.notes_made[b];
    carried_istate = p.next_istate[b];
  }
  __syncthreads();

  const float* token_units = p.work_units + b * T * kMaxWidth;
  for (int64_t tile0 = p.row_begin; tile0 < p.row_end; tile0 += kWalkThreads) {
    const int64_t row = tile0 + tid;
    const bool live = row < p.row_end;
    float u[kMaxWidth];
    bool have_unit = false;
    float best = -FLT_MAX;
    int best_slot = -1;
    int64_t reference = -1;
    auto consider = [&](int j) {  // j: an occupied slot
      if (!have_unit) {
        const float4* src = reinterpret_cast<const float4*>(token_units + row * kMaxWidth);
#pragma unroll
        for (int q = 0; q < kMaxWidth / 4; ++q) {
          const float4 v = src[q];
          u[4 * q] = v.x; u[4 * q + 1] = v.y; u[4 * q + 2] = v.z; u[4 * q + 3] = v.w;
        }
        have_unit = true;
      }
      const float c = unit_dot(u, units[j]);
      if (c > best || (c == best && j < best_slot)) { best = c; best_slot = j; reference = bank[j]; }
    };
    if (live) {
      // The span's starting pool's best still stands while its slot holds the same note;
      // the other starting slots cannot beat it. Otherwise compare with those left.
      const int start_slot = p.work_bound_slot[b * T + row];
      if (start_slot >= 0 && !dirty[start_slot]) {
        best = p.work_bound[b * T + row];
        best_slot = start_slot;
        reference = bank[start_slot];
      } else if (start_slot >= 0) {
        for (int j = 0; j < K; ++j)
          if (!dirty[j] && note_id[j] >= 0) consider(j);
      }
      for (int j = 0; j < K; ++j)  // the notes this span has made so far
        if (dirty[j]) consider(j);
    }
    const float learned = live && p.learned ? p.learned[b * T + row] : 0.f;
    bool noted = false;
    int32_t my_taken = -1;
    int64_t my_evicted = -1;
    float my_evicted_priority = 0.f;
    int cursor = 0;
    for (;;) {
      const float importance = p.learned ? learned : (best_slot < 0 ? 1.f : 1.f - best);
      const bool candidate = live && tid >= cursor && importance > p.tau_note;
      if (candidate) candidate_importance[tid] = importance;
      const unsigned m = __ballot_sync(kFullMask, candidate);
      if (lane == 0) warp_first[warp] = m ? warp * 32 + __ffs(m) - 1 : INT_MAX;
      __syncthreads();
      if (warp == 0) {
        int first = lane < kWalkWarps ? warp_first[lane] : INT_MAX;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) first = min(first, __shfl_xor_sync(kFullMask, first, o));
        if (first != INT_MAX) {
          // Apply the note of the first noted token: a free slot (the lowest), else the victim.
          const float note_importance = candidate_importance[first];
          const int j0 = lane, j1 = lane + 32;
          const bool has0 = j0 < K, has1 = j1 < K;
          const unsigned free0 = __ballot_sync(kFullMask, has0 && note_id[j0] < 0);
          const unsigned free1 = __ballot_sync(kFullMask, has1 && note_id[j1] < 0);
          int target = free0 ? __ffs(free0) - 1 : (free1 ? 32 + __ffs(free1) - 1 : -1);
          int64_t gone = -1;
          float gone_priority = 0.f;
          if (target < 0) {
            Victim v{has0 ? priority[j0] : 0.f, has0 ? inserted[j0] : -1, has0 ? j0 : kMaxSlots};
            const Victim v1{has1 ? priority[j1] : 0.f, has1 ? inserted[j1] : -1, has1 ? j1 : kMaxSlots};
            if (victim_before(v1, v, p.fifo)) v = v1;
            v = warp_victim(v, p.fifo);
            if (p.fifo || note_importance > v.priority) {
              target = v.slot;
              gone = note_id[v.slot];
              gone_priority = v.priority;
            }
          }
          __syncwarp();
          const int64_t note_row = tile0 + first;
          if (lane == 0) {
            first_noted = first;
            taken_slot = target;
            evicted_id = gone;
            evicted_priority = gone_priority;
            if (target >= 0) {
              priority[target] = note_importance;
              inserted[target] = pos0 + note_row;
              note_id[target] = notes_made;
              bank[target] = K + note_row;
              dirty[target] = true;
              p.work_inserts[(sk + target) * T + insert_count[target]++] = static_cast<int32_t>(note_row);
            }
            ++notes_made;  // a dropped note still takes an id, as in NoteTaker
          }
          if (target >= 0)
            for (int k = lane; k < kMaxWidth; k += 32) units[target][k] = token_units[note_row * kMaxWidth + k];
        } else if (lane == 0) {
          first_noted = INT_MAX;
        }
      }
      __syncthreads();
      const int first = first_noted;
      if (first == INT_MAX) break;
      const int target = taken_slot;
      if (tid == first) {
        noted = true;
        my_taken = target;
        my_evicted = evicted_id;
        my_evicted_priority = evicted_priority;
      } else if (live && tid > first && target >= 0) {
        if (best_slot == target) {  // this token's best note was evicted: compare with every slot
          best = -FLT_MAX;
          best_slot = -1;
          reference = -1;
          for (int j = 0; j < K; ++j)
            if (note_id[j] >= 0) consider(j);
        } else {
          consider(target);
        }
      }
      cursor = first + 1;
      __syncthreads();
    }

    handed_istate[tid] = state_importance(best, best_slot < 0);
    __syncthreads();
    if (live) {
      const float istate = tid == 0 ? carried_istate : handed_istate[tid - 1];
      const int64_t i = b * T + row;
      p.importance[i] = p.learned ? learned : (best_slot < 0 ? 1.f : 1.f - best);
      p.istate[i] = istate;
      p.flags[i] = static_cast<uint8_t>((noted ? 1 : 0) | (retrieval_fires(istate, p.tau_retrieve) ? 2 : 0));
      p.reference[i] = best_slot < 0 ? -1 : reference;
      p.slot_taken[i] = my_taken;
      p.evicted_note[i] = my_evicted;
      p.evicted_priority[i] = my_evicted_priority;
    }
    __syncthreads();
    const int64_t tile_length = p.row_end - tile0 < kWalkThreads ? p.row_end - tile0 : kWalkThreads;
    if (tid == tile_length - 1) carried_istate = handed_istate[tid];
    __syncthreads();
  }

  for (int i = tid; i < K * S; i += kWalkThreads) p.slot_unit[sk * S + i] = units[i / S][i % S];
  if (tid < K) {
    p.slot_priority[sk + tid] = priority[tid];
    p.slot_inserted[sk + tid] = inserted[tid];
    p.slot_note_id[sk + tid] = note_id[tid];
    p.final_bank[sk + tid] = bank[tid];
    p.work_insert_count[sk + tid] = insert_count[tid];
  }
  if (tid == 0) {
    p.next_istate[b] = carried_istate;
    p.notes_made[b] = notes_made;
  }
}

// Step 3: the note each slot held at each token (the last insert before it, else the slot
// the chunk started with).
__global__ void note_pool_visible_kernel(NotePoolProblem p) {
  const int64_t K = p.slots, T = p.length, total = p.batch * T * K;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = i % K, bt = i / K, b = bt / T, t = bt % T;
    const int32_t* rows = p.work_inserts + (b * K + j) * T;
    int lo = 0, hi = p.work_insert_count[b * K + j];  // the first insert at or after t
    while (lo < hi) {
      const int mid = (lo + hi) >> 1;
      if (rows[mid] < t) lo = mid + 1; else hi = mid;
    }
    p.visible[i] = lo > 0 ? K + rows[lo - 1] : p.work_initial_bank[b * K + j];
  }
}

}  // namespace

bool note_pool_supported(int64_t slots, int64_t width) {
  return slots >= 1 && slots <= kMaxSlots && width >= 1 && width <= kMaxWidth;
}

int64_t note_pool_unit_width() { return kMaxWidth; }

void note_pool(const NotePoolProblem& p, PoolWalk walk, void* stream) {
  if (p.batch < 1) return;
  const auto s = static_cast<cudaStream_t>(stream);
  if (walk == PoolWalk::Sequential) {
    note_pool_sequential_kernel<<<static_cast<unsigned>(p.batch), 32, 0, s>>>(p);
    return;
  }
  for (int64_t begin = 0; begin == 0 || begin < p.length; begin += kSpanTokens) {
    NotePoolProblem span = p;
    span.row_begin = begin;
    span.row_end = p.length - begin < kSpanTokens ? p.length : begin + kSpanTokens;
    const int64_t groups = (span.row_end - span.row_begin + kPrepareWarps - 1) / kPrepareWarps;
    if (groups > 0)
      note_pool_prepare_kernel<<<dim3(static_cast<unsigned>(groups), static_cast<unsigned>(p.batch)), kPrepareWarps * 32,
                                  0, s>>>(span);
    note_pool_walk_kernel<<<static_cast<unsigned>(p.batch), kWalkThreads, 0, s>>>(span);
  }
  const int64_t total = p.batch * p.length * p.slots;
  if (total > 0) {
    const int64_t blocks = (total + 255) / 256;
    note_pool_visible_kernel<<<static_cast<unsigned>(blocks < 8192 ? blocks : 8192), 256, 0, s>>>(p);
  }
}

}  // namespace memmamba::cuda_kernels
