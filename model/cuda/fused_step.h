// Step mode on the GPU through fused kernels (model/cuda/step_kernels.cu): a layer's token
// in four launches instead of about sixty, every note of the step made by one launch at its
// end. It computes what the parallel pass over one token computes (test_cuda_step holds
// the two to each other), for runs that nothing observes: no trace, taps, edits or masks.
// MEMMAMBA_NO_FUSED_STEP=1 turns it off (for comparison and as an escape hatch).
#pragma once
#include <torch/types.h>

#include "model/memmamba.h"

namespace memmamba::cuda_ops {

#ifdef MEMMAMBA_WITH_CUDA
// Whether this step can run fused: a GPU model with fp32 weights, windows of one token,
// the weighted or residual fusion, pools on the GPU, and no observer, taps or edits.
bool fused_step_applies(const ModelConfig& config, const Weights& weights, const RunOptions& options,
                        const RunState& state);
// tokens: [B] int64 on the model's GPU, already checked against the vocabulary. Returns the
// logits [B, V]; the state's tensors are updated in place (RunState::position is the caller's).
torch::Tensor fused_step(const ModelConfig& config, const Weights& weights, const torch::Tensor& tokens, RunState& state,
                         const RunOptions& options);
#else
inline bool fused_step_applies(const ModelConfig&, const Weights&, const RunOptions&, const RunState&) { return false; }
[[noreturn]] inline torch::Tensor fused_step(const ModelConfig&, const Weights&, const torch::Tensor&, RunState&,
                                             const RunOptions&) {
  TORCH_CHECK(false, "this build of MemMamba has no CUDA kernels");
}
#endif

}  // namespace memmamba::cuda_ops
