// Launchers of the CUDA kernels, on raw device pointers and a stream: no Torch types,
// so that nvcc compiles the kernels without LibTorch's headers (model/cuda/cuda_ops.cpp
// is the Torch side). Element types: 0 = fp32, 1 = bf16, 2 = fp16.
#pragma once
#include <cstdint>

namespace memmamba::cuda_kernels {

enum class ElementType : int { F32 = 0, BF16 = 1, F16 = 2 };

struct ScanProblem {
  int64_t batch, length, channels, state;
  ElementType type;  // of u, delta, B, C and y
  const void* u;     // [B, T, Di]
  const void* delta; // [B, T, Di]
  const float* A;    // [Di, N]
  const void* Bm;    // [B, T, N]
  const void* Cm;    // [B, T, N]
  const float* D;    // [Di]
  const float* h0;   // [B, Di, N]
};

// Time chunks the forward splits the sequence into, so that batch 1 fills the GPU.
int64_t scan_forward_chunks(int64_t batch, int64_t length, int64_t channels);
// Work space: floats for `chunks` chunks (chunk-local states and summed step sizes).
int64_t scan_workspace_floats(int64_t batch, int64_t chunks, int64_t channels, int64_t state);

// y: [B, T, Di] of the problem's type; last: [B, Di, N] fp32.
void scan_forward(const ScanProblem& p, int64_t chunks, float* workspace, void* y, float* last, void* stream);

// Backward. dy: [B, T, Di] fp32; dlast: [B, Di, N] fp32 (may be null).
// Outputs (fp32): du, ddelta [B, T, Di]; dA_parts [B * chunks, N, Di]; dD_parts [B * chunks, Di];
// dB_parts, dC_parts [B, Di / 32 (rounded up), T, N]; dh0 [B, Di, N]. Partial sums are
// summed by the caller, so the result does not depend on the order of atomics.
int64_t scan_backward_chunks(int64_t length);
void scan_backward(const ScanProblem& p, const float* dy, const float* dlast, int64_t chunks, float* workspace,
                   float* workspace2, float* du, float* ddelta, float* dA_parts, float* dD_parts, float* dB_parts,
                   float* dC_parts, float* dh0, void* stream);

// The Note Block's bookkeeping for windows of one token (see note_pool.cu).
struct NotePoolProblem {
  int64_t batch, length, slots, width;
  const float* summaries;   // [B, T, S]
  const float* learned;     // [B, T] or null (novelty rule)
  float tau_note, tau_retrieve;
  bool fifo;
  const int64_t* position;  // [1] absolute position of token 0 (a device scalar, so CUDA graphs can replay)
  // Pool state, updated in place: per sequence K slots.
  float* slot_unit;         // [B, K, S] unit vectors of the notes
  float* slot_priority;     // [B, K]
  int64_t* slot_inserted;   // [B, K] position of insertion (-1 empty)
  int64_t* slot_note_id;    // [B, K] layer-local note id (-1 empty)
  float* next_istate;       // [B]
  int64_t* notes_made;      // [B]
  // Outputs per token.
  float* importance;        // [B, T]
  float* istate;            // [B, T]
  uint8_t* flags;           // [B, T] bit 0 noted, bit 1 trigger
  int64_t* reference;       // [B, T] bank index of the novelty reference, -1 none
  int64_t* visible;         // [B, T, K] bank index per slot (-1 empty); bank = K carried slots, then T tokens
  int32_t* slot_taken;      // [B, T] slot the token's note went to, -1 none
  int64_t* evicted_note;    // [B, T] note id evicted by that insert, -1 none
  float* evicted_priority;  // [B, T]
  int64_t* final_bank;      // [B, K] bank index each slot holds after the chunk (-1 empty)
  // Work space of the walk by events (the sequential walk leaves them untouched).
  float* work_units;          // [B, T, note_pool_unit_width()] the tokens' unit vectors, zero-padded
  float* work_bound;          // [B, T] best cosine against the pool the chunk starts with
  int32_t* work_bound_slot;   // [B, T] its slot, -1 when that pool is empty
  int32_t* work_inserts;      // [B, K, T] per slot, the chunk rows inserted into it, in order
  int32_t* work_insert_count; // [B, K]
  int64_t* work_initial_bank; // [B, K]
  int64_t row_begin, row_end;  // the span of rows one launch of the walk covers (set by note_pool)
};
// Sequential: one warp visits every token in order (the reference; short chunks such as
// one step). Events: the pool is constant between notes, so the tokens between two notes
// are decided together. Both give the same decisions, bit for bit.
enum class PoolWalk : int { Sequential = 0, Events = 1 };
// Returns false when the shape is outside what the kernels hold (K <= 64, S <= 64).
bool note_pool_supported(int64_t slots, int64_t width);
int64_t note_pool_unit_width();
void note_pool(const NotePoolProblem& p, PoolWalk walk, void* stream);

// Attention of query rows over visible notes, for inference (see slot_attention.cu). All fp32.
struct SlotAttentionProblem {
  int64_t rows, width, columns;  // n, S, M
  const float* queries;          // [n, S] (projected)
  const float* keys;             // [nb, S]
  const float* values;           // [nb, S]
  const float* log_priority;     // [nb]
  const int64_t* visible;        // [n, M] bank index per column, -1 where nothing is visible
  float scale;                   // 1 / sqrt(S)
  float* context;                // [n, S] sum of weights x values (0 where nothing is visible)
  float* weights;                // [n, M] (0 where not visible)
};
bool slot_attention_supported(int64_t width, int64_t columns);
void slot_attention(const SlotAttentionProblem& p, void* stream);

// SiLU(causal depthwise conv + bias) of the mixer, for inference (see conv_kernels.cu).
// Input and output elements are fp32 or bf16 (in_type, out_type); weights fp32.
struct CausalConvProblem {
  int64_t batch, length, channels, kernel;  // B, T, Di, Kc
  ElementType in_type, out_type;
  const void* x;                            // x[b, t, d] at b * x_batch_stride + t * x_row_stride + d
  int64_t x_batch_stride, x_row_stride;
  const void* carried;                      // [B, Kc - 1, Di] contiguous, of in_type: the inputs before row 0
  const float* weight;                      // [Di, Kc]
  const float* bias;                        // [Di]
  void* out;                                // [B, T, Di] contiguous, of out_type
};
bool causal_conv_supported(int64_t kernel);
void causal_conv_silu(const CausalConvProblem& p, void* stream);

// Its backward, for training: the pre-activation is recomputed from the inputs.
struct CausalConvBackwardProblem {
  int64_t batch, length, channels, kernel;  // B, T, Di, Kc
  ElementType in_type;                      // of x, carried, grad_x and grad_carried
  const void* x;                            // as in CausalConvProblem
  int64_t x_batch_stride, x_row_stride;
  const void* carried;                      // [B, Kc - 1, Di] contiguous
  const float* weight;                      // [Di, Kc]
  const float* bias;                        // [Di]
  const float* grad_out;                    // [B, T, Di] contiguous
  float* grad_pre;                          // [B, T, Di] work: the gradient before the SiLU
  // [B * causal_conv_backward_strips(T), Di, Kc + 1]: per strip of rows, the sums of
  // grad_pre x input at each tap, then of grad_pre (the caller sums the strips).
  float* weight_grad_parts;
  void* grad_x;                             // [B, T, Di] contiguous
  void* grad_carried;                       // [B, Kc - 1, Di] contiguous
};
int64_t causal_conv_backward_strips(int64_t length);
void causal_conv_silu_backward(const CausalConvBackwardProblem& p, void* stream);

// RMSNorm of [rows, width] for inference (see norm_kernels.cu); weight fp32.
struct RmsNormProblem {
  int64_t rows, width;
  ElementType in_type, out_type;
  const void* x;        // [rows, width] contiguous
  const float* weight;  // [width]
  float eps;
  void* out;            // [rows, width] contiguous
};
void rms_norm(const RmsNormProblem& p, void* stream);

// Its backward, for training. grad_x in_type; weight_grad_parts [blocks, width] (the
// caller sums them), blocks = rms_norm_backward_blocks(rows).
struct RmsNormBackwardProblem {
  int64_t rows, width;
  ElementType in_type;
  const void* x;             // [rows, width] contiguous
  const float* weight;       // [width]
  float eps;
  const float* grad_out;     // [rows, width] contiguous
  void* grad_x;              // [rows, width] contiguous
  float* weight_grad_parts;  // [blocks, width]
};
int64_t rms_norm_backward_blocks(int64_t rows);
void rms_norm_backward(const RmsNormBackwardProblem& p, void* stream);

// Last CUDA error as text ("" when none), checked by the caller after launches.
const char* last_error();

}  // namespace memmamba::cuda_kernels
