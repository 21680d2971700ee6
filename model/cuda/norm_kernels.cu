// RMSNorm for inference in one pass: x * rsqrt(mean(x^2) + eps) * weight, one warp per row
// (the tensor version makes five passes over [rows, D]: square, mean, scale, weight).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "model/cuda/kernels.h"

namespace memmamba::cuda_kernels {
namespace {

constexpr int kRowsPerBlock = 8;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }

template <typename In, typename Out>
__global__ void __launch_bounds__(kRowsPerBlock * 32) rms_norm_kernel(RmsNormProblem p) {
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= p.rows) return;
  const In* x = static_cast<const In*>(p.x) + row * p.width;
  Out* out = static_cast<Out*>(p.out) + row * p.width;
  float sq = 0.f;
  for (int64_t i = lane; i < p.width; i += 32) {
    const float v = load(x, i);
    sq += v * v;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(kFullMask, sq, o);
  const float r = rsqrtf(sq / static_cast<float>(p.width) + p.eps);
  for (int64_t i = lane; i < p.width; i += 32) store(out, i, load(x, i) * r * p.weight[i]);
}

// One warp per row, the rows strided over the blocks; each block sums its rows' weight
// gradient in shared memory and writes it once (no global atomics).
template <typename In>
__global__ void __launch_bounds__(kRowsPerBlock * 32) rms_norm_backward_kernel(RmsNormBackwardProblem p) {
  extern __shared__ float weight_grad[];
  for (int64_t i = threadIdx.x; i < p.width; i += blockDim.x) weight_grad[i] = 0.f;
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const float inv_width = 1.f / static_cast<float>(p.width);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5); row < p.rows;
       row += static_cast<int64_t>(gridDim.x) * kRowsPerBlock) {
    const In* x = static_cast<const In*>(p.x) + row * p.width;
    const float* g = p.grad_out + row * p.width;
    In* gx = static_cast<In*>(p.grad_x) + row * p.width;
    float sq = 0.f, dot = 0.f;
    for (int64_t i = lane; i < p.width; i += 32) {
      const float v = load(x, i);
      sq += v * v;
      dot += g[i] * p.weight[i] * v;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      sq += __shfl_xor_sync(kFullMask, sq, o);
      dot += __shfl_xor_sync(kFullMask, dot, o);
    }
    const float r = rsqrtf(sq * inv_width + p.eps);
    const float c = dot * r * r * r * inv_width;  // d/dx of r, through the mean of squares
    for (int64_t i = lane; i < p.width; i += 32) {
      const float v = load(x, i), gi = g[i];
      store(gx, i, r * gi * p.weight[i] - v * c);
      atomicAdd(&weight_grad[i], gi * v * r);
    }
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < p.width; i += blockDim.x) p.weight_grad_parts[blockIdx.x * p.width + i] = weight_grad[i];
}

}  // namespace

int64_t rms_norm_backward_blocks(int64_t rows) {
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  return blocks < 1 ? 1 : blocks > 512 ? 512 : blocks;
}

void rms_norm_backward(const RmsNormBackwardProblem& p, void* stream) {
  const auto blocks = static_cast<unsigned>(rms_norm_backward_blocks(p.rows));
  const size_t shared = static_cast<size_t>(p.width) * sizeof(float);
  const auto s = static_cast<cudaStream_t>(stream);
  if (p.in_type == ElementType::BF16)
    rms_norm_backward_kernel<__nv_bfloat16><<<blocks, kRowsPerBlock * 32, shared, s>>>(p);
  else
    rms_norm_backward_kernel<float><<<blocks, kRowsPerBlock * 32, shared, s>>>(p);
}

void rms_norm(const RmsNormProblem& p, void* stream) {
  if (p.rows < 1) return;
  const unsigned blocks = static_cast<unsigned>((p.rows + kRowsPerBlock - 1) / kRowsPerBlock);
  const auto s = static_cast<cudaStream_t>(stream);
  const bool in_bf16 = p.in_type == ElementType::BF16, out_bf16 = p.out_type == ElementType::BF16;
  if (in_bf16 && out_bf16) rms_norm_kernel<__nv_bfloat16, __nv_bfloat16><<<blocks, kRowsPerBlock * 32, 0, s>>>(p);
  else if (in_bf16) rms_norm_kernel<__nv_bfloat16, float><<<blocks, kRowsPerBlock * 32, 0, s>>>(p);
  else if (out_bf16) rms_norm_kernel<float, __nv_bfloat16><<<blocks, kRowsPerBlock * 32, 0, s>>>(p);
  else rms_norm_kernel<float, float><<<blocks, kRowsPerBlock * 32, 0, s>>>(p);
}

}  // namespace memmamba::cuda_kernels
