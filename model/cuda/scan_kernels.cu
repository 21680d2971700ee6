// Selective scan on the GPU: h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, y_t = C_t . h_t + D u_t.
//
// Design: batch 1 and very long sequences must fill the GPU, so the sequence is cut
// into time chunks and each thread owns one (sequence, channel, chunk) with the N
// states of that channel in registers. Three passes:
//   1. chunk-local scan from a zero state -> the chunk's end state and its summed dt
//      (the chunk's total decay is exp(A * sum dt));
//   2. one thread per (sequence, channel, state) walks the chunks in order and turns
//      the local end states into each chunk's true initial state;
//   3. every chunk re-runs from its true initial state and writes y.
// Loads of u and dt are coalesced across channels; B and C rows are the same address
// for a whole warp (a broadcast). The backward pass uses the same chunking in reverse.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>

#include "model/cuda/kernels.h"

namespace memmamba::cuda_kernels {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kThreads = 128;

template <typename T> __device__ __forceinline__ float load(const T* p);
template <> __device__ __forceinline__ float load<float>(const float* p) { return __ldg(p); }
template <> __device__ __forceinline__ float load<__nv_bfloat16>(const __nv_bfloat16* p) { return __bfloat162float(*p); }
template <> __device__ __forceinline__ float load<__half>(const __half* p) { return __half2float(*p); }
template <typename T> __device__ __forceinline__ T store_as(float v);
template <> __device__ __forceinline__ float store_as<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 store_as<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half store_as<__half>(float v) { return __float2half(v); }

struct Dims {
  int64_t T, Di, chunk_len, chunks;
};

// Pass 1: chunk-local end states (from zero) and summed dt. local: [B, chunks, N, Di]; dtsum: [B, chunks, Di].
template <typename T, int N>
__global__ void chunk_local_kernel(Dims s, const T* __restrict__ u, const T* __restrict__ delta,
                                   const float* __restrict__ A, const T* __restrict__ Bm, float* __restrict__ local,
                                   float* __restrict__ dtsum) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t c = blockIdx.y, b = blockIdx.z;
  if (d >= s.Di) return;
  float a2[N], h[N];
#pragma unroll
  for (int n = 0; n < N; ++n) { a2[n] = A[d * N + n] * kLog2e; h[n] = 0.f; }
  const int64_t t0 = c * s.chunk_len, t1 = min(s.T, t0 + s.chunk_len);
  float sum = 0.f;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t row = b * s.T + t;
    const float dt = load(delta + row * s.Di + d), x = load(u + row * s.Di + d) * dt;
    sum += dt;
    const T* Brow = Bm + row * N;
#pragma unroll
    for (int n = 0; n < N; ++n) h[n] = exp2f(dt * a2[n]) * h[n] + x * load(Brow + n);
  }
  float* out = local + ((b * s.chunks + c) * N) * s.Di + d;
#pragma unroll
  for (int n = 0; n < N; ++n) out[n * s.Di] = h[n];
  dtsum[(b * s.chunks + c) * s.Di + d] = sum;
}

// Pass 2: in place, local end states -> each chunk's initial state; writes the last state.
template <int N>
__global__ void chunk_carry_kernel(Dims s, int64_t batch, const float* __restrict__ A, const float* __restrict__ h0,
                                   const float* __restrict__ dtsum, float* __restrict__ local, float* __restrict__ last) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // (b, n, d), d fastest
  if (i >= batch * N * s.Di) return;
  const int64_t d = i % s.Di, n = (i / s.Di) % N, b = i / (s.Di * N);
  const float a2 = A[d * N + n] * kLog2e;
  float h = h0[(b * s.Di + d) * N + n];
  // The walk is sequential; loads are issued kBatch chunks at a time so that their
  // latency overlaps instead of adding up.
  constexpr int kBatch = 8;
  for (int64_t c0 = 0; c0 < s.chunks; c0 += kBatch) {
    float ends[kBatch], decay[kBatch];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int64_t c = c0 + i;
      ends[i] = c < s.chunks ? local[((b * s.chunks + c) * N + n) * s.Di + d] : 0.f;
      decay[i] = c < s.chunks ? exp2f(a2 * dtsum[(b * s.chunks + c) * s.Di + d]) : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int64_t c = c0 + i;
      if (c < s.chunks) {
        local[((b * s.chunks + c) * N + n) * s.Di + d] = h;
        h = decay[i] * h + ends[i];
      }
    }
  }
  last[(b * s.Di + d) * N + n] = h;
}

// Pass 3: each chunk from its initial state; writes y (and the last state when there is one chunk).
template <typename T, int N>
__global__ void chunk_output_kernel(Dims s, const T* __restrict__ u, const T* __restrict__ delta,
                                    const float* __restrict__ A, const T* __restrict__ Bm, const T* __restrict__ Cm,
                                    const float* __restrict__ Dskip, const float* __restrict__ initial /*[B,chunks,N,Di] or null*/,
                                    const float* __restrict__ h0, T* __restrict__ y, float* __restrict__ last) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t c = blockIdx.y, b = blockIdx.z;
  if (d >= s.Di) return;
  float a2[N], h[N];
  if (initial) {
    const float* in = initial + ((b * s.chunks + c) * N) * s.Di + d;
#pragma unroll
    for (int n = 0; n < N; ++n) h[n] = in[n * s.Di];
  } else {
#pragma unroll
    for (int n = 0; n < N; ++n) h[n] = h0[(b * s.Di + d) * N + n];
  }
#pragma unroll
  for (int n = 0; n < N; ++n) a2[n] = A[d * N + n] * kLog2e;
  const float dskip = Dskip[d];
  const int64_t t0 = c * s.chunk_len, t1 = min(s.T, t0 + s.chunk_len);
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t row = b * s.T + t;
    const float dt = load(delta + row * s.Di + d), uu = load(u + row * s.Di + d), x = uu * dt;
    const T* Brow = Bm + row * N;
    const T* Crow = Cm + row * N;
    float acc = dskip * uu;
#pragma unroll
    for (int n = 0; n < N; ++n) {
      h[n] = exp2f(dt * a2[n]) * h[n] + x * load(Brow + n);
      acc += load(Crow + n) * h[n];
    }
    y[row * s.Di + d] = store_as<T>(acc);
  }
  if (last) {
#pragma unroll
    for (int n = 0; n < N; ++n) last[(b * s.Di + d) * N + n] = h[n];
  }
}

// ---- backward ----

// Chunk-local reverse pass from a zero gradient at the chunk's end: q = a_{t0} g_{t0}, the
// gradient the chunk sends to the state before it, given nothing from later chunks.
template <typename T, int N>
__global__ void chunk_grad_local_kernel(Dims s, const T* __restrict__ delta, const float* __restrict__ A,
                                        const T* __restrict__ Cm, const float* __restrict__ dy,
                                        float* __restrict__ q /*[B, chunks, N, Di]*/) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t c = blockIdx.y, b = blockIdx.z;
  if (d >= s.Di) return;
  float a2[N], carry[N];
#pragma unroll
  for (int n = 0; n < N; ++n) { a2[n] = A[d * N + n] * kLog2e; carry[n] = 0.f; }
  const int64_t t0 = c * s.chunk_len, t1 = min(s.T, t0 + s.chunk_len);
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const int64_t row = b * s.T + t;
    const float dt = load(delta + row * s.Di + d), g_y = dy[row * s.Di + d];
    const T* Crow = Cm + row * N;
#pragma unroll
    for (int n = 0; n < N; ++n) carry[n] = exp2f(dt * a2[n]) * (load(Crow + n) * g_y + carry[n]);
  }
  float* out = q + ((b * s.chunks + c) * N) * s.Di + d;
#pragma unroll
  for (int n = 0; n < N; ++n) out[n * s.Di] = carry[n];
}

// In place, chunk-local q -> the gradient arriving at each chunk's end from later chunks;
// writes dh0.
template <int N>
__global__ void chunk_grad_carry_kernel(Dims s, int64_t batch, const float* __restrict__ A,
                                        const float* __restrict__ dtsum, const float* __restrict__ dlast,
                                        float* __restrict__ q, float* __restrict__ dh0) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= batch * N * s.Di) return;
  const int64_t d = i % s.Di, n = (i / s.Di) % N, b = i / (s.Di * N);
  const float a2 = A[d * N + n] * kLog2e;
  float g = dlast ? dlast[(b * s.Di + d) * N + n] : 0.f;
  constexpr int kBatch = 8;
  for (int64_t c0 = s.chunks - 1; c0 >= 0; c0 -= kBatch) {
    float locals[kBatch], decay[kBatch];
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int64_t c = c0 - i;
      locals[i] = c >= 0 ? q[((b * s.chunks + c) * N + n) * s.Di + d] : 0.f;
      decay[i] = c >= 0 ? exp2f(a2 * dtsum[(b * s.chunks + c) * s.Di + d]) : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kBatch; ++i) {
      const int64_t c = c0 - i;
      if (c >= 0) {
        q[((b * s.chunks + c) * N + n) * s.Di + d] = g;
        g = locals[i] + decay[i] * g;
      }
    }
  }
  dh0[(b * s.Di + d) * N + n] = g;
}

template <int N>
__device__ __forceinline__ void warp_sum_store(float (&v)[N], float* out /*N floats, null: reduce only*/) {
#pragma unroll
  for (int n = 0; n < N; ++n) {
    float x = v[n];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    v[n] = x;
  }
  if (out && (threadIdx.x & 31) == 0) {
#pragma unroll
    for (int n = 0; n < N; ++n) out[n] = v[n];
  }
}

// The gradients of one chunk: states recomputed from the chunk's initial state (kept in
// registers, hence short chunks), then a reverse walk. dB and dC are summed over the
// warp's 32 channels and written as per-warp partials (summed by the caller).
template <typename T, int N, int LB>
__global__ void chunk_grad_kernel(Dims s, const T* __restrict__ u, const T* __restrict__ delta,
                                  const float* __restrict__ A, const T* __restrict__ Bm, const T* __restrict__ Cm,
                                  const float* __restrict__ Dskip, const float* __restrict__ initial,
                                  const float* __restrict__ incoming, const float* __restrict__ dy,
                                  float* __restrict__ du, float* __restrict__ ddelta, float* __restrict__ dA_parts,
                                  float* __restrict__ dD_parts, float* __restrict__ dB_parts,
                                  float* __restrict__ dC_parts) {
  const int64_t d_raw = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t c = blockIdx.y, b = blockIdx.z;
  const bool active = d_raw < s.Di;
  const int64_t d = active ? d_raw : s.Di - 1;  // inactive lanes compute and contribute zeros
  const int64_t warps = (s.Di + 31) / 32, warp = d_raw / 32;
  float a2[N], Af[N], hs[LB][N], h[N], g[N], dA[N];
  const float* in = initial + ((b * s.chunks + c) * N) * s.Di + d;
  const float* inc = incoming + ((b * s.chunks + c) * N) * s.Di + d;
#pragma unroll
  for (int n = 0; n < N; ++n) {
    Af[n] = A[d * N + n];
    a2[n] = Af[n] * kLog2e;
    h[n] = in[n * s.Di];
    g[n] = active ? inc[n * s.Di] : 0.f;  // inactive lanes must add nothing to dB
    dA[n] = 0.f;
  }
  const float dskip = Dskip[d];
  const int64_t t0 = c * s.chunk_len, len = s.T - t0 < s.chunk_len ? s.T - t0 : s.chunk_len;
  float dD = 0.f;
  // Forward: keep h_{t-1} per step; dC_t = sum_d dy_t h_t.
#pragma unroll
  for (int i = 0; i < LB; ++i) {
    if (i < len) {
      const int64_t row = b * s.T + t0 + i;
      const float dt = load(delta + row * s.Di + d), x = load(u + row * s.Di + d) * dt;
      const float gy = active ? dy[row * s.Di + d] : 0.f;
      float dc[N];
#pragma unroll
      for (int n = 0; n < N; ++n) {
        hs[i][n] = h[n];
        h[n] = exp2f(dt * a2[n]) * h[n] + x * load(Bm + row * N + n);
        dc[n] = gy * h[n];
      }
      warp_sum_store<N>(dc, warp < warps ? dC_parts + ((b * warps + warp) * s.T + t0 + i) * N : nullptr);
    }
  }
  // Reverse.
#pragma unroll
  for (int i = LB - 1; i >= 0; --i) {
    if (i < len) {
      const int64_t row = b * s.T + t0 + i;
      const float dt = load(delta + row * s.Di + d), uu = load(u + row * s.Di + d);
      const float gy = active ? dy[row * s.Di + d] : 0.f;
      float dut = dskip * gy, ddt = 0.f, db[N];
#pragma unroll
      for (int n = 0; n < N; ++n) {
        const float a = exp2f(dt * a2[n]);
        const float Bn = load(Bm + row * N + n);
        const float gn = load(Cm + row * N + n) * gy + g[n];
        dut += gn * dt * Bn;
        ddt += gn * (Af[n] * a * hs[i][n] + Bn * uu);
        dA[n] += gn * dt * a * hs[i][n];
        db[n] = gn * dt * uu;
        g[n] = a * gn;
      }
      dD += gy * uu;
      warp_sum_store<N>(db, warp < warps ? dB_parts + ((b * warps + warp) * s.T + t0 + i) * N : nullptr);
      if (active) {
        du[row * s.Di + d] = dut;
        ddelta[row * s.Di + d] = ddt;
      }
    }
  }
  if (active) {
    float* outA = dA_parts + ((b * s.chunks + c) * N) * s.Di + d;
#pragma unroll
    for (int n = 0; n < N; ++n) outA[n * s.Di] = dA[n];
    dD_parts[(b * s.chunks + c) * s.Di + d] = dD;
  }
}

int sm_count() {
  static int count = [] {
    int device = 0, n = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device);
    return n > 0 ? n : 1;
  }();
  return count;
}

template <typename T, int N>
void forward_typed(const ScanProblem& p, int64_t chunks, float* ws, void* y, float* last, cudaStream_t stream) {
  Dims s{p.length, p.channels, (p.length + chunks - 1) / chunks, 0};
  s.chunks = (p.length + s.chunk_len - 1) / s.chunk_len;
  const dim3 grid(static_cast<unsigned>((p.channels + kThreads - 1) / kThreads), static_cast<unsigned>(s.chunks),
                  static_cast<unsigned>(p.batch));
  auto u = static_cast<const T*>(p.u);
  auto delta = static_cast<const T*>(p.delta);
  auto Bm = static_cast<const T*>(p.Bm);
  auto Cm = static_cast<const T*>(p.Cm);
  if (s.chunks == 1) {
    chunk_output_kernel<T, N><<<grid, kThreads, 0, stream>>>(s, u, delta, p.A, Bm, Cm, p.D, nullptr, p.h0,
                                                            static_cast<T*>(y), last);
    return;
  }
  float* local = ws;
  float* dtsum = ws + p.batch * s.chunks * N * p.channels;
  chunk_local_kernel<T, N><<<grid, kThreads, 0, stream>>>(s, u, delta, p.A, Bm, local, dtsum);
  const int64_t lanes = p.batch * N * p.channels;
  chunk_carry_kernel<N><<<static_cast<unsigned>((lanes + 255) / 256), 256, 0, stream>>>(s, p.batch, p.A, p.h0, dtsum,
                                                                                         local, last);
  chunk_output_kernel<T, N><<<grid, kThreads, 0, stream>>>(s, u, delta, p.A, Bm, Cm, p.D, local, p.h0,
                                                          static_cast<T*>(y), nullptr);
}

template <typename T, int N>
void backward_typed(const ScanProblem& p, const float* dy, const float* dlast, int64_t chunks, float* ws, float* ws2,
                    float* du, float* ddelta, float* dA_parts, float* dD_parts, float* dB_parts, float* dC_parts,
                    float* dh0, cudaStream_t stream) {
  constexpr int LB = N <= 16 ? 8 : 4;
  Dims s{p.length, p.channels, LB, (p.length + LB - 1) / LB};
  (void)chunks;
  const dim3 grid(static_cast<unsigned>((p.channels + kThreads - 1) / kThreads), static_cast<unsigned>(s.chunks),
                  static_cast<unsigned>(p.batch));
  auto u = static_cast<const T*>(p.u);
  auto delta = static_cast<const T*>(p.delta);
  auto Bm = static_cast<const T*>(p.Bm);
  auto Cm = static_cast<const T*>(p.Cm);
  float* initial = ws;
  float* dtsum = ws + p.batch * s.chunks * N * p.channels;
  float* incoming = ws2;
  float* last = dh0;  // scratch: the forward's last state is not needed, dh0 is written after
  const int64_t lanes = p.batch * N * p.channels;
  const unsigned lane_blocks = static_cast<unsigned>((lanes + 255) / 256);
  chunk_local_kernel<T, N><<<grid, kThreads, 0, stream>>>(s, u, delta, p.A, Bm, initial, dtsum);
  chunk_carry_kernel<N><<<lane_blocks, 256, 0, stream>>>(s, p.batch, p.A, p.h0, dtsum, initial, last);
  chunk_grad_local_kernel<T, N><<<grid, kThreads, 0, stream>>>(s, delta, p.A, Cm, dy, incoming);
  chunk_grad_carry_kernel<N><<<lane_blocks, 256, 0, stream>>>(s, p.batch, p.A, dtsum, dlast, incoming, dh0);
  chunk_grad_kernel<T, N, LB><<<grid, kThreads, 0, stream>>>(s, u, delta, p.A, Bm, Cm, p.D, initial, incoming, dy, du,
                                                              ddelta, dA_parts, dD_parts, dB_parts, dC_parts);
}

template <typename T>
bool dispatch_state(const ScanProblem& p, auto&& run) {
  switch (p.state) {
    case 1: run.template operator()<T, 1>(); return true;
    case 2: run.template operator()<T, 2>(); return true;
    case 4: run.template operator()<T, 4>(); return true;
    case 8: run.template operator()<T, 8>(); return true;
    case 16: run.template operator()<T, 16>(); return true;
    case 32: run.template operator()<T, 32>(); return true;
    default: return false;
  }
}

bool dispatch(const ScanProblem& p, auto&& run) {
  switch (p.type) {
    case ElementType::F32: return dispatch_state<float>(p, run);
    case ElementType::BF16: return dispatch_state<__nv_bfloat16>(p, run);
    case ElementType::F16: return dispatch_state<__half>(p, run);
  }
  return false;
}

thread_local char error_text[256];

}  // namespace

int64_t scan_forward_chunks(int64_t batch, int64_t length, int64_t channels) {
  // Enough (sequence, channel, chunk) threads for a few waves of the whole GPU, with
  // chunks of at least 16 tokens.
  const int64_t wanted_threads = int64_t(sm_count()) * 2048;
  const int64_t chunks = std::max<int64_t>(1, (wanted_threads + batch * channels - 1) / (batch * channels));
  return std::max<int64_t>(1, std::min(chunks, (length + 15) / 16));
}

int64_t scan_workspace_floats(int64_t batch, int64_t chunks, int64_t channels, int64_t state) {
  return batch * chunks * channels * (state + 1);
}

int64_t scan_backward_chunks(int64_t length) { return (length + 7) / 8; }

void scan_forward(const ScanProblem& p, int64_t chunks, float* workspace, void* y, float* last, void* stream) {
  error_text[0] = 0;
  const bool ok = dispatch(p, [&]<typename T, int N>() {
    forward_typed<T, N>(p, chunks, workspace, y, last, static_cast<cudaStream_t>(stream));
  });
  if (!ok) snprintf(error_text, sizeof error_text, "the CUDA scan supports state sizes 1, 2, 4, 8, 16 and 32, not %lld",
                    static_cast<long long>(p.state));
}

void scan_backward(const ScanProblem& p, const float* dy, const float* dlast, int64_t chunks, float* workspace,
                   float* workspace2, float* du, float* ddelta, float* dA_parts, float* dD_parts, float* dB_parts,
                   float* dC_parts, float* dh0, void* stream) {
  error_text[0] = 0;
  const bool ok = dispatch(p, [&]<typename T, int N>() {
    backward_typed<T, N>(p, dy, dlast, chunks, workspace, workspace2, du, ddelta, dA_parts, dD_parts, dB_parts,
                         dC_parts, dh0, static_cast<cudaStream_t>(stream));
  });
  if (!ok) snprintf(error_text, sizeof error_text, "the CUDA scan supports state sizes 1, 2, 4, 8, 16 and 32, not %lld",
                    static_cast<long long>(p.state));
}

const char* last_error() {
  if (error_text[0]) return error_text;
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return "";
  snprintf(error_text, sizeof error_text, "CUDA error: %s", cudaGetErrorString(e));
  return error_text;
}

}  // namespace memmamba::cuda_kernels
