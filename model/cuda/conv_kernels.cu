// The Mamba mixer's causal depthwise convolution with its bias and SiLU, in one pass, for
// inference. The tensor version concatenates the carried inputs with the chunk and makes
// Kc shifted products, each a pass over [B, T, Di]; here each output element reads its Kc
// inputs (the carried ones for the first Kc - 1 tokens) and writes SiLU(conv) once.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "model/cuda/kernels.h"

namespace memmamba::cuda_kernels {
namespace {

constexpr int kMaxKernel = 8;

__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }

template <typename In, typename Out>
__global__ void causal_conv_silu_kernel(CausalConvProblem p) {
  const In* x = static_cast<const In*>(p.x);
  const In* carried = static_cast<const In*>(p.carried);
  Out* out = static_cast<Out*>(p.out);
  const int64_t Di = p.channels, T = p.length, Kc = p.kernel, total = p.batch * T * Di;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = i % Di, bt = i / Di, t = bt % T, b = bt / T;
    // Input at chunk row r (negative rows are the carried inputs of the previous chunk).
    auto input = [&](int64_t r) {
      return r >= 0 ? load(x, b * p.x_batch_stride + r * p.x_row_stride + d)
                    : load(carried, (b * (Kc - 1) + (Kc - 1 + r)) * Di + d);
    };
    float acc = input(t - (Kc - 1)) * p.weight[d * Kc] + p.bias[d];
#pragma unroll
    for (int k = 1; k < kMaxKernel; ++k)
      if (k < Kc) acc = acc + input(t - (Kc - 1) + k) * p.weight[d * Kc + k];
    store(out, i, acc / (1.f + __expf(-acc)));
  }
}

}  // namespace

bool causal_conv_supported(int64_t kernel) { return kernel >= 1 && kernel <= kMaxKernel; }

void causal_conv_silu(const CausalConvProblem& p, void* stream) {
  const int64_t total = p.batch * p.length * p.channels;
  if (total == 0) return;
  const int64_t blocks = (total + 255) / 256;
  const dim3 grid(static_cast<unsigned>(blocks < 65536 ? blocks : 65536));
  const auto s = static_cast<cudaStream_t>(stream);
  const bool in_bf16 = p.in_type == ElementType::BF16, out_bf16 = p.out_type == ElementType::BF16;
  if (in_bf16 && out_bf16) causal_conv_silu_kernel<__nv_bfloat16, __nv_bfloat16><<<grid, 256, 0, s>>>(p);
  else if (in_bf16) causal_conv_silu_kernel<__nv_bfloat16, float><<<grid, 256, 0, s>>>(p);
  else if (out_bf16) causal_conv_silu_kernel<float, __nv_bfloat16><<<grid, 256, 0, s>>>(p);
  else causal_conv_silu_kernel<float, float><<<grid, 256, 0, s>>>(p);
}

}  // namespace memmamba::cuda_kernels
