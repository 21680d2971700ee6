// The retrieval trigger (paper eq. 10-11): a token reads the pool when the previous
// token's summary is far from everything the pool holds. I_state is 1 - the best cosine
// against the pool as that token saw it (1 for an empty pool); the trigger fires when
// I_state > tau2. With windows of one token and the novelty rule, I_state at t is the
// importance at t - 1. The host walk (note_block.cpp) and the GPU walk
// (model/cuda/note_pool.cu) both call these two functions.
#pragma once

#if defined(__CUDACC__)
#define MEMMAMBA_HOST_DEVICE __host__ __device__
#else
#define MEMMAMBA_HOST_DEVICE
#endif

namespace memmamba {

MEMMAMBA_HOST_DEVICE inline float state_importance(float best_cosine, bool pool_empty) {
  return pool_empty ? 1.f : 1.f - best_cosine;
}

MEMMAMBA_HOST_DEVICE inline bool retrieval_fires(float istate, float tau_retrieve) { return istate > tau_retrieve; }

}  // namespace memmamba
