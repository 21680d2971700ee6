// Step mode's fused kernels: one token per sequence, one block per sequence where a layer's
// work is small (the memory's read, the mixer's conv, scan and gating) and a few blocks per
// sequence where it is a matrix-vector product with a large matrix (in_proj, out_proj).
// The pools are only read while the layers run; each layer's note is made by one launch at
// the end of the step, so that every read of the step sees the pools as the token found
// them (a note is visible from the next token on), as in the parallel walk.
#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>

#include "model/cuda/pool_rules.cuh"
#include "model/cuda/step_kernels.h"
#include "model/memory/retrieval_trigger.h"

namespace memmamba::cuda_kernels {
namespace {

constexpr int kBlock = 256;
constexpr int kRowsPerBlock = 32;  // matrix rows per block of the wide products

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Sum over the block; `red` holds 33 floats of shared memory. Every thread gets the sum.
__device__ float block_sum(float v, float* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? red[lane] : 0.f;
    t = warp_sum(t);
    if (lane == 0) red[32] = t;
  }
  __syncthreads();
  return red[32];
}

// x (D floats of global memory) into shared `xs`; returns 1 / RMS(x).
__device__ float load_and_inverse_rms(const float* x, int D, float eps, float* xs, float* red) {
  float sq = 0.f;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    const float v = x[i];
    xs[i] = v;
    sq = fmaf(v, v, sq);
  }
  return rsqrtf(block_sum(sq, red) / static_cast<float>(D) + eps);
}

// out[r] = W[r, :n] . v for rows r in [begin, end); v in shared memory, n a multiple of 4.
// A warp takes four rows at a time and each lane loads float4s of all four before it adds:
// a step's products are small, so what bounds them is how many loads are in flight.
__device__ void warp_rows(const float* W, int n, const float* v, int begin, int end, float* out) {
  constexpr int kRows = 4;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int r0 = begin + warp * kRows; r0 < end; r0 += warps * kRows) {
    float acc[kRows] = {0.f, 0.f, 0.f, 0.f};
    for (int i = lane * 4; i < n; i += 128) {
      const float4 x = *reinterpret_cast<const float4*>(v + i);
      float4 w[kRows];
#pragma unroll
      for (int k = 0; k < kRows; ++k)
        w[k] = r0 + k < end ? __ldg(reinterpret_cast<const float4*>(W + static_cast<int64_t>(r0 + k) * n + i))
                            : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
      for (int k = 0; k < kRows; ++k) acc[k] += (w[k].x * x.x + w[k].y * x.y) + (w[k].z * x.z + w[k].w * x.w);
    }
#pragma unroll
    for (int k = 0; k < kRows; ++k) {
      const float a = warp_sum(acc[k]);
      if (lane == 0 && r0 + k < end) out[r0 + k - begin] = a;
    }
  }
}

// The dot product of n floats of global memory (16-byte aligned, n a multiple of 4) with n
// floats of shared memory, by one thread.
__device__ __forceinline__ float thread_dot(const float* g, const float* v, int n) {
  float a[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 4
  for (int i = 0; i < n; i += 4) {
    const float4 w = __ldg(reinterpret_cast<const float4*>(g + i));
    a[0] = fmaf(w.x, v[i], a[0]);
    a[1] = fmaf(w.y, v[i + 1], a[1]);
    a[2] = fmaf(w.z, v[i + 2], a[2]);
    a[3] = fmaf(w.w, v[i + 3], a[3]);
  }
  return (a[0] + a[1]) + (a[2] + a[3]);
}

__device__ __forceinline__ float silu(float v) { return v / (1.f + expf(-v)); }

// ---------------------------------------------------------------------------------------
// The memory's part of one layer for one token: the Note Block's summary and importance,
// the retrieval trigger, the cross-token read (and the cross-layer one) and their fusion.
// The block's shared scalars (ReadScratch::scalars).
enum Scalar : int { kLogitMax = 0, kLogitTotal = 1, kLearned = 4, kImportance = 5, kNextIstate = 6, kTriggered = 7 };

struct ReadScratch {
  float *normed, *q, *qk, *context_raw, *context, *logits, *scalars, *partial;
};

// One slot attention over pools [0, count) of p.pools as the token finds them; adds its
// fusion term to `term` (D floats). Visible slots: those holding a note.
__device__ void slot_read(const MemoryStepProblem& p, const StepRead& r, int first, int count, float inv_rms,
                          const float* xs, ReadScratch& w, float* term) {
  const StepDims& d = p.dims;
  const int b = blockIdx.x, D = d.d_model, S = d.summary, K = d.slots, tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  for (int i = tid; i < D; i += blockDim.x) w.normed[i] = xs[i] * inv_rms * r.norm[i];
  __syncthreads();
  warp_rows(r.q, D, w.normed, 0, S, w.q);
  __syncthreads();
  // q . (W_k v_j) = (W_k^T q) . v_j: one S x S product instead of one per slot.
  for (int i = tid; i < S; i += blockDim.x) {
    float a[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 16
    for (int o = 0; o < S; ++o) a[o & 3] = fmaf(w.q[o], __ldg(r.k + o * S + i), a[o & 3]);
    w.qk[i] = (a[0] + a[1]) + (a[2] + a[3]);
  }
  __syncthreads();
  const float scale = rsqrtf(static_cast<float>(S));
  const int entries = count * K;
  for (int e = tid; e < entries; e += blockDim.x) {
    const StepPool& pool = p.pools[first + e / K];
    const int64_t slot = static_cast<int64_t>(b) * K + e % K;
    float l = -FLT_MAX;
    if (pool.slot_note_id[slot] >= 0)
      l = thread_dot(pool.vectors + slot * S, w.qk, S) * scale + logf(fmaxf(pool.priority[slot], 1e-6f));
    w.logits[e] = l;
  }
  __syncthreads();
  if (warp == 0) {
    float m = -FLT_MAX;
    for (int e = lane; e < entries; e += 32) m = fmaxf(m, w.logits[e]);
    m = warp_max(m);
    float total = 0.f;
    for (int e = lane; e < entries; e += 32)
      if (w.logits[e] > -FLT_MAX) total += expf(w.logits[e] - m);
    total = warp_sum(total);
    if (lane == 0) {
      w.scalars[kLogitMax] = m;
      w.scalars[kLogitTotal] = total;
    }
  }
  __syncthreads();
  if (!(w.scalars[kLogitMax] > -FLT_MAX)) return;  // nothing visible: the read adds nothing
  const float m = w.scalars[kLogitMax], total = w.scalars[kLogitTotal];
  for (int e = tid; e < entries; e += blockDim.x)
    w.logits[e] = w.logits[e] > -FLT_MAX ? expf(w.logits[e] - m) / total : 0.f;
  __syncthreads();
  // sum_j a_j W_v v_j = W_v (sum_j a_j v_j).
  // Threads (i, part) sum a part of the entries for channel i; the parts are added after.
  const int parts = max(1, static_cast<int>(blockDim.x) / S);
  for (int t = tid; t < S * parts; t += blockDim.x) {
    const int i = t % S, part = t / S;
    float a = 0.f;
    for (int c = 0; c < count; ++c) {
      const float* vectors = p.pools[first + c].vectors + static_cast<int64_t>(b) * K * S;
#pragma unroll 4
      for (int j = part; j < K; j += parts) a = fmaf(w.logits[c * K + j], vectors[j * S + i], a);
    }
    w.partial[t] = a;
  }
  __syncthreads();
  for (int i = tid; i < S; i += blockDim.x) {
    float a = 0.f;
    for (int part = 0; part < parts; ++part) a += w.partial[part * S + i];
    w.context_raw[i] = a;
  }
  __syncthreads();
  for (int o = tid; o < S; o += blockDim.x) w.context[o] = thread_dot(r.v + o * S, w.context_raw, S);
  __syncthreads();
  for (int row = tid; row < D; row += blockDim.x)
    term[row] = thread_dot(r.o + static_cast<int64_t>(row) * S, w.context, S) *
                (r.fusion_scale ? r.fusion_scale[row] * p.gain : p.gain);
  __syncthreads();
}

__global__ void __launch_bounds__(kBlock) memory_step_kernel(MemoryStepProblem p) {
  extern __shared__ float shm[];
  const StepDims& d = p.dims;
  const int b = blockIdx.x, D = d.d_model, S = d.summary, K = d.slots, tid = threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5;
  float* xs = shm;
  float* token_term = xs + D;
  float* layer_term = token_term + D;
  float* red = layer_term + D;  // 33 used, 36 keep what follows 16-byte aligned (float4 reads)
  float* s = red + 36;
  float* unit = s + S;
  ReadScratch w;
  w.normed = unit + S;
  w.q = w.normed + D;
  w.qk = w.q + S;
  w.context_raw = w.qk + S;
  w.context = w.context_raw + S;
  w.scalars = w.context + S;  // 8
  w.logits = w.scalars + 8;   // union_count * K
  w.partial = w.logits + p.union_count * K;  // kBlock

  const float inv = load_and_inverse_rms(p.x + static_cast<int64_t>(b) * D, D, d.norm_eps, xs, red);
  for (int i = tid; i < D; i += blockDim.x) {
    w.normed[i] = xs[i] * inv * p.note_norm[i];
    token_term[i] = 0.f;
    layer_term[i] = 0.f;
  }
  __syncthreads();
  warp_rows(p.note_summary, D, w.normed, 0, S, s);
  if (p.importance_w && warp == (blockDim.x >> 5) - 1) {
    float a = 0.f;
    for (int i = lane; i < D; i += 32) a = fmaf(p.importance_w[i], w.normed[i], a);
    a = warp_sum(a);
    if (lane == 0) w.scalars[kLearned] = 1.f / (1.f + expf(-(a + p.importance_b[0])));
  }
  __syncthreads();

  // The token's best match against its own pool (lanes own slots lane and lane + 32), the
  // importance and the retrieval trigger.
  const StepPool& own = p.pools[p.union_count - 1];
  if (warp == 0) {
    const float s0 = lane < S ? s[lane] : 0.f, s1 = lane + 32 < S ? s[lane + 32] : 0.f;
    const float invn = warp_inverse_norm(s0, s1);
    if (lane < S) unit[lane] = s0 * invn;
    if (lane + 32 < S) unit[lane + 32] = s1 * invn;
    __syncwarp();
    float best = -FLT_MAX;
    int best_slot = kMaxSlots;
    for (int j = lane; j < K; j += 32) {
      const int64_t slot = static_cast<int64_t>(b) * K + j;
      if (own.slot_note_id[slot] < 0) continue;
      const float* u = own.slot_unit + slot * S;
      float a[4] = {0.f, 0.f, 0.f, 0.f};
      for (int k = 0; k < S; ++k) a[k & 3] = fmaf(unit[k], u[k], a[k & 3]);
      const float c = (a[0] + a[1]) + (a[2] + a[3]);
      if (c > best) { best = c; best_slot = j; }
    }
    warp_best(best, best_slot);
    if (lane == 0) {
      const bool empty = best_slot >= kMaxSlots;
      w.scalars[kImportance] = p.importance_w ? w.scalars[kLearned] : (empty ? 1.f : 1.f - best);
      w.scalars[kNextIstate] = state_importance(best, empty);
      w.scalars[kTriggered] = retrieval_fires(own.next_istate[b], p.tau_retrieve) ? 1.f : 0.f;
    }
  }
  __syncthreads();
  const bool triggered = w.scalars[kTriggered] != 0.f;
  const float importance = w.scalars[kImportance], next_istate = w.scalars[kNextIstate];
  if (triggered) slot_read(p, p.token, p.union_count - 1, 1, inv, xs, w, token_term);
  if (p.cross_layer) slot_read(p, p.layer, 0, p.union_count, inv, xs, w, layer_term);
  float* xf = p.xf + static_cast<int64_t>(b) * D;
  for (int i = tid; i < D; i += blockDim.x) xf[i] = (xs[i] + token_term[i]) + layer_term[i];
  for (int i = tid; i < S; i += blockDim.x) p.pending.summary[static_cast<int64_t>(b) * S + i] = s[i];
  if (tid == 0) {
    p.pending.importance[b] = importance;
    p.pending.next_istate[b] = next_istate;
  }
}

// ---------------------------------------------------------------------------------------
// Every layer's note, after the step's reads: the same rules as the GPU walk
// (note_pool.cu): the lowest free slot, else the victim (FIFO the oldest; priority the lowest
// priority, oldest on ties, then the lowest slot) if the note's priority is higher; a
// dropped note still takes an id.
__global__ void commit_notes_kernel(CommitProblem p) {
  const int b = blockIdx.x, l = blockIdx.y, lane = threadIdx.x;
  const StepPool& pool = p.pools[l];
  const StepPending& pend = p.pending[l];
  const int K = p.dims.slots, S = p.dims.summary;
  const float importance = pend.importance[b];
  if (lane == 0) pool.next_istate[b] = pend.next_istate[b];
  if (!(importance > p.tau_note)) return;
  const float* summary = pend.summary + static_cast<int64_t>(b) * S;
  const float s0 = lane < S ? summary[lane] : 0.f, s1 = lane + 32 < S ? summary[lane + 32] : 0.f;
  const float invn = warp_inverse_norm(s0, s1);
  const int64_t base = static_cast<int64_t>(b) * K;
  const int j0 = lane, j1 = lane + 32;
  const bool has0 = j0 < K, has1 = j1 < K;
  const int64_t id0 = has0 ? pool.slot_note_id[base + j0] : 0, id1 = has1 ? pool.slot_note_id[base + j1] : 0;
  const unsigned free0 = __ballot_sync(kFullMask, has0 && id0 < 0);
  const unsigned free1 = __ballot_sync(kFullMask, has1 && id1 < 0);
  int target = free0 ? __ffs(free0) - 1 : (free1 ? 32 + __ffs(free1) - 1 : -1);
  if (target < 0) {
    Victim v{has0 ? pool.slot_priority[base + j0] : 0.f, has0 ? pool.slot_inserted[base + j0] : 0, has0 ? j0 : kMaxSlots};
    const Victim v1{has1 ? pool.slot_priority[base + j1] : 0.f, has1 ? pool.slot_inserted[base + j1] : 0,
                    has1 ? j1 : kMaxSlots};
    if (victim_before(v1, v, p.fifo)) v = v1;
    v = warp_victim(v, p.fifo);
    if (v.slot < kMaxSlots && (p.fifo || importance > v.priority)) target = v.slot;
  }
  const int64_t made = pool.notes_made[b];
  __syncwarp();
  if (target >= 0) {
    const int64_t at = base + target;
    for (int k = lane; k < S; k += 32) {
      pool.slot_unit[at * S + k] = summary[k] * invn;
      pool.vectors[at * S + k] = summary[k];
    }
    if (lane == 0) {
      pool.slot_priority[at] = importance;
      pool.priority[at] = importance;
      pool.slot_inserted[at] = *p.position;
      pool.slot_note_id[at] = made;
    }
  }
  if (lane == 0) pool.notes_made[b] = made + 1;
}

// ---------------------------------------------------------------------------------------
// The mixer: norm and in_proj (several blocks per sequence), then conv, SiLU, x_proj, dt,
// the scan's one step and the gate (one block per sequence), then out_proj and the residual.
__global__ void __launch_bounds__(kBlock) mixer_in_kernel(MixerStepProblem p) {
  extern __shared__ float shm[];
  const StepDims& d = p.dims;
  const int b = blockIdx.y, D = d.d_model, rows = 2 * d.d_inner;
  float* xs = shm;
  float* red = xs + D;
  const float inv = load_and_inverse_rms(p.xf + static_cast<int64_t>(b) * D, D, d.norm_eps, xs, red);
  for (int i = threadIdx.x; i < D; i += blockDim.x) xs[i] = xs[i] * inv * p.norm[i];
  __syncthreads();
  const int begin = blockIdx.x * kRowsPerBlock, end = min(rows, begin + kRowsPerBlock);
  warp_rows(p.in_proj, D, xs, begin, end, p.az + static_cast<int64_t>(b) * rows + begin);
}

__global__ void mixer_core_kernel(MixerStepProblem p) {
  extern __shared__ float shm[];
  const StepDims& d = p.dims;
  const int b = blockIdx.x, Di = d.d_inner, N = d.d_state, R = d.dt_rank, Kc = d.conv_kernel;
  const int64_t bb = b;
  float* u = shm;
  float* xdbc = u + Di;
  const float* az = p.az + bb * 2 * Di;
  float* window = p.conv_state + bb * (Kc - 1) * Di;
  for (int c = threadIdx.x; c < Di; c += blockDim.x) {
    const float a = az[c];
    float acc = p.conv_b[c];
    for (int k = 0; k < Kc - 1; ++k) acc = fmaf(p.conv_w[c * Kc + k], window[k * Di + c], acc);
    acc = fmaf(p.conv_w[c * Kc + Kc - 1], a, acc);
    for (int k = 0; k + 1 < Kc - 1; ++k) window[k * Di + c] = window[(k + 1) * Di + c];
    if (Kc > 1) window[(Kc - 2) * Di + c] = a;
    u[c] = silu(acc);
  }
  __syncthreads();
  warp_rows(p.x_proj, Di, u, 0, R + 2 * N, xdbc);
  __syncthreads();
  const float* Bv = xdbc + R;
  const float* Cv = Bv + N;
  for (int c = threadIdx.x; c < Di; c += blockDim.x) {
    float raw = p.dt_bias[c];
    for (int r = 0; r < R; ++r) raw = fmaf(p.dt_proj[c * R + r], xdbc[r], raw);
    const float dt = raw > 20.f ? raw : log1pf(expf(raw));  // softplus, threshold 20 as in Torch
    const float uc = u[c];
    float* h = p.ssm_state + (bb * Di + c) * N;
    float acc = 0.f;
    for (int n = 0; n < N; ++n) {
      const float decay = expf(-dt * expf(p.A_log[c * N + n]));
      const float hn = fmaf(decay, h[n], dt * uc * Bv[n]);
      h[n] = hn;
      acc = fmaf(Cv[n], hn, acc);
    }
    p.y[bb * Di + c] = fmaf(p.D[c], uc, acc) * silu(az[Di + c]);
  }
}

__global__ void __launch_bounds__(kBlock) mixer_out_kernel(MixerStepProblem p) {
  extern __shared__ float shm[];
  const StepDims& d = p.dims;
  const int b = blockIdx.y, D = d.d_model, Di = d.d_inner;
  const int64_t bb = b;
  for (int i = threadIdx.x; i < Di; i += blockDim.x) shm[i] = p.y[bb * Di + i];
  __syncthreads();
  float* out = shm + Di;  // kRowsPerBlock
  const int begin = blockIdx.x * kRowsPerBlock, end = min(D, begin + kRowsPerBlock);
  warp_rows(p.out_proj, Di, shm, begin, end, out);
  __syncthreads();
  for (int r = begin + threadIdx.x; r < end; r += blockDim.x) p.x_next[bb * D + r] = p.xf[bb * D + r] + out[r - begin];
}

__global__ void embed_kernel(const int64_t* tokens, const float* embedding, int D, float* x) {
  const int64_t row = tokens[blockIdx.x];
  for (int i = threadIdx.x; i < D; i += blockDim.x) x[static_cast<int64_t>(blockIdx.x) * D + i] = embedding[row * D + i];
}

__global__ void __launch_bounds__(kBlock) final_norm_kernel(const float* x, const float* weight, int D, float eps,
                                                            float* h, int64_t* position) {
  extern __shared__ float shm[];
  const int64_t b = blockIdx.x;
  const float inv = load_and_inverse_rms(x + b * D, D, eps, shm, shm + D);
  for (int i = threadIdx.x; i < D; i += blockDim.x) h[b * D + i] = shm[i] * inv * weight[i];
  if (b == 0 && threadIdx.x == 0 && position) *position += 1;
}

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace

bool step_kernels_fit(const StepDims& d) {
  // Shared memory stays far below 48 KB at these bounds; the pools' lanes need K, S <= 64.
  // The products load float4s: rows of D, Di and S floats must be multiples of four.
  if (d.d_model % 4 != 0 || d.d_inner % 4 != 0 || d.summary % 4 != 0) return false;
  return d.summary >= 1 && d.summary <= kMaxSlots && d.slots >= 1 && d.slots <= kMaxSlots && d.d_model <= 4096 &&
         d.d_inner <= 4096 && d.d_state <= 256 && d.conv_kernel >= 1 && d.conv_kernel <= 16 &&
         d.dt_rank + 2 * d.d_state <= 1024;
}

void embed_step(const int64_t* tokens, const float* embedding, int batch, int d_model, float* x, void* stream) {
  embed_kernel<<<batch, kBlock, 0, as_stream(stream)>>>(tokens, embedding, d_model, x);
}

void memory_step(const MemoryStepProblem& p, void* stream) {
  const StepDims& d = p.dims;
  const size_t floats = 4 * d.d_model + 36 + 6 * d.summary + 8 + p.union_count * d.slots + kBlock;
  memory_step_kernel<<<d.batch, kBlock, floats * sizeof(float), as_stream(stream)>>>(p);
}

void mixer_step(const MixerStepProblem& p, void* stream) {
  const StepDims& d = p.dims;
  const cudaStream_t s = as_stream(stream);
  mixer_in_kernel<<<dim3(ceil_div(2 * d.d_inner, kRowsPerBlock), d.batch), kBlock, (d.d_model + 33) * sizeof(float), s>>>(p);
  const size_t core = (d.d_inner + d.dt_rank + 2 * d.d_state) * sizeof(float);
  mixer_core_kernel<<<d.batch, 512, core, s>>>(p);
  mixer_out_kernel<<<dim3(ceil_div(d.d_model, kRowsPerBlock), d.batch), kBlock,
                     (d.d_inner + kRowsPerBlock) * sizeof(float), s>>>(p);
}

void commit_notes_step(const CommitProblem& p, void* stream) {
  commit_notes_kernel<<<dim3(p.dims.batch, p.layers), 32, 0, as_stream(stream)>>>(p);
}

void final_norm_step(const float* x, const float* weight, int batch, int d_model, float eps, float* h, int64_t* position,
                     void* stream) {
  final_norm_kernel<<<batch, kBlock, (d_model + 33) * sizeof(float), as_stream(stream)>>>(x, weight, d_model, eps, h,
                                                                                          position);
}

}  // namespace memmamba::cuda_kernels
