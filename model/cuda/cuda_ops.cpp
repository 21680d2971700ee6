// The Torch side of the CUDA kernels: checks, dtypes, work space from Torch's caching
// allocator, the current stream, and errors turned into exceptions. Built only when
// Torch has CUDA (MEMMAMBA_WITH_CUDA).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/torch.h>

#include <string>

#include "model/cuda/kernels.h"
#include "model/cuda/note_pool_op.h"
#include "model/cuda/scan_dispatch.h"
#include "model/runtime.h"

namespace memmamba {
namespace {

namespace ck = cuda_kernels;

void check_launch(const char* what) {
  const std::string error = ck::last_error();
  TORCH_CHECK(error.empty(), what, ": ", error);
}

ck::ElementType element_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return ck::ElementType::F32;
    case torch::kBFloat16: return ck::ElementType::BF16;
    case torch::kFloat16: return ck::ElementType::F16;
    default: TORCH_CHECK(false, "the CUDA scan takes fp32, bf16 or fp16 inputs, not ", t.scalar_type());
  }
}

struct PreparedScan {
  torch::Tensor u, delta, A, Bm, Cm, D, h0;
  ck::ScanProblem problem;
};

PreparedScan prepare(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                     const torch::Tensor& Bm, const torch::Tensor& Cm, const torch::Tensor& Dskip,
                     const torch::Tensor& h0) {
  PreparedScan p;
  const auto type = u.scalar_type();
  p.u = u.contiguous();
  p.delta = delta.to(type).contiguous();
  p.Bm = Bm.to(type).contiguous();
  p.Cm = Cm.to(type).contiguous();
  p.A = A.to(torch::kFloat32).contiguous();
  p.D = Dskip.to(torch::kFloat32).contiguous();
  const int64_t B = u.size(0), T = u.size(1), Di = u.size(2), N = A.size(1);
  p.h0 = h0.defined() ? h0.to(torch::kFloat32).contiguous() : torch::zeros({B, Di, N}, u.options().dtype(torch::kFloat32));
  for (const auto* t : {&p.delta, &p.A, &p.Bm, &p.Cm, &p.D, &p.h0})
    TORCH_CHECK(t->device() == p.u.device(), "selective_scan: all inputs must be on ", p.u.device());
  p.problem = {B, T, Di, N, element_type(p.u), p.u.data_ptr(), p.delta.data_ptr(), p.A.data_ptr<float>(),
               p.Bm.data_ptr(), p.Cm.data_ptr(), p.D.data_ptr<float>(), p.h0.data_ptr<float>()};
  return p;
}

void* current_stream() { return static_cast<void*>(at::cuda::getCurrentCUDAStream().stream()); }

}  // namespace

namespace cuda_scan {

bool available() { return torch::cuda::is_available(); }

ScanOutput forward(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A, const torch::Tensor& Bm,
                   const torch::Tensor& Cm, const torch::Tensor& Dskip, const torch::Tensor& h0) {
  const c10::cuda::CUDAGuard guard(u.device());
  PreparedScan p = prepare(u, delta, A, Bm, Cm, Dskip, h0);
  const auto& s = p.problem;
  auto y = torch::empty_like(p.u);
  auto last = torch::empty({s.batch, s.channels, s.state}, p.h0.options());
  if (s.length == 0) {
    last.copy_(p.h0);
    return {y, last};
  }
  const int64_t chunks = ck::scan_forward_chunks(s.batch, s.length, s.channels);
  auto workspace = torch::empty({chunks > 1 ? ck::scan_workspace_floats(s.batch, chunks, s.channels, s.state) : 1},
                                p.h0.options());
  ck::scan_forward(s, chunks, workspace.data_ptr<float>(), y.data_ptr(), last.data_ptr<float>(), current_stream());
  check_launch("selective scan forward");
  return {y, last};
}

std::vector<torch::Tensor> backward(const torch::Tensor& u, const torch::Tensor& delta, const torch::Tensor& A,
                                    const torch::Tensor& Bm, const torch::Tensor& Cm, const torch::Tensor& Dskip,
                                    const torch::Tensor& h0, const torch::Tensor& dy_in, const torch::Tensor& dlast_in) {
  const c10::cuda::CUDAGuard guard(u.device());
  PreparedScan p = prepare(u, delta, A, Bm, Cm, Dskip, h0);
  const auto& s = p.problem;
  const auto f32 = p.h0.options();
  auto dy = dy_in.defined() ? dy_in.to(torch::kFloat32).contiguous() : torch::zeros({s.batch, s.length, s.channels}, f32);
  auto dlast = dlast_in.defined() ? dlast_in.to(torch::kFloat32).contiguous() : torch::Tensor();
  auto du = torch::zeros({s.batch, s.length, s.channels}, f32);
  auto ddelta = torch::zeros({s.batch, s.length, s.channels}, f32);
  auto dh0 = torch::empty({s.batch, s.channels, s.state}, f32);
  if (s.length == 0) {
    if (dlast.defined()) dh0.copy_(dlast); else dh0.zero_();
    return {du, ddelta, torch::zeros_like(p.A), torch::zeros({s.batch, 0, s.state}, f32),
            torch::zeros({s.batch, 0, s.state}, f32), torch::zeros_like(p.D), dh0};
  }
  const int64_t chunks = ck::scan_backward_chunks(s.length);
  const int64_t warps = (s.channels + 31) / 32;
  auto workspace = torch::empty({ck::scan_workspace_floats(s.batch, chunks, s.channels, s.state)}, f32);
  auto workspace2 = torch::empty({s.batch * chunks * s.state * s.channels}, f32);
  auto dA_parts = torch::empty({s.batch * chunks, s.state, s.channels}, f32);
  auto dD_parts = torch::empty({s.batch * chunks, s.channels}, f32);
  auto dB_parts = torch::empty({s.batch, warps, s.length, s.state}, f32);
  auto dC_parts = torch::empty({s.batch, warps, s.length, s.state}, f32);
  ck::scan_backward(s, dy.data_ptr<float>(), dlast.defined() ? dlast.data_ptr<float>() : nullptr, chunks,
                    workspace.data_ptr<float>(), workspace2.data_ptr<float>(), du.data_ptr<float>(),
                    ddelta.data_ptr<float>(), dA_parts.data_ptr<float>(), dD_parts.data_ptr<float>(),
                    dB_parts.data_ptr<float>(), dC_parts.data_ptr<float>(), dh0.data_ptr<float>(), current_stream());
  check_launch("selective scan backward");
  return {du, ddelta, dA_parts.sum(0).t().contiguous(), dB_parts.sum(1), dC_parts.sum(1), dD_parts.sum(0), dh0};
}

bool causal_conv_available(const torch::Tensor& x, int64_t kernel) {
  const auto type = x.scalar_type();
  return x.is_cuda() && x.dim() == 3 && x.stride(2) == 1 && (type == torch::kFloat32 || type == torch::kBFloat16) &&
         ck::causal_conv_supported(kernel);
}

std::pair<torch::Tensor, torch::Tensor> causal_conv_silu(const torch::Tensor& x, const torch::Tensor& carried_in,
                                                         const torch::Tensor& weight, const torch::Tensor& bias) {
  TORCH_CHECK(causal_conv_available(x, weight.size(1)), "causal_conv_silu: x must be [B, T, Di] fp32 or bf16 on a GPU");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), T = x.size(1), Di = x.size(2), Kc = weight.size(1);
  const auto out_type = c10::promoteTypes(x.scalar_type(), weight.scalar_type());
  TORCH_CHECK(out_type == torch::kFloat32 || out_type == torch::kBFloat16, "causal_conv_silu: output type ", out_type);
  auto carried = carried_in.to(x.scalar_type()).contiguous();
  auto w = weight.to(torch::kFloat32).contiguous();
  auto b = bias.to(torch::kFloat32).contiguous();
  auto out = torch::empty({B, T, Di}, x.options().dtype(out_type));
  ck::CausalConvProblem p{B, T, Di, Kc, element_type(x), element_type(out), x.data_ptr(), x.stride(0), x.stride(1),
                          carried.data_ptr(), w.data_ptr<float>(), b.data_ptr<float>(), out.data_ptr()};
  ck::causal_conv_silu(p, current_stream());
  check_launch("causal conv");
  // The last Kc - 1 inputs, carried into the next chunk.
  torch::Tensor next;
  if (T >= Kc - 1) next = x.narrow(1, T - (Kc - 1), Kc - 1).contiguous();
  else next = torch::cat({carried.narrow(1, T, Kc - 1 - T), x}, 1).contiguous();
  return {out, next};
}

bool rms_norm_available(const torch::Tensor& x, const torch::Tensor& weight) {
  auto fp32_or_bf16 = [](torch::ScalarType t) { return t == torch::kFloat32 || t == torch::kBFloat16; };
  return x.is_cuda() && x.dim() >= 1 && x.size(-1) == weight.numel() && fp32_or_bf16(x.scalar_type()) &&
         fp32_or_bf16(weight.scalar_type()) && weight.device() == x.device();
}

torch::Tensor rms_norm(const torch::Tensor& x_in, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(rms_norm_available(x_in, weight), "rms_norm: fp32 or bf16 rows on a GPU and a weight of their width");
  const c10::cuda::CUDAGuard guard(x_in.device());
  auto x = x_in.contiguous();
  const auto out_type = c10::promoteTypes(x.scalar_type(), weight.scalar_type());
  auto w = weight.to(torch::kFloat32).contiguous();
  auto out = torch::empty(x.sizes(), x.options().dtype(out_type));
  const int64_t width = x.size(-1), rows = width > 0 ? x.numel() / width : 0;
  ck::RmsNormProblem p{rows, width, element_type(x), element_type(out), x.data_ptr(), w.data_ptr<float>(),
                       static_cast<float>(eps), out.data_ptr()};
  ck::rms_norm(p, current_stream());
  check_launch("rms norm");
  return out;
}

namespace {

class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               double eps) {
    ctx->save_for_backward({x, weight});
    ctx->saved_data["eps"] = eps;
    return rms_norm(x, weight, eps);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor x = saved[0].contiguous(), &weight = saved[1];
    const double eps = ctx->saved_data["eps"].toDouble();
    const c10::cuda::CUDAGuard guard(x.device());
    const int64_t width = x.size(-1), rows = width > 0 ? x.numel() / width : 0;
    auto w = weight.to(torch::kFloat32).contiguous();
    auto grad = grads[0].to(torch::kFloat32).contiguous();
    auto grad_x = torch::empty_like(x);
    const int64_t blocks = ck::rms_norm_backward_blocks(rows);
    auto parts = torch::empty({blocks, width}, w.options());
    ck::RmsNormBackwardProblem p{rows, width, element_type(x), x.data_ptr(), w.data_ptr<float>(), static_cast<float>(eps),
                                 grad.data_ptr<float>(), grad_x.data_ptr(), parts.data_ptr<float>()};
    ck::rms_norm_backward(p, current_stream());
    check_launch("rms norm backward");
    return {grad_x, parts.sum(0).to(weight.scalar_type()), torch::Tensor()};
  }
};

class CausalConvFunction : public torch::autograd::Function<CausalConvFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& carried,
                               const torch::Tensor& weight, const torch::Tensor& bias) {
    ctx->save_for_backward({x, carried, weight, bias});
    return causal_conv_silu(x, carried, weight, bias).first;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const c10::cuda::CUDAGuard guard(x.device());
    const int64_t B = x.size(0), T = x.size(1), Di = x.size(2), Kc = saved[2].size(1);
    auto carried = saved[1].to(x.scalar_type()).contiguous();
    auto w = saved[2].to(torch::kFloat32).contiguous();
    auto b = saved[3].to(torch::kFloat32).contiguous();
    auto grad = grads[0].to(torch::kFloat32).contiguous();
    auto grad_pre = torch::empty({B, T, Di}, w.options());
    auto parts = torch::empty({B * ck::causal_conv_backward_strips(T), Di, Kc + 1}, w.options());
    auto grad_x = torch::empty({B, T, Di}, x.options());
    auto grad_carried = torch::empty({B, Kc - 1, Di}, x.options());
    ck::CausalConvBackwardProblem p{B, T, Di, Kc, element_type(x), x.data_ptr(), x.stride(0), x.stride(1),
                                    carried.data_ptr(), w.data_ptr<float>(), b.data_ptr<float>(), grad.data_ptr<float>(),
                                    grad_pre.data_ptr<float>(), parts.data_ptr<float>(), grad_x.data_ptr(),
                                    grad_carried.data_ptr()};
    ck::causal_conv_silu_backward(p, current_stream());
    check_launch("causal conv backward");
    auto sums = parts.sum(0);  // [Di, Kc + 1]
    return {grad_x, grad_carried.to(saved[1].scalar_type()), sums.narrow(1, 0, Kc).to(saved[2].scalar_type()),
            sums.select(1, Kc).to(saved[3].scalar_type())};
  }
};

}  // namespace

torch::Tensor rms_norm_trainable(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(rms_norm_available(x, weight), "rms_norm: fp32 or bf16 rows on a GPU and a weight of their width");
  return RmsNormFunction::apply(x, weight, eps);
}

torch::Tensor causal_conv_silu_trainable(const torch::Tensor& x, const torch::Tensor& carried, const torch::Tensor& weight,
                                         const torch::Tensor& bias) {
  TORCH_CHECK(causal_conv_available(x, weight.size(1)), "causal_conv_silu: x must be [B, T, Di] fp32 or bf16 on a GPU");
  return CausalConvFunction::apply(x, carried, weight, bias);
}

}  // namespace cuda_scan

namespace cuda_ops {

bool slot_attention_available(const torch::Tensor& queries, int64_t columns) {
  return queries.is_cuda() && queries.dim() == 2 && ck::slot_attention_supported(queries.size(1), columns);
}

SlotAttentionRows slot_attention_rows(const torch::Tensor& queries_in, const torch::Tensor& keys_in,
                                      const torch::Tensor& values_in, const torch::Tensor& log_priority_in,
                                      const torch::Tensor& visible_in, double scale) {
  TORCH_CHECK(queries_in.is_cuda() && queries_in.dim() == 2 && visible_in.dim() == 2 &&
                  visible_in.size(0) == queries_in.size(0),
              "slot_attention_rows: queries [n, S] and visible [n, M] on a GPU");
  const c10::cuda::CUDAGuard guard(queries_in.device());
  auto queries = queries_in.detach().to(torch::kFloat32).contiguous();
  auto keys = keys_in.detach().to(torch::kFloat32).contiguous();
  auto values = values_in.detach().to(torch::kFloat32).contiguous();
  auto log_priority = log_priority_in.detach().to(torch::kFloat32).contiguous();
  auto visible = visible_in.to(torch::kInt64).contiguous();
  const int64_t n = queries.size(0), S = queries.size(1), M = visible.size(1);
  TORCH_CHECK(ck::slot_attention_supported(S, M), "slot_attention_rows: width ", S, " or ", M, " columns too large");
  SlotAttentionRows out{torch::empty({n, S}, queries.options()), torch::empty({n, M}, queries.options())};
  ck::SlotAttentionProblem p{n, S, M, queries.data_ptr<float>(), keys.data_ptr<float>(), values.data_ptr<float>(),
                             log_priority.data_ptr<float>(), visible.data_ptr<int64_t>(), static_cast<float>(scale),
                             out.context.data_ptr<float>(), out.weights.data_ptr<float>()};
  ck::slot_attention(p, current_stream());
  check_launch("slot attention");
  return out;
}

bool note_pool_available(int64_t slots, int64_t width) {
  return torch::cuda::is_available() && ck::note_pool_supported(slots, width);
}

DevicePoolDecisions note_pool(const torch::Tensor& summaries_in, const torch::Tensor& learned_in,
                              const MemorySettings& settings, DevicePool& pool, const torch::Tensor& position,
                              PoolWalk walk) {
  TORCH_CHECK(summaries_in.is_cuda() && summaries_in.dim() == 3, "note_pool: summaries must be [B, T, S] on a GPU");
  const c10::cuda::CUDAGuard guard(summaries_in.device());
  const int64_t B = summaries_in.size(0), T = summaries_in.size(1), S = summaries_in.size(2);
  const int64_t K = pool.slot_unit.size(1);
  TORCH_CHECK(ck::note_pool_supported(K, S), "note_pool: ", K, " slots of width ", S, " exceed the kernel's 64 x 64");
  auto summaries = summaries_in.detach().to(torch::kFloat32).contiguous();
  torch::Tensor learned;
  if (settings.importance == ImportanceRule::Learned) {
    TORCH_CHECK(learned_in.defined(), "note_pool: the learned rule needs importances");
    learned = learned_in.detach().to(torch::kFloat32).contiguous();
  }
  const auto dev = summaries.device();
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  auto i64 = f32.dtype(torch::kInt64);
  DevicePoolDecisions d;
  d.importance = torch::empty({B, T}, f32);
  d.istate = torch::empty({B, T}, f32);
  d.flags = torch::empty({B, T}, f32.dtype(torch::kUInt8));
  d.reference = torch::empty({B, T}, i64);
  d.visible = torch::empty({B, T, K}, i64);
  d.slot_taken = torch::empty({B, T}, f32.dtype(torch::kInt32));
  d.evicted_note = torch::empty({B, T}, i64);
  d.evicted_priority = torch::empty({B, T}, f32);
  d.final_bank = torch::empty({B, K}, i64);
  ck::NotePoolProblem p{};
  p.batch = B; p.length = T; p.slots = K; p.width = S;
  p.summaries = summaries.data_ptr<float>();
  p.learned = learned.defined() ? learned.data_ptr<float>() : nullptr;
  p.tau_note = static_cast<float>(settings.tau_note);
  p.tau_retrieve = static_cast<float>(settings.tau_retrieve);
  p.fifo = settings.policy == PoolPolicy::Fifo;
  p.position = position.data_ptr<int64_t>();
  p.slot_unit = pool.slot_unit.data_ptr<float>();
  p.slot_priority = pool.slot_priority.data_ptr<float>();
  p.slot_inserted = pool.slot_inserted.data_ptr<int64_t>();
  p.slot_note_id = pool.slot_note_id.data_ptr<int64_t>();
  p.next_istate = pool.next_istate.data_ptr<float>();
  p.notes_made = pool.notes_made.data_ptr<int64_t>();
  p.importance = d.importance.data_ptr<float>();
  p.istate = d.istate.data_ptr<float>();
  p.flags = d.flags.data_ptr<uint8_t>();
  p.reference = d.reference.data_ptr<int64_t>();
  p.visible = d.visible.data_ptr<int64_t>();
  p.slot_taken = d.slot_taken.data_ptr<int32_t>();
  p.evicted_note = d.evicted_note.data_ptr<int64_t>();
  p.evicted_priority = d.evicted_priority.data_ptr<float>();
  p.final_bank = d.final_bank.data_ptr<int64_t>();
  const bool by_events = walk == PoolWalk::Events || (walk == PoolWalk::Auto && T >= kEventWalkMinTokens);
  torch::Tensor work_units, work_bound, work_bound_slot, work_inserts, work_insert_count, work_initial_bank;
  if (by_events) {
    auto i32 = f32.dtype(torch::kInt32);
    work_units = torch::empty({B, T, ck::note_pool_unit_width()}, f32);
    work_bound = torch::empty({B, T}, f32);
    work_bound_slot = torch::empty({B, T}, i32);
    work_inserts = torch::empty({B, K, T}, i32);  // written only where slots take notes
    work_insert_count = torch::empty({B, K}, i32);
    work_initial_bank = torch::empty({B, K}, i64);
    p.work_units = work_units.data_ptr<float>();
    p.work_bound = work_bound.data_ptr<float>();
    p.work_bound_slot = work_bound_slot.data_ptr<int32_t>();
    p.work_inserts = work_inserts.data_ptr<int32_t>();
    p.work_insert_count = work_insert_count.data_ptr<int32_t>();
    p.work_initial_bank = work_initial_bank.data_ptr<int64_t>();
  }
  ck::note_pool(p, by_events ? ck::PoolWalk::Events : ck::PoolWalk::Sequential, current_stream());
  check_launch("note pool");
  return d;
}

}  // namespace cuda_ops
namespace cuda_memory {

void release_cached() {
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::emptyCache();
}

int64_t peak_allocated_bytes() {
  if (!torch::cuda::is_available()) return 0;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(c10::cuda::current_device());
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
}

void reset_peak() {
  if (torch::cuda::is_available()) c10::cuda::CUDACachingAllocator::resetPeakStats(c10::cuda::current_device());
}

void set_limit_bytes(int64_t bytes) {
  if (!torch::cuda::is_available()) return;
  size_t free_bytes = 0, total_bytes = 0;
  C10_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const double fraction = bytes <= 0 ? 1.0 : std::min(1.0, static_cast<double>(bytes) / static_cast<double>(total_bytes));
  c10::cuda::CUDACachingAllocator::setMemoryFraction(fraction, c10::cuda::current_device());
}

}  // namespace cuda_memory

}  // namespace memmamba
