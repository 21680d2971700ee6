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

constexpr int64_t kStripRows = 64;

// Backward, step 1: one thread per (sequence, channel, strip of rows) walks its rows in
// order, recomputes the pre-activation with a sliding window of inputs, writes the gradient
// before the SiLU and sums the weight and bias gradients of its strip.
template <typename In>
__global__ void causal_conv_grad_pre_kernel(CausalConvBackwardProblem p) {
  const In* x = static_cast<const In*>(p.x);
  const In* carried = static_cast<const In*>(p.carried);
  const int64_t Di = p.channels, T = p.length, Kc = p.kernel;
  const int64_t strips = (T + kStripRows - 1) / kStripRows, total = p.batch * strips * Di;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = i % Di, bs = i / Di, strip = bs % strips, b = bs / strips;
    auto input = [&](int64_t r) {
      return r >= 0 ? load(x, b * p.x_batch_stride + r * p.x_row_stride + d)
                    : load(carried, (b * (Kc - 1) + (Kc - 1 + r)) * Di + d);
    };
    float w[kMaxKernel], window[kMaxKernel], sums[kMaxKernel + 1];
    const int64_t t0 = strip * kStripRows, t1 = t0 + kStripRows < T ? t0 + kStripRows : T;
#pragma unroll
    for (int k = 0; k < kMaxKernel; ++k) {
      w[k] = k < Kc ? p.weight[d * Kc + k] : 0.f;
      // window[k] holds the input at row t - (Kc - 1) + k; filled for t0 but the last tap.
      window[k] = k + 1 < Kc ? input(t0 - (Kc - 1) + k) : 0.f;
      sums[k] = 0.f;
    }
    sums[kMaxKernel] = 0.f;
    const float bias = p.bias[d];
    for (int64_t t = t0; t < t1; ++t) {
#pragma unroll
      for (int k = 0; k < kMaxKernel; ++k)
        if (k == Kc - 1) window[k] = input(t);
      float z = bias;
#pragma unroll
      for (int k = 0; k < kMaxKernel; ++k)
        if (k < Kc) z += window[k] * w[k];
      const float sig = 1.f / (1.f + __expf(-z));
      const int64_t at = (b * T + t) * Di + d;
      const float g = p.grad_out[at] * sig * (1.f + z * (1.f - sig));
      p.grad_pre[at] = g;
#pragma unroll
      for (int k = 0; k < kMaxKernel; ++k)
        if (k < Kc) sums[k] += g * window[k];
      sums[kMaxKernel] += g;
#pragma unroll
      for (int k = 0; k + 1 < kMaxKernel; ++k)
        if (k + 1 < Kc) window[k] = window[k + 1];
    }
    float* part = p.weight_grad_parts + (bs * Di + d) * (Kc + 1);
    for (int k = 0; k < Kc; ++k) part[k] = sums[k];
    part[Kc] = sums[kMaxKernel];
  }
}

// Backward, step 2: the gradient of every input (the carried ones included), the taps that
// read it summed.
template <typename In>
__global__ void causal_conv_grad_input_kernel(CausalConvBackwardProblem p) {
  const int64_t Di = p.channels, T = p.length, Kc = p.kernel, padded = T + Kc - 1;
  const int64_t total = p.batch * padded * Di;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t d = i % Di, bj = i / Di, j = bj % padded, b = bj / padded;
    // Padded row j feeds output t = j - k through tap k.
    float acc = 0.f;
    for (int64_t k = 0; k < Kc; ++k) {
      const int64_t t = j - k;
      if (t >= 0 && t < T) acc += p.grad_pre[(b * T + t) * Di + d] * p.weight[d * Kc + k];
    }
    if (j >= Kc - 1) store(static_cast<In*>(p.grad_x), (b * T + j - (Kc - 1)) * Di + d, acc);
    else store(static_cast<In*>(p.grad_carried), (b * (Kc - 1) + j) * Di + d, acc);
  }
}

dim3 grid_for(int64_t total) {
  const int64_t blocks = (total + 255) / 256;
  return dim3(static_cast<unsigned>(blocks < 65536 ? blocks : 65536));
}

}  // namespace

int64_t causal_conv_backward_strips(int64_t length) { return (length + kStripRows - 1) / kStripRows; }

void causal_conv_silu_backward(const CausalConvBackwardProblem& p, void* stream) {
  if (p.batch * p.length * p.channels == 0) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const dim3 pre = grid_for(p.batch * causal_conv_backward_strips(p.length) * p.channels);
  const dim3 input = grid_for(p.batch * (p.length + p.kernel - 1) * p.channels);
  if (p.in_type == ElementType::BF16) {
    causal_conv_grad_pre_kernel<__nv_bfloat16><<<pre, 256, 0, s>>>(p);
    causal_conv_grad_input_kernel<__nv_bfloat16><<<input, 256, 0, s>>>(p);
  } else {
    causal_conv_grad_pre_kernel<float><<<pre, 256, 0, s>>>(p);
    causal_conv_grad_input_kernel<float><<<input, 256, 0, s>>>(p);
  }
}

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
