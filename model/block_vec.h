// Sixteen fp32 lanes as one value, for the CPU loops that run over channels (the scan, the
// causal conv): GCC lowers the arithmetic to the widest vectors of each target clone (one
// AVX-512 register on x86-64-v4).
#pragma once
#include <cstdint>
#include <cstring>

namespace memmamba {

constexpr int64_t kBlockLanes = 16;

// Whole-vector loads and stores keep per-token rows out of scalar code: a row copied float by
// float into a stack array and read back as a vector stalls on store forwarding, on every token
// (once half the scan's time). Every helper taking or returning a block is inlined, so the
// vector ABI of the narrower clones that GCC warns about is never used.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float BlockVec __attribute__((vector_size(kBlockLanes * sizeof(float))));
typedef int32_t BlockInt __attribute__((vector_size(kBlockLanes * sizeof(int32_t))));

// `width` lanes from p, the rest 0; a whole block is one vector load (a copy of variable size
// would be a library call).
__attribute__((always_inline)) inline BlockVec load_block(const float* p, int64_t width) {
  BlockVec v{};
  if (width == kBlockLanes) std::memcpy(&v, p, sizeof v);
  else std::memcpy(&v, p, sizeof(float) * static_cast<size_t>(width));
  return v;
}
__attribute__((always_inline)) inline void store_block(float* p, const BlockVec& v, int64_t width) {
  if (width == kBlockLanes) std::memcpy(p, &v, sizeof v);
  else std::memcpy(p, &v, sizeof(float) * static_cast<size_t>(width));
}

// 2^k for a whole number k (a float, or each lane), built in the exponent bits.
__attribute__((always_inline)) inline float exp2_whole(float k) {
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return scale;
}
__attribute__((always_inline)) inline BlockVec exp2_whole(BlockVec k) {
  const BlockInt bits = (__builtin_convertvector(k, BlockInt) + 127) << 23;
  BlockVec scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return scale;
}

// exp(x) for a float or each lane of a block: Cephes-style polynomial, about 2 ulp, branch-free
// so that it vectorises (std::exp does not).
template <class Value>
__attribute__((always_inline)) inline Value fast_exp(Value x) {
  const Value zero{};
  x = x < -87.0f ? zero - 87.0f : x;
  x = x > 88.0f ? zero + 88.0f : x;
  // Round x / ln 2 to the nearest integer by adding and removing 1.5 * 2^23.
  const Value k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const Value r = x - k * 0.693359375f + k * 2.12194440e-4f;
  Value p = zero + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * exp2_whole(k);
}

// x * sigmoid(x), lane by lane.
__attribute__((always_inline)) inline BlockVec silu_block(BlockVec x) { return x / (1.0f + fast_exp(-x)); }

}  // namespace memmamba
