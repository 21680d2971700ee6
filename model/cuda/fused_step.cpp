#include "model/cuda/fused_step.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/torch.h>

#include <cstdlib>
#include <string>

#include "model/cuda/kernels.h"
#include "model/cuda/step_kernels.h"
#include "model/mamba_mixer.h"
#include "model/memory/gpu_pool.h"
#include "model/memory/layer_pool.h"

namespace memmamba::cuda_ops {
namespace {

namespace ck = cuda_kernels;

ck::StepDims dims_of(const ModelConfig& c, int64_t batch) {
  return {static_cast<int>(batch),         static_cast<int>(c.d_model),     static_cast<int>(c.inner()),
          static_cast<int>(c.d_state),     static_cast<int>(c.rank()),      static_cast<int>(c.conv_kernel),
          static_cast<int>(c.summary_dim), static_cast<int>(c.pool_slots),  static_cast<float>(c.norm_eps)};
}

bool memory_on(const ModelConfig& c, const RunOptions& o) { return c.memory && o.memory.enabled; }

// The weights one layer's step reads (all fp32, contiguous, on the GPU for the step to apply).
std::vector<std::string> layer_weight_names(const ModelConfig& c, int64_t layer, bool memory, ImportanceRule rule) {
  const std::string p = layer_prefix(layer);
  std::vector<std::string> names;
  for (const char* n : {"norm.weight", "in_proj.weight", "conv.weight", "conv.bias", "x_proj.weight", "dt_proj.weight",
                        "dt_proj.bias", "A_log", "D", "out_proj.weight"})
    names.push_back(p + "mixer." + n);
  if (!memory) return names;
  names.push_back(p + "note.norm.weight");
  names.push_back(p + "note.summary.weight");
  if (rule == ImportanceRule::Learned) {
    names.push_back(p + "note.importance.weight");
    names.push_back(p + "note.importance.bias");
  }
  std::vector<std::string> reads = {"token_attention."};
  if (c.has_cross_layer(layer)) reads.push_back("layer_attention.");
  for (const std::string& r : reads) {
    for (const char* n : {"norm.weight", "q.weight", "k.weight", "v.weight", "o.weight"}) names.push_back(p + r + n);
    if (c.fusion == FusionKind::Weighted) names.push_back(p + r + "fusion.scale");
  }
  return names;
}

const float* ptr(const Weights& w, const std::string& name) { return w[name].data_ptr<float>(); }

ck::StepRead read_weights(const Weights& w, const std::string& prefix, bool weighted) {
  return {ptr(w, prefix + "norm.weight"), ptr(w, prefix + "q.weight"), ptr(w, prefix + "k.weight"),
          ptr(w, prefix + "v.weight"),    ptr(w, prefix + "o.weight"),
          weighted ? ptr(w, prefix + "fusion.scale") : nullptr};
}

ck::StepPool step_pool(GpuPool& pool) {
  GpuPool::StepTensors t = pool.step_tensors();
  // A parallel pass under autocast may leave the note vectors in bf16; the step reads fp32.
  *t.vectors = t.vectors->to(torch::kFloat32).contiguous();
  *t.priority = t.priority->to(torch::kFloat32).contiguous();
  cuda_ops::DevicePool& d = *t.pool;
  return {d.slot_unit.data_ptr<float>(),    d.slot_priority.data_ptr<float>(), d.slot_inserted.data_ptr<int64_t>(),
          d.slot_note_id.data_ptr<int64_t>(), d.next_istate.data_ptr<float>(), d.notes_made.data_ptr<int64_t>(),
          t.vectors->data_ptr<float>(),     t.priority->data_ptr<float>()};
}

void check_launch(const char* what) {
  const std::string error = ck::last_error();
  TORCH_CHECK(error.empty(), what, ": ", error);
}

}  // namespace

bool fused_step_applies(const ModelConfig& c, const Weights& w, const RunOptions& o, const RunState& state) {
  if (const char* env = std::getenv("MEMMAMBA_NO_FUSED_STEP"); env && env[0] == '1') return false;
  if (o.observer || o.on_hidden || o.on_layer_output || o.on_attention || o.on_importance || o.ssm_input_mask.defined() ||
      (o.edits && !o.edits->empty()) || o.decimation.enabled() || torch::GradMode::is_enabled())
    return false;
  if (!ck::step_kernels_fit(dims_of(c, state.batch))) return false;
  const bool memory = memory_on(c, o);
  if (memory) {
    // The fused kernels take summaries and queries from the token alone.
    if (c.fusion == FusionKind::Gated || c.cross_layer_groups > ck::kStepMaxUnion || c.memory_context > 1) return false;
    // A state that has not run its memory yet gets its pools at the step's start.
    if (state.pools.empty()) {
      if (!gpu_pool_applies(c, w["embedding.weight"].device())) return false;
    } else {
      if (static_cast<int64_t>(state.pools.size()) != c.n_layers) return false;
      for (const auto& pool : state.pools)
        if (!dynamic_cast<const GpuPool*>(pool.get())) return false;
    }
  }
  // The weights' check looks up a few hundred names: done again only when a tensor of the
  // model changed (its address, type or layout), since it runs before every step.
  size_t signature = 0;
  for (const auto& [name, t] : w.all())
    signature = signature * 1000003u ^ (reinterpret_cast<size_t>(t.data_ptr()) + 7u * static_cast<size_t>(t.scalar_type()) +
                                        (t.is_contiguous() ? 1u : 0u));
  struct Checked {
    const Weights* weights = nullptr;
    size_t signature = 0;
    bool memory = false;
    ImportanceRule rule = ImportanceRule::Novelty;
    bool fits = false;
  };
  thread_local Checked last;
  if (last.weights == &w && last.signature == signature && last.memory == memory && last.rule == o.memory.importance)
    return last.fits;
  auto fits = [&](const std::string& name) {
    if (!w.has(name)) return false;
    const torch::Tensor& t = w[name];
    return t.is_cuda() && t.scalar_type() == torch::kFloat32 && t.is_contiguous();
  };
  bool all = fits("embedding.weight") && fits("norm_f.weight");
  for (int64_t l = 0; all && l < c.n_layers; ++l)
    for (const std::string& name : layer_weight_names(c, l, memory, o.memory.importance)) all = all && fits(name);
  last = {&w, signature, memory, o.memory.importance, all};
  return all;
}

torch::Tensor fused_step(const ModelConfig& c, const Weights& w, const torch::Tensor& tokens, RunState& state,
                         const RunOptions& o) {
  const c10::cuda::CUDAGuard guard(tokens.device());
  void* stream = static_cast<void*>(at::cuda::getCurrentCUDAStream().stream());
  const int64_t B = state.batch, D = c.d_model, Di = c.inner(), L = c.n_layers, S = c.summary_dim;
  const ck::StepDims dims = dims_of(c, B);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(tokens.device());
  const bool memory = memory_on(c, o);
  const auto token_ids = tokens.to(torch::kInt64).contiguous();
  auto x = torch::empty({B, D}, f32), xf = torch::empty({B, D}, f32);
  auto az = torch::empty({B, 2 * Di}, f32), y = torch::empty({B, Di}, f32), h = torch::empty({B, D}, f32);
  torch::Tensor pending_summary, pending_importance, pending_istate;
  std::vector<ck::StepPool> pools;
  if (memory) {
    pending_summary = torch::empty({L, B, S}, f32);
    pending_importance = torch::empty({L, B}, f32);
    pending_istate = torch::empty({L, B}, f32);
    for (auto& pool : state.pools) pools.push_back(step_pool(static_cast<GpuPool&>(*pool)));
  }
  auto pending = [&](int64_t l) {
    return ck::StepPending{pending_summary[l].data_ptr<float>(), pending_importance[l].data_ptr<float>(),
                           pending_istate[l].data_ptr<float>()};
  };

  ck::embed_step(token_ids.data_ptr<int64_t>(), ptr(w, "embedding.weight"), static_cast<int>(B), static_cast<int>(D),
                 x.data_ptr<float>(), stream);
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = layer_prefix(l);
    float* mixer_input = x.data_ptr<float>();
    if (memory) {
      ck::MemoryStepProblem m{};
      m.dims = dims;
      m.x = x.data_ptr<float>();
      m.xf = xf.data_ptr<float>();
      m.note_norm = ptr(w, p + "note.norm.weight");
      m.note_summary = ptr(w, p + "note.summary.weight");
      if (o.memory.importance == ImportanceRule::Learned) {
        m.importance_w = ptr(w, p + "note.importance.weight");
        m.importance_b = ptr(w, p + "note.importance.bias");
      }
      m.tau_note = static_cast<float>(o.memory.tau_note);
      m.tau_retrieve = static_cast<float>(o.memory.tau_retrieve);
      m.gain = static_cast<float>(o.memory.fusion_gain);
      const bool weighted = c.fusion == FusionKind::Weighted;
      m.token = read_weights(w, p + "token_attention.", weighted);
      m.cross_layer = c.has_cross_layer(l);
      const int64_t first = m.cross_layer ? std::max<int64_t>(0, l - c.cross_layer_groups + 1) : l;
      if (m.cross_layer) m.layer = read_weights(w, p + "layer_attention.", weighted);
      m.union_count = static_cast<int>(l - first + 1);
      for (int64_t k = first; k <= l; ++k) m.pools[k - first] = pools[static_cast<size_t>(k)];
      m.pending = pending(l);
      ck::memory_step(m, stream);
      check_launch("fused step: memory");
      mixer_input = xf.data_ptr<float>();
    }
    ck::MixerStepProblem mp{};
    mp.dims = dims;
    mp.xf = mixer_input;
    mp.x_next = x.data_ptr<float>();
    mp.az = az.data_ptr<float>();
    mp.y = y.data_ptr<float>();
    MixerState& ms = state.mixers[static_cast<size_t>(l)];
    ms.conv = ms.conv.to(torch::kFloat32).contiguous();
    ms.ssm = ms.ssm.to(torch::kFloat32).contiguous();
    mp.conv_state = ms.conv.data_ptr<float>();
    mp.ssm_state = ms.ssm.data_ptr<float>();
    const std::string m = p + "mixer.";
    mp.norm = ptr(w, m + "norm.weight");
    mp.in_proj = ptr(w, m + "in_proj.weight");
    mp.conv_w = ptr(w, m + "conv.weight");
    mp.conv_b = ptr(w, m + "conv.bias");
    mp.x_proj = ptr(w, m + "x_proj.weight");
    mp.dt_proj = ptr(w, m + "dt_proj.weight");
    mp.dt_bias = ptr(w, m + "dt_proj.bias");
    mp.A_log = ptr(w, m + "A_log");
    mp.D = ptr(w, m + "D");
    mp.out_proj = ptr(w, m + "out_proj.weight");
    ck::mixer_step(mp, stream);
    check_launch("fused step: mixer");
  }
  if (memory) {
    TORCH_CHECK(state.device_position.defined(), "fused step: the run state has no device position");
    for (int64_t l0 = 0; l0 < L; l0 += ck::kStepCommitLayers) {
      ck::CommitProblem cp{};
      cp.dims = dims;
      cp.layers = static_cast<int>(std::min<int64_t>(ck::kStepCommitLayers, L - l0));
      for (int i = 0; i < cp.layers; ++i) {
        cp.pools[i] = pools[static_cast<size_t>(l0 + i)];
        cp.pending[i] = pending(l0 + i);
      }
      cp.tau_note = static_cast<float>(o.memory.tau_note);
      cp.fifo = o.memory.policy == PoolPolicy::Fifo;
      cp.position = state.device_position.data_ptr<int64_t>();
      ck::commit_notes_step(cp, stream);
      check_launch("fused step: notes");
    }
  }
  ck::final_norm_step(x.data_ptr<float>(), ptr(w, "norm_f.weight"), static_cast<int>(B), static_cast<int>(D),
                      static_cast<float>(c.norm_eps), h.data_ptr<float>(),
                      state.device_position.defined() ? state.device_position.data_ptr<int64_t>() : nullptr, stream);
  check_launch("fused step: final norm");
  return project(h, w["embedding.weight"]);
}

}  // namespace memmamba::cuda_ops
