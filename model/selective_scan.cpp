#include "model/selective_scan.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>


#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "model/block_vec.h"
#include "model/cuda/scan_dispatch.h"

namespace memmamba {

namespace {

// Channels processed together: one AVX-512 vector of floats. The loops below are
// written so that the compiler vectorises across these channels.
constexpr int64_t kBlock = kBlockLanes;
constexpr int64_t kMaxState = 256;

struct ScanShapes {
  int64_t batch, length, channels, state;
};

// One block of channels of one sequence, forward. Pointers are at the sequence start;
// per-token rows have stride `channels` (u, delta, y) or `state` (B, C).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void scan_block_forward(const ScanShapes& s, int64_t c0, int64_t width, const float* __restrict__ u,
                        const float* __restrict__ delta, const float* __restrict__ A, const float* __restrict__ Bm,
                        const float* __restrict__ Cm, const float* __restrict__ Dskip, float* __restrict__ h /*[N][kBlock]*/,
                        float* __restrict__ y, float* __restrict__ saved_states /* [T][N][kBlock] or null */) {
  const int64_t N = s.state, Di = s.channels;
  BlockVec a[kMaxState], state[kMaxState];
  for (int64_t n = 0; n < N; ++n) {
    float column[kBlock] = {};
    for (int64_t j = 0; j < width; ++j) column[j] = A[(c0 + j) * N + n];
    std::memcpy(&a[n], column, sizeof column);
    std::memcpy(&state[n], h + n * kBlock, sizeof(BlockVec));
  }
  const BlockVec dskip = load_block(Dskip + c0, width);
  for (int64_t t = 0; t < s.length; ++t) {
    const float* urow = u + t * Di + c0;
    const float* drow = delta + t * Di + c0;
    const BlockVec ut = load_block(urow, width), dt = load_block(drow, width);
    const BlockVec du = dt * ut;
    BlockVec acc = dskip * ut;
    const float* brow = Bm + t * N;
    const float* crow = Cm + t * N;
    for (int64_t n = 0; n < N; ++n) {
      const BlockVec next = fast_exp(dt * a[n]) * state[n] + du * brow[n];
      state[n] = next;
      acc += crow[n] * next;
    }
    if (saved_states) std::memcpy(saved_states + t * N * kBlock, state, sizeof(BlockVec) * static_cast<size_t>(N));
    store_block(y + t * Di + c0, acc, width);
  }
  std::memcpy(h, state, sizeof(BlockVec) * static_cast<size_t>(N));
}

// Backward for one block: recomputed states in `states` ([T][N][kBlock]), h0 the initial state.
// Accumulates dB, dC for this block into its own rows (summed over blocks afterwards).
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void scan_block_backward(const ScanShapes& s, int64_t c0, int64_t width, const float* u, const float* delta,
                         const float* A, const float* Bm, const float* Cm, const float* Dskip, const float* h0,
                         const float* states, const float* dy, float* g /*[N][kBlock], in: dlast, out: dh0*/,
                         float* du, float* ddelta, float* dA /*[N][kBlock]*/, float* dB_part, float* dC_part,
                         float* dD /*[kBlock]*/) {
  const int64_t N = s.state, Di = s.channels;
  float a[kMaxState][kBlock];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < kBlock; ++j) a[n][j] = j < width ? A[(c0 + j) * N + n] : 0.f;
  for (int64_t t = s.length - 1; t >= 0; --t) {
    float ut[kBlock], dt[kBlock], gy[kBlock], dut[kBlock], ddt[kBlock];
    for (int64_t j = 0; j < kBlock; ++j) {
      ut[j] = j < width ? u[t * Di + c0 + j] : 0.f;
      dt[j] = j < width ? delta[t * Di + c0 + j] : 0.f;
      gy[j] = j < width ? dy[t * Di + c0 + j] : 0.f;
      dut[j] = gy[j] * (j < width ? Dskip[c0 + j] : 0.f);
      dD[j] += gy[j] * ut[j];
      ddt[j] = 0.f;
    }
    const float* ht = states + t * N * kBlock;
    const float* hprev = t > 0 ? states + (t - 1) * N * kBlock : h0;
    for (int64_t n = 0; n < N; ++n) {
      const float b = Bm[t * N + n], c = Cm[t * N + n];
      float dc = 0.f, db = 0.f;
      float* gn = g + n * kBlock;
      for (int64_t j = 0; j < kBlock; ++j) {
        dc += gy[j] * ht[n * kBlock + j];
        const float gj = gn[j] + gy[j] * c;  // dL/dh_t
        const float decay = fast_exp(dt[j] * a[n][j]);
        const float hp = hprev[n * kBlock + j];
        dut[j] += gj * dt[j] * b;
        db += gj * dt[j] * ut[j];
        ddt[j] += gj * (a[n][j] * decay * hp + b * ut[j]);
        dA[n * kBlock + j] += gj * dt[j] * decay * hp;
        gn[j] = gj * decay;
      }
      dB_part[t * N + n] = db;
      dC_part[t * N + n] = dc;
    }
    for (int64_t j = 0; j < width; ++j) {
      du[t * Di + c0 + j] = dut[j];
      ddelta[t * Di + c0 + j] = ddt[j];
    }
  }
}

void check_inputs(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& Bm,
                  const torch::Tensor& Cm, const torch::Tensor& Dskip, const torch::Tensor& h0) {
  TORCH_CHECK(u.dim() == 3, "selective_scan: u must be [B, T, Di], got ", u.sizes());
  const int64_t Bsz = u.size(0), T = u.size(1), Di = u.size(2);
  TORCH_CHECK(delta.sizes() == u.sizes(), "selective_scan: delta ", delta.sizes(), " must match u ", u.sizes());
  TORCH_CHECK(A.dim() == 2 && A.size(0) == Di, "selective_scan: A must be [Di, N], got ", A.sizes());
  const int64_t N = A.size(1);
  TORCH_CHECK(N <= kMaxState, "selective_scan: state size ", N, " exceeds ", kMaxState);
  TORCH_CHECK(Bm.dim() == 3 && Bm.size(0) == Bsz && Bm.size(1) == T && Bm.size(2) == N,
              "selective_scan: B must be [B, T, N], got ", Bm.sizes());
  TORCH_CHECK(Cm.sizes() == Bm.sizes(), "selective_scan: C must be [B, T, N], got ", Cm.sizes());
  TORCH_CHECK(Dskip.dim() == 1 && Dskip.size(0) == Di, "selective_scan: D must be [Di], got ", Dskip.sizes());
  if (h0.defined())
    TORCH_CHECK(h0.dim() == 3 && h0.size(0) == Bsz && h0.size(1) == Di && h0.size(2) == N,
                "selective_scan: initial state must be [B, Di, N], got ", h0.sizes());
}

torch::Tensor f32(const torch::Tensor& t) { return t.to(torch::kFloat32).contiguous(); }

// Block state layout [N][kBlock] <-> [Di, N] tensors.
void load_block_state(const float* src /*[Di][N] of one sequence*/, int64_t c0, int64_t width, int64_t N, float* h) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < kBlock; ++j) h[n * kBlock + j] = j < width ? src[(c0 + j) * N + n] : 0.f;
}
void store_block_state(const float* h, int64_t c0, int64_t width, int64_t N, float* dst) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < width; ++j) dst[(c0 + j) * N + n] = h[n * kBlock + j];
}

ScanOutput scan_forward_cpu(const torch::Tensor& u_in, const torch::Tensor& delta_in, const torch::Tensor& A_in,
                            const torch::Tensor& B_in, const torch::Tensor& C_in, const torch::Tensor& D_in,
                            const torch::Tensor& h0_in) {
  auto u = f32(u_in), delta = f32(delta_in), A = f32(A_in), Bm = f32(B_in), Cm = f32(C_in), Dskip = f32(D_in);
  const ScanShapes s{u.size(0), u.size(1), u.size(2), A.size(1)};
  auto y = torch::empty_like(u);
  auto last = torch::zeros({s.batch, s.channels, s.state}, u.options());
  torch::Tensor h0 = h0_in.defined() ? f32(h0_in) : torch::Tensor();
  const int64_t blocks = (s.channels + kBlock - 1) / kBlock;
  at::parallel_for(0, s.batch * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> h(static_cast<size_t>(s.state * kBlock));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, c0 = (task % blocks) * kBlock;
      const int64_t width = std::min(kBlock, s.channels - c0);
      if (h0.defined()) load_block_state(h0.data_ptr<float>() + b * s.channels * s.state, c0, width, s.state, h.data());
      else std::fill(h.begin(), h.end(), 0.f);
      const int64_t seq = b * s.length * s.channels, seqn = b * s.length * s.state;
      scan_block_forward(s, c0, width, u.data_ptr<float>() + seq, delta.data_ptr<float>() + seq, A.data_ptr<float>(),
                         Bm.data_ptr<float>() + seqn, Cm.data_ptr<float>() + seqn, Dskip.data_ptr<float>(), h.data(),
                         y.data_ptr<float>() + seq, nullptr);
      store_block_state(h.data(), c0, width, s.state, last.data_ptr<float>() + b * s.channels * s.state);
    }
  });
  return {y.to(u_in.scalar_type()), last};
}

struct ScanGrads {
  torch::Tensor du, ddelta, dA, dB, dC, dD, dh0;
};

ScanGrads scan_backward_cpu(const torch::Tensor& u_in, const torch::Tensor& delta_in, const torch::Tensor& A_in,
                            const torch::Tensor& B_in, const torch::Tensor& C_in, const torch::Tensor& D_in,
                            const torch::Tensor& h0_in, const torch::Tensor& dy_in, const torch::Tensor& dlast_in) {
  auto u = f32(u_in), delta = f32(delta_in), A = f32(A_in), Bm = f32(B_in), Cm = f32(C_in), Dskip = f32(D_in);
  const ScanShapes s{u.size(0), u.size(1), u.size(2), A.size(1)};
  auto dy = dy_in.defined() ? f32(dy_in) : torch::zeros_like(u);
  auto dlast = dlast_in.defined() ? f32(dlast_in) : torch::Tensor();
  torch::Tensor h0 = h0_in.defined() ? f32(h0_in) : torch::Tensor();
  const int64_t blocks = (s.channels + kBlock - 1) / kBlock;
  auto du = torch::zeros_like(u), ddelta = torch::zeros_like(u);
  auto dA = torch::zeros_like(A), dD = torch::zeros_like(Dskip);
  auto dB_parts = torch::zeros({s.batch, blocks, s.length, s.state}, u.options());
  auto dC_parts = torch::zeros({s.batch, blocks, s.length, s.state}, u.options());
  auto dA_parts = torch::zeros({s.batch, blocks, s.state, kBlock}, u.options());
  auto dD_parts = torch::zeros({s.batch, blocks, kBlock}, u.options());
  auto dh0 = torch::zeros({s.batch, s.channels, s.state}, u.options());
  at::parallel_for(0, s.batch * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> h(static_cast<size_t>(s.state * kBlock)), h_init(h.size()), g(h.size());
    std::vector<float> states(static_cast<size_t>(s.length * s.state * kBlock));
    std::vector<float> yscratch(static_cast<size_t>(s.length * s.channels));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, blk = task % blocks, c0 = blk * kBlock;
      const int64_t width = std::min(kBlock, s.channels - c0);
      if (h0.defined()) load_block_state(h0.data_ptr<float>() + b * s.channels * s.state, c0, width, s.state, h_init.data());
      else std::fill(h_init.begin(), h_init.end(), 0.f);
      h = h_init;
      const int64_t seq = b * s.length * s.channels, seqn = b * s.length * s.state;
      scan_block_forward(s, c0, width, u.data_ptr<float>() + seq, delta.data_ptr<float>() + seq, A.data_ptr<float>(),
                         Bm.data_ptr<float>() + seqn, Cm.data_ptr<float>() + seqn, Dskip.data_ptr<float>(), h.data(),
                         yscratch.data(), states.data());
      if (dlast.defined()) load_block_state(dlast.data_ptr<float>() + b * s.channels * s.state, c0, width, s.state, g.data());
      else std::fill(g.begin(), g.end(), 0.f);
      const int64_t part = (b * blocks + blk);
      scan_block_backward(s, c0, width, u.data_ptr<float>() + seq, delta.data_ptr<float>() + seq, A.data_ptr<float>(),
                          Bm.data_ptr<float>() + seqn, Cm.data_ptr<float>() + seqn, Dskip.data_ptr<float>(),
                          h_init.data(), states.data(), dy.data_ptr<float>() + seq, g.data(), du.data_ptr<float>() + seq,
                          ddelta.data_ptr<float>() + seq, dA_parts.data_ptr<float>() + part * s.state * kBlock,
                          dB_parts.data_ptr<float>() + part * s.length * s.state,
                          dC_parts.data_ptr<float>() + part * s.length * s.state,
                          dD_parts.data_ptr<float>() + part * kBlock);
      store_block_state(g.data(), c0, width, s.state, dh0.data_ptr<float>() + b * s.channels * s.state);
    }
  });
  // Fold the per-block partial sums back to the parameter shapes.
  auto dA_blocks = dA_parts.sum(0).permute({0, 2, 1}).reshape({blocks * kBlock, s.state});  // [blocks*kBlock, N]
  dA.copy_(dA_blocks.narrow(0, 0, s.channels));
  dD.copy_(dD_parts.sum(0).reshape({blocks * kBlock}).narrow(0, 0, s.channels));
  return {du, ddelta, dA, dB_parts.sum(1), dC_parts.sum(1), dD, dh0};
}

class SelectiveScanFunction : public torch::autograd::Function<SelectiveScanFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, torch::Tensor u,
                                                torch::Tensor delta, torch::Tensor A, torch::Tensor Bm,
                                                torch::Tensor Cm, torch::Tensor Dskip, torch::Tensor h0) {
    ScanOutput out;
    if (u.is_cuda()) out = cuda_scan::forward(u, delta, A, Bm, Cm, Dskip, h0);
    else out = scan_forward_cpu(u, delta, A, Bm, Cm, Dskip, h0);
    ctx->save_for_backward({u, delta, A, Bm, Cm, Dskip, h0});
    return {out.y, out.last_state};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const torch::Tensor& h0 = saved[6];
    ScanGrads g;
    if (saved[0].is_cuda()) {
      auto r = cuda_scan::backward(saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], h0, grads[0], grads[1]);
      g = {r[0], r[1], r[2], r[3], r[4], r[5], r[6]};
    } else {
      g = scan_backward_cpu(saved[0], saved[1], saved[2], saved[3], saved[4], saved[5], h0, grads[0], grads[1]);
    }
    auto cast = [](const torch::Tensor& grad, const torch::Tensor& like) { return grad.to(like.scalar_type()); };
    return {cast(g.du, saved[0]), cast(g.ddelta, saved[1]), cast(g.dA, saved[2]), cast(g.dB, saved[3]),
            cast(g.dC, saved[4]),  cast(g.dD, saved[5]),     cast(g.dh0, saved[6])};
  }
};

}  // namespace

ScanOutput selective_scan(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                          const torch::Tensor& Bmat, const torch::Tensor& Cmat, const torch::Tensor& Dskip,
                          const torch::Tensor& initial_state) {
  check_inputs(u, delta, A, Bmat, Cmat, Dskip, initial_state);
  // Autograd functions cannot take undefined tensors: a missing state is a zero state.
  auto h0 = initial_state.defined()
                ? initial_state
                : torch::zeros({u.size(0), u.size(2), A.size(1)}, u.options().dtype(torch::kFloat32));
  // No tokens (a chunk whose tokens a decimating layer all dropped): the state stays.
  if (u.size(1) == 0) return {torch::zeros_like(u), h0};
  auto outs = SelectiveScanFunction::apply(u, delta, A, Bmat, Cmat, Dskip, h0);
  return {outs[0], outs[1]};
}

ScanOutput selective_scan_reference(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                                    const torch::Tensor& Bmat, const torch::Tensor& Cmat, const torch::Tensor& Dskip,
                                    const torch::Tensor& initial_state) {
  check_inputs(u, delta, A, Bmat, Cmat, Dskip, initial_state);
  const auto state_type = u.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto h = initial_state.defined() ? initial_state.to(state_type)
                                   : torch::zeros({u.size(0), u.size(2), A.size(1)}, u.options().dtype(state_type));
  auto uf = u.to(state_type), df = delta.to(state_type), Af = A.to(state_type);
  auto Bf = Bmat.to(state_type), Cf = Cmat.to(state_type), Df = Dskip.to(state_type);
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < u.size(1); ++t) {
    auto dt = df.select(1, t).unsqueeze(-1);                     // [B, Di, 1]
    auto decay = torch::exp(dt * Af);                            // [B, Di, N]
    auto drive = dt * Bf.select(1, t).unsqueeze(1) * uf.select(1, t).unsqueeze(-1);
    h = decay * h + drive;
    ys.push_back((h * Cf.select(1, t).unsqueeze(1)).sum(-1) + Df * uf.select(1, t));
  }
  auto y = ys.empty() ? torch::zeros_like(uf) : torch::stack(ys, 1);
  return {y.to(u.scalar_type()), h};
}

}  // namespace memmamba
