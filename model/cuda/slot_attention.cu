// Attention over state-pool slots for inference (no autograd): one warp per query row.
//
// Each row attends to at most M visible notes (K slots of its own pool, or g*K for the
// cross-layer union), so the work per row is small and the tensor version (gather [n, M, S]
// keys and values, then batched products) spends its time launching kernels and moving
// gathered copies. Here a lane scores columns lane, lane + 32, ... (q . k / sqrt(S) + log
// priority), the warp reduces max and sum, and each lane accumulates two channels of the
// context from the visible value rows. Neighbouring rows mostly see the same notes, so the
// key and value rows come from L1.
#include <cuda_runtime.h>

#include <cfloat>

#include "model/cuda/kernels.h"

namespace memmamba::cuda_kernels {
namespace {

constexpr int kRowsPerBlock = 8;
constexpr int kMaxWidth = 64;
constexpr int kColumnsPerLane = 8;  // M <= 256
constexpr unsigned kFullMask = 0xffffffffu;

__global__ void __launch_bounds__(kRowsPerBlock * 32) slot_attention_kernel(SlotAttentionProblem p) {
  __shared__ float query[kRowsPerBlock][kMaxWidth];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + warp;
  if (row >= p.rows) return;  // no block-wide barriers below
  const int S = static_cast<int>(p.width), M = static_cast<int>(p.columns);
  const float* q = p.queries + row * S;
  query[warp][lane] = lane < S ? q[lane] : 0.f;
  query[warp][lane + 32] = lane + 32 < S ? q[lane + 32] : 0.f;
  __syncwarp();

  const int64_t* visible = p.visible + row * M;
  float logit[kColumnsPerLane];
  int64_t index[kColumnsPerLane];
  float best = -FLT_MAX;
  bool any = false;
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) {
    const int m = lane + 32 * c;
    index[c] = m < M ? visible[m] : -1;
    logit[c] = 0.f;
    if (index[c] >= 0) {
      const float* key = p.keys + index[c] * S;
      float a[4] = {0.f, 0.f, 0.f, 0.f};
      for (int i = 0; i < S; ++i) a[i & 3] = fmaf(query[warp][i], key[i], a[i & 3]);
      logit[c] = ((a[0] + a[1]) + (a[2] + a[3])) * p.scale + p.log_priority[index[c]];
      best = fmaxf(best, logit[c]);
      any = true;
    }
  }
  any = __any_sync(kFullMask, any);
  float* weights = p.weights + row * M;
  float* context = p.context + row * S;
  if (!any) {  // nothing visible: zero weights and context
    for (int m = lane; m < M; m += 32) weights[m] = 0.f;
    if (lane < S) context[lane] = 0.f;
    if (lane + 32 < S) context[lane + 32] = 0.f;
    return;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) best = fmaxf(best, __shfl_xor_sync(kFullMask, best, o));
  float total = 0.f;
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) {
    logit[c] = index[c] >= 0 ? __expf(logit[c] - best) : 0.f;
    total += logit[c];
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(kFullMask, total, o);
  const float inv_total = 1.f / total;
  float c0 = 0.f, c1 = 0.f;
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) {
    logit[c] *= inv_total;
    const int m = lane + 32 * c;
    if (m < M) weights[m] = logit[c];
    if (32 * c >= M) continue;
    for (int src = 0; src < 32 && 32 * c + src < M; ++src) {
      const int64_t j = __shfl_sync(kFullMask, index[c], src);
      const float w = __shfl_sync(kFullMask, logit[c], src);
      if (j < 0) continue;
      const float* value = p.values + j * S;
      if (lane < S) c0 = fmaf(w, value[lane], c0);
      if (lane + 32 < S) c1 = fmaf(w, value[lane + 32], c1);
    }
  }
  if (lane < S) context[lane] = c0;
  if (lane + 32 < S) context[lane + 32] = c1;
}

}  // namespace

bool slot_attention_supported(int64_t width, int64_t columns) {
  return width >= 1 && width <= kMaxWidth && columns >= 1 && columns <= 32 * kColumnsPerLane;
}

void slot_attention(const SlotAttentionProblem& p, void* stream) {
  if (p.rows < 1) return;
  const int64_t blocks = (p.rows + kRowsPerBlock - 1) / kRowsPerBlock;
  slot_attention_kernel<<<static_cast<unsigned>(blocks), kRowsPerBlock * 32, 0, static_cast<cudaStream_t>(stream)>>>(p);
}

}  // namespace memmamba::cuda_kernels
