// Step mode's fused kernels (model/cuda/step_kernels.cu): one token per sequence through a
// layer in four launches (the memory's read and the mixer's three) instead of about sixty,
// and one launch at the end of the step that makes every layer's note. Raw device pointers,
// fp32 throughout, no Torch types (model/cuda/fused_step.cpp is the Torch side).
#pragma once
#include <cstdint>

namespace memmamba::cuda_kernels {

constexpr int kStepMaxUnion = 8;  // pools one cross-layer read may span

struct StepDims {
  int batch, d_model, d_inner, d_state, dt_rank, conv_kernel, summary, slots;
  float norm_eps;
};

// One layer's pool as step mode reads and writes it (the GPU walk's state, see note_pool.cu,
// and the raw note vectors and priorities the attentions read).
struct StepPool {
  float* slot_unit;        // [B, K, S]
  float* slot_priority;    // [B, K]
  int64_t* slot_inserted;  // [B, K]
  int64_t* slot_note_id;   // [B, K], -1 empty
  float* next_istate;      // [B]
  int64_t* notes_made;     // [B]
  float* vectors;          // [B, K, S]
  float* priority;         // [B, K]
};

// A slot attention's weights (norm, q [S, D], k and v [S, S], o [D, S]) and its fusion.
struct StepRead {
  const float *norm, *q, *k, *v, *o;
  const float* fusion_scale;  // [D] for the weighted fusion, null for the residual one
};

// The note the step's token makes in one layer, decided when the layer reads and applied
// to the pool after every layer has read (a note is visible from the next token on).
struct StepPending {
  float* summary;     // [B, S]
  float* importance;  // [B]
  float* next_istate; // [B]
};

struct MemoryStepProblem {
  StepDims dims;
  const float* x;   // [B, D] the layer's input
  float* xf;        // [B, D] x + the fusion terms
  const float *note_norm, *note_summary;      // [D], [S, D]
  const float *importance_w, *importance_b;   // [D], [1]: the learned rule, null for novelty
  float tau_note, tau_retrieve, gain;
  StepRead token;
  bool cross_layer;
  StepRead layer;
  int union_count;                       // pools the cross-layer read spans (the layer's last)
  StepPool pools[kStepMaxUnion];         // [0 .. union_count): layers first .. this one
  StepPending pending;
};

struct MixerStepProblem {
  StepDims dims;
  const float* xf;         // [B, D]
  float* x_next;           // [B, D]
  float* az;               // [B, 2Di] work space
  float* y;                // [B, Di] work space
  float* conv_state;       // [B, Kc-1, Di]
  float* ssm_state;        // [B, Di, N]
  const float *norm, *in_proj, *conv_w, *conv_b, *x_proj, *dt_proj, *dt_bias, *A_log, *D, *out_proj;
};

constexpr int kStepCommitLayers = 16;  // layers one commit launch takes (more: more launches)

struct CommitProblem {
  StepDims dims;
  int layers;
  StepPool pools[kStepCommitLayers];
  StepPending pending[kStepCommitLayers];
  float tau_note;
  bool fifo;
  const int64_t* position;  // [1] the token's absolute position
};

bool step_kernels_fit(const StepDims& d);
void embed_step(const int64_t* tokens, const float* embedding, int batch, int d_model, float* x, void* stream);
void memory_step(const MemoryStepProblem& p, void* stream);
void mixer_step(const MixerStepProblem& p, void* stream);
void commit_notes_step(const CommitProblem& p, void* stream);
// h = RMSNorm(x) with the final norm's weight, and the position moved on by one.
void final_norm_step(const float* x, const float* weight, int batch, int d_model, float eps, float* h, int64_t* position,
                     void* stream);

}  // namespace memmamba::cuda_kernels
