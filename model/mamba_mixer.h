// The Mamba-1 mixer (Gu & Dao 2023), pre-norm residual, in both modes.
#pragma once
#include <torch/types.h>

#include <functional>
#include <initializer_list>

#include "model/config.h"
#include "model/weights.h"

namespace memmamba {

struct MixerState {
  torch::Tensor conv;  // [B, Kc-1, Di], the last inputs of the causal conv
  torch::Tensor ssm;   // [B, Di, N], fp32
};

struct MixerOutput {
  torch::Tensor x_next;  // xf + out_proj(y)
  torch::Tensor dt;      // [B, T, Di] (parallel) or [B, Di] (step): softplus'd step sizes
  torch::Tensor kept;    // [B, k] int64 with a token selector: the rows of xf that went on
};

// Chooses, from the step sizes dt [B, T, Di], the tokens [B, k] (ascending) that stay in the
// sequence (DeciMamba); an undefined tensor keeps them all.
using TokenSelector = std::function<torch::Tensor(const torch::Tensor& dt)>;

MixerState new_mixer_state(const ModelConfig& c, int64_t batch, const torch::Device& device);

// xf: [B, T, D]; updates the state to the end of the chunk. `ssm_input_mask` ([B, T], optional)
// multiplies the step size dt: where it is 0 the SSM state neither takes the token in nor decays
// (training's blind needles, TrainOptions::blind_needle_fraction). With `select`, the tokens it
// keeps alone go through the scan and on (x_next, dt: [B, k, .]); the conv saw them all.
MixerOutput mixer_forward(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& xf,
                          MixerState& state, const torch::Tensor& ssm_input_mask = {}, const TokenSelector& select = {});
// xf: [B, D]; one token. fp32 CPU tensors take a loop implementation (a few matrix-vector
// products and plain loops: per-op overhead dominates a single token); others take tensor ops.
MixerOutput mixer_step(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& xf,
                       MixerState& state);
MixerOutput mixer_step_tensor_ops(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& xf,
                                  MixerState& state);

// A = -exp(A_log) of a layer, [Di, N].
torch::Tensor mixer_decay_rates(const Weights& w, int64_t layer);

// Whether autograd will differentiate through an op on these tensors; the inference-only
// paths (loops on the CPU, fused kernels on the GPU) run only where it will not.
bool needs_autograd(std::initializer_list<torch::Tensor> inputs);

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// x @ weight^T. Without autograd, large inputs are split by rows over the intra-op
// threads (BLAS runs single-threaded beside OpenMP: see configure_cpu_runtime).
// Under CpuBf16Projections, fp32 CPU inputs go through bf16 instead (see there).
torch::Tensor project(const torch::Tensor& x, const torch::Tensor& weight);

// bf16 matrix products on the CPU for a scope, on this thread: project() rounds its input and
// weight to bf16, multiplies them with oneDNN (AMX tiles where the CPU has them: about 5x
// the fp32 products on an Emerald Rapids core) and returns fp32. Inference only; the rest of
// the model (scan, memory, softmax) stays fp32. Nests; off restores what was there.
class CpuBf16Projections {
 public:
  explicit CpuBf16Projections(bool on);
  ~CpuBf16Projections();
  CpuBf16Projections(const CpuBf16Projections&) = delete;
  CpuBf16Projections& operator=(const CpuBf16Projections&) = delete;
  static bool active();

 private:
  bool previous_;
};

}  // namespace memmamba
