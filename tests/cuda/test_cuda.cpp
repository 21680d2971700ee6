// GPU tests (CTest label "cuda"): the CUDA scan against the reference recurrence, its
// gradients against autograd, and the whole model on the GPU against the CPU and
// against its own step mode. A plain program (the GPU machine has no Qt); without a
// GPU it says so and exits 77, which CTest reports as skipped.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <tuple>
#include <string>
#include <vector>

#include "model/cuda/note_pool_op.h"
#include "model/cuda/scan_dispatch.h"
#include "model/memmamba.h"
#include "model/runner.h"
#include "model/selective_scan.h"
#include "model/trace.h"
#include "model/train/losses.h"
#include "tests/cuda/cuda_checks.h"
#include "tests/test_helpers.h"

using namespace memmamba;

namespace {

using cuda_testing::check;
using cuda_testing::model_case;

double max_rel(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.detach().to(torch::kCPU, torch::kFloat64), w = want.detach().to(torch::kCPU, torch::kFloat64);
  const double scale = w.abs().max().item<double>() + 1e-12;
  return (g - w).abs().max().item<double>() / scale;
}

struct ScanInputs {
  torch::Tensor u, delta, A, Bm, Cm, D, h0;
};

ScanInputs random_scan(int64_t B, int64_t T, int64_t Di, int64_t N, torch::Dtype type, const torch::Device& dev) {
  auto f = torch::TensorOptions().dtype(torch::kFloat32);
  ScanInputs s;
  s.u = torch::randn({B, T, Di}, f).to(dev, type);
  s.delta = torch::nn::functional::softplus(torch::randn({B, T, Di}, f) - 1).to(dev, type);
  s.A = -torch::exp(torch::randn({Di, N}, f) * 0.5).to(dev);
  s.Bm = torch::randn({B, T, N}, f).to(dev, type);
  s.Cm = torch::randn({B, T, N}, f).to(dev, type);
  s.D = torch::randn({Di}, f).to(dev);
  s.h0 = torch::randn({B, Di, N}, f).to(dev);
  return s;
}

ScanInputs to(const ScanInputs& s, const torch::Device& dev, torch::Dtype type) {
  return {s.u.to(dev, type), s.delta.to(dev, type), s.A.to(dev, type), s.Bm.to(dev, type),
          s.Cm.to(dev, type), s.D.to(dev, type),    s.h0.to(dev, type)};
}

void scan_forward_matches_reference() {
  const torch::Device gpu(torch::kCUDA);
  struct Case { int64_t B, T, Di, N; };
  for (const Case& c : {Case{2, 1000, 40, 16}, Case{1, 5000, 96, 4}, Case{3, 17, 130, 8}, Case{1, 1, 64, 32},
                        Case{1, 70000, 64, 16}}) {
    torch::manual_seed(c.T + c.Di);
    ScanInputs g = random_scan(c.B, c.T, c.Di, c.N, torch::kFloat32, gpu);
    auto out = selective_scan(g.u, g.delta, g.A, g.Bm, g.Cm, g.D, g.h0);
    ScanInputs r = to(g, torch::kCPU, torch::kFloat64);
    ScanOutput ref = c.T <= 5000 ? selective_scan_reference(r.u, r.delta, r.A, r.Bm, r.Cm, r.D, r.h0)
                                 : selective_scan(r.u.to(torch::kFloat32), r.delta.to(torch::kFloat32),
                                                  r.A.to(torch::kFloat32), r.Bm.to(torch::kFloat32),
                                                  r.Cm.to(torch::kFloat32), r.D.to(torch::kFloat32),
                                                  r.h0.to(torch::kFloat32));
    const double ey = max_rel(out.y, ref.y), eh = max_rel(out.last_state, ref.last_state);
    char name[160];
    std::snprintf(name, sizeof name, "scan fp32 B=%lld T=%lld Di=%lld N=%lld: y rel err %.2e, last state %.2e",
                  (long long)c.B, (long long)c.T, (long long)c.Di, (long long)c.N, ey, eh);
    check(ey < 1e-4 && eh < 1e-4, name);
  }
  // bf16 inputs: the same recurrence on the rounded inputs, fp32 state; y rounded to bf16.
  for (auto type : {torch::kBFloat16, torch::kFloat16}) {
    torch::manual_seed(7);
    ScanInputs g = random_scan(1, 3000, 256, 16, type, gpu);
    auto out = selective_scan(g.u, g.delta, g.A, g.Bm, g.Cm, g.D, g.h0);
    ScanInputs r = to(g, torch::kCPU, torch::kFloat64);
    auto ref = selective_scan_reference(r.u, r.delta, r.A, r.Bm, r.Cm, r.D, r.h0);
    const double ey = max_rel(out.y, ref.y), eh = max_rel(out.last_state, ref.last_state);
    check(out.y.scalar_type() == type && ey < 1e-2 && eh < 1e-4,
          std::string("scan ") + (type == torch::kBFloat16 ? "bf16" : "fp16") + " inputs: y rel err " +
              std::to_string(ey) + ", fp32 state rel err " + std::to_string(eh));
  }
}

void scan_backward_matches_autograd() {
  const torch::Device gpu(torch::kCUDA);
  struct Case { int64_t B, T, Di, N; };
  for (const Case& c : {Case{2, 37, 40, 4}, Case{1, 300, 70, 16}, Case{2, 9, 33, 8}}) {
    torch::manual_seed(c.T * 3 + c.N);
    ScanInputs g = random_scan(c.B, c.T, c.Di, c.N, torch::kFloat32, gpu);
    ScanInputs r = to(g, torch::kCPU, torch::kFloat64);
    auto dy = torch::randn({c.B, c.T, c.Di}, torch::kFloat64);
    auto dlast = torch::randn({c.B, c.Di, c.N}, torch::kFloat64);
    std::vector<torch::Tensor> gin = {g.u, g.delta, g.A, g.Bm, g.Cm, g.D, g.h0};
    std::vector<torch::Tensor> rin = {r.u, r.delta, r.A, r.Bm, r.Cm, r.D, r.h0};
    for (auto& t : gin) t.requires_grad_(true);
    for (auto& t : rin) t.requires_grad_(true);
    auto go = selective_scan(gin[0], gin[1], gin[2], gin[3], gin[4], gin[5], gin[6]);
    ((go.y * dy.to(gpu, torch::kFloat32)).sum() + (go.last_state * dlast.to(gpu, torch::kFloat32)).sum()).backward();
    auto ro = selective_scan_reference(rin[0], rin[1], rin[2], rin[3], rin[4], rin[5], rin[6]);
    ((ro.y * dy).sum() + (ro.last_state * dlast).sum()).backward();
    const char* names[] = {"du", "ddelta", "dA", "dB", "dC", "dD", "dh0"};
    double worst = 0;
    std::string detail;
    for (size_t i = 0; i < gin.size(); ++i) {
      const double e = max_rel(gin[i].grad(), rin[i].grad());
      worst = std::max(worst, e);
      detail += std::string(" ") + names[i] + "=" + std::to_string(e).substr(0, 8);
    }
    char name[120];
    std::snprintf(name, sizeof name, "scan backward B=%lld T=%lld Di=%lld N=%lld vs fp64 autograd:",
                  (long long)c.B, (long long)c.T, (long long)c.Di, (long long)c.N);
    check(worst < 1e-3, name + detail);
  }
}

void model_gpu_matches_cpu_and_step() {
  const torch::Device gpu(torch::kCUDA);
  torch::NoGradGuard no_grad;
  // compare_cpu false: untrained weights of the default config note densely; GPU and CPU may
  // part at a float tie (dense_gpu_matches_cpu_up_to_a_tie checks that case).
  struct Case { ModelConfig config; int64_t T, chunk; const char* name; bool compare_cpu = true; };
  std::vector<Case> cases = {
      {model_case(ImportanceRule::Novelty, PoolPolicy::Priority, FusionKind::Weighted), 300, 128, "novelty/priority/weighted"},
      {model_case(ImportanceRule::Novelty, PoolPolicy::Fifo, FusionKind::Gated), 300, 4096, "novelty/fifo/gated"},
      {model_case(ImportanceRule::Learned, PoolPolicy::Priority, FusionKind::Residual), 300, 77, "learned/priority/residual"},
      {model_case(ImportanceRule::Learned, PoolPolicy::Fifo, FusionKind::Weighted), 300, 4096, "learned/fifo/weighted"},
  };
  cases.push_back({ModelConfig{}, 3000, 1024, "default config (K=50, S=64)", false});
  ModelConfig windowed = testing::tiny_config();
  windowed.note_window = 4;
  cases.push_back({windowed, 300, 100, "w=4 (host bookkeeping on GPU tensors)"});
  for (const Case& c : cases) {
    MemMambaModel cpu = MemMambaModel::random(c.config, 11);
    MemMambaModel dev = MemMambaModel::random(c.config, 11);
    dev.to(gpu);
    auto tokens = torch::randint(0, c.config.vocab_size, {1, c.T}, torch::kInt64);
    RunOptions oc = cpu.default_options(), og = dev.default_options();
    oc.chunk_tokens = c.chunk;
    og.chunk_tokens = c.chunk;
    RunState sc = cpu.new_state(1), sg = dev.new_state(1);
    auto lg = dev.logits(dev.forward(tokens, sg, og));
    if (c.compare_cpu) {
      auto lc = cpu.logits(cpu.forward(tokens, sc, oc));
      const double e = max_rel(lg, lc);
      check(e < 1e-3, std::string("GPU == CPU logits, ") + c.name + ": rel err " + std::to_string(e));
    }

    // Step mode on the GPU over the first tokens equals the GPU parallel pass.
    const int64_t steps = std::min<int64_t>(c.T, 120);
    RunState ss = dev.new_state(1);
    std::vector<torch::Tensor> rows;
    for (int64_t t = 0; t < steps; ++t) rows.push_back(dev.step(tokens[0].narrow(0, t, 1), ss, og));
    auto ls = torch::cat(rows, 0);
    const double diff = (ls.cpu() - lg[0].narrow(0, 0, steps).cpu()).abs().max().item<double>();
    check(diff < 1e-4, std::string("GPU step == GPU parallel, ") + c.name + ": max |dlogit| " + std::to_string(diff));
  }
}

// The walk by events against the sequential walk (model/cuda/note_pool.cu): every decision,
// event and visible slot, and the pool they leave, bit for bit, over chunks in a row; with
// rare, dense, tied and threshold-grazing notes, full pools with evictions and drops, both
// policies and both importance rules, batches whose rows note differently.
void event_walk_matches_sequential_walk() {
  torch::NoGradGuard no_grad;
  const torch::Device gpu(torch::kCUDA);
  enum Kind { Dense, Rare, Ties, Grazing };
  struct Case {
    const char* name;
    Kind kind;
    int64_t B, T, K, S, chunks;
    ImportanceRule rule;
    PoolPolicy policy;
  };
  const std::vector<Case> cases = {
      {"dense, priority", Dense, 2, 700, 50, 64, 3, ImportanceRule::Novelty, PoolPolicy::Priority},
      {"dense, fifo", Dense, 1, 1500, 50, 64, 2, ImportanceRule::Novelty, PoolPolicy::Fifo},
      {"rare, priority, K=50 S=64", Rare, 3, 5000, 50, 64, 3, ImportanceRule::Novelty, PoolPolicy::Priority},
      {"rare, fifo, K=7 S=17", Rare, 2, 3000, 7, 17, 3, ImportanceRule::Novelty, PoolPolicy::Fifo},
      {"rare, priority, K=64 S=33", Rare, 1, 20000, 64, 33, 2, ImportanceRule::Novelty, PoolPolicy::Priority},
      {"rare, priority, K=1 S=1", Rare, 2, 600, 1, 1, 2, ImportanceRule::Novelty, PoolPolicy::Priority},
      {"tied cosines, priority", Ties, 2, 2000, 5, 64, 2, ImportanceRule::Novelty, PoolPolicy::Priority},
      {"tied cosines, fifo", Ties, 1, 2000, 4, 8, 2, ImportanceRule::Novelty, PoolPolicy::Fifo},
      {"threshold-grazing, priority", Grazing, 2, 3000, 50, 64, 2, ImportanceRule::Novelty, PoolPolicy::Priority},
      {"learned, priority", Rare, 2, 3000, 20, 64, 2, ImportanceRule::Learned, PoolPolicy::Priority},
      {"learned, fifo, dense", Dense, 1, 2000, 20, 64, 2, ImportanceRule::Learned, PoolPolicy::Fifo},
      {"chunk of 65 tokens", Rare, 2, 65, 10, 64, 4, ImportanceRule::Novelty, PoolPolicy::Priority},
  };
  int64_t total_inserts = 0, total_evictions = 0, total_drops = 0;
  for (const Case& c : cases) {
    torch::manual_seed(1234 + c.T + c.K);
    const int64_t n = c.T * c.chunks;
    auto f = torch::TensorOptions().dtype(torch::kFloat32);
    torch::Tensor summaries, learned;
    if (c.kind == Dense || c.kind == Grazing) {
      summaries = torch::randn({c.B, n, c.S}, f);
    }
    if (c.kind == Rare || c.kind == Grazing) {
      // Tokens near one of a few more directions than slots, now and then a new one.
      auto protos = torch::randn({c.K + 30, c.S}, f);
      auto pick = torch::randint(0, c.K + 30, {c.B, n}, torch::kInt64);
      auto near = protos.index_select(0, pick.reshape({-1})).view({c.B, n, c.S}) + 0.05 * torch::randn({c.B, n, c.S}, f);
      auto fresh = torch::rand({c.B, n, 1}, f).lt(0.003);
      summaries = c.kind == Rare ? torch::where(fresh, torch::randn({c.B, n, c.S}, f), near)
                                 : torch::where(torch::rand({c.B, n, 1}, f).lt(0.5), summaries, near);
    }
    if (c.kind == Ties) {
      // A handful of directions at random scales: identical unit vectors, exactly tied cosines.
      auto set = torch::randint(-2, 3, {6, c.S}, torch::kInt64).to(torch::kFloat32);
      auto pick = torch::randint(0, 6, {c.B, n}, torch::kInt64);
      summaries = set.index_select(0, pick.reshape({-1})).view({c.B, n, c.S}) * torch::rand({c.B, n, 1}, f).add(0.5);
    }
    if (c.rule == ImportanceRule::Learned) learned = torch::rand({c.B, n}, f).to(gpu);
    summaries = summaries.to(gpu);
    MemorySettings settings;
    settings.importance = c.rule;
    settings.policy = c.policy;
    settings.tau_note = c.rule == ImportanceRule::Learned ? (c.kind == Dense ? 0.2 : 0.97) : 0.3;
    settings.tau_retrieve = 0.2;
    auto run = [&](cuda_ops::PoolWalk walk) {
      cuda_ops::DevicePool pool = cuda_ops::new_device_pool(c.B, c.K, c.S, gpu);
      auto position = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt64).device(gpu));
      std::vector<cuda_ops::DevicePoolDecisions> out;
      for (int64_t k = 0; k < c.chunks; ++k) {
        auto s = summaries.narrow(1, k * c.T, c.T).contiguous();
        auto l = learned.defined() ? learned.narrow(1, k * c.T, c.T).contiguous() : torch::Tensor();
        out.push_back(cuda_ops::note_pool(s, l, settings, pool, position, walk));
        position.add_(c.T);
      }
      return std::make_pair(std::move(out), pool);
    };
    if (c.kind == Grazing) {
      // Put tau1 exactly on importances the walk produces.
      auto [probe, unused] = run(cuda_ops::PoolWalk::Sequential);
      auto values = std::get<0>(torch::sort(probe[1].importance.flatten().cpu()));
      settings.tau_note = values[values.size(0) / 2].item<float>();
    }
    auto [seq, seq_pool] = run(cuda_ops::PoolWalk::Sequential);
    auto [evt, evt_pool] = run(cuda_ops::PoolWalk::Events);
    bool same = true;
    std::string differs;
    auto compare = [&](const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
      if (!torch::equal(a.cpu(), b.cpu())) { same = false; if (differs.empty()) differs = " (" + what + " differs)"; }
    };
    int64_t inserts = 0, evictions = 0, drops = 0, noted = 0;
    for (size_t k = 0; k < seq.size(); ++k) {
      const auto &a = seq[k], &b = evt[k];
      const std::string chunk = " in chunk " + std::to_string(k);
      compare(a.importance, b.importance, "importance" + chunk);
      compare(a.istate, b.istate, "I_state" + chunk);
      compare(a.flags, b.flags, "flags" + chunk);
      compare(a.reference, b.reference, "reference" + chunk);
      compare(a.visible, b.visible, "visible slots" + chunk);
      compare(a.slot_taken, b.slot_taken, "slot taken" + chunk);
      compare(a.evicted_note, b.evicted_note, "evicted note" + chunk);
      compare(a.evicted_priority, b.evicted_priority, "evicted priority" + chunk);
      compare(a.final_bank, b.final_bank, "final bank" + chunk);
      auto taken = a.slot_taken.cpu();
      auto is_noted = a.flags.cpu().bitwise_and(1).ne(0);
      noted += is_noted.sum().item<int64_t>();
      inserts += taken.ge(0).sum().item<int64_t>();
      evictions += a.evicted_note.cpu().ge(0).sum().item<int64_t>();
      drops += (is_noted & taken.lt(0)).sum().item<int64_t>();
    }
    compare(seq_pool.slot_unit, evt_pool.slot_unit, "pool vectors");
    compare(seq_pool.slot_priority, evt_pool.slot_priority, "pool priorities");
    compare(seq_pool.slot_inserted, evt_pool.slot_inserted, "pool insertion positions");
    compare(seq_pool.slot_note_id, evt_pool.slot_note_id, "pool note ids");
    compare(seq_pool.next_istate, evt_pool.next_istate, "carried I_state");
    compare(seq_pool.notes_made, evt_pool.notes_made, "notes made");
    total_inserts += inserts;
    total_evictions += evictions;
    total_drops += drops;
    char name[320];
    std::snprintf(name, sizeof name,
                  "event walk == sequential walk, %s (B=%lld, %lld x %lld tokens): %lld noted (%.2f%%), %lld evictions, "
                  "%lld drops%s",
                  c.name, (long long)c.B, (long long)c.chunks, (long long)c.T, (long long)noted,
                  100.0 * noted / (c.B * n), (long long)evictions, (long long)drops, differs.c_str());
    check(same && noted > 0, name);
  }
  check(total_evictions > 0 && total_drops > 0 && total_inserts > total_evictions,
        "the walk cases cover inserts, evictions and drops (" + std::to_string(total_inserts) + ", " +
            std::to_string(total_evictions) + ", " + std::to_string(total_drops) + ")");
}

// The fused slot attention for inference against the same attention in float64 tensors:
// visible and empty columns, rows that see nothing, the widths of the own pool and the union.
void slot_attention_kernel_matches_tensors() {
  torch::NoGradGuard no_grad;
  const torch::Device gpu(torch::kCUDA);
  struct Case { int64_t n, S, M, nb; };
  for (const Case& c : {Case{1000, 64, 50, 300}, Case{777, 17, 100, 90}, Case{300, 64, 256, 1000}, Case{5, 1, 3, 4}}) {
    torch::manual_seed(c.n + c.M);
    auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
    auto q = torch::randn({c.n, c.S}, f64), k = torch::randn({c.nb, c.S}, f64), v = torch::randn({c.nb, c.S}, f64);
    auto lp = torch::log(torch::rand({c.nb}, f64).add(0.01));
    auto visible = torch::randint(0, c.nb, {c.n, c.M}, torch::kInt64);
    visible = torch::where(torch::rand({c.n, c.M}).lt(0.3), torch::full_like(visible, -1), visible);
    visible.narrow(0, 0, std::min<int64_t>(3, c.n)).fill_(-1);  // rows that see nothing
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.S));
    auto mask = visible.ge(0);
    auto idx = visible.clamp_min(0);
    auto keys = k.index_select(0, idx.reshape({-1})).view({c.n, c.M, c.S});
    auto vals = v.index_select(0, idx.reshape({-1})).view({c.n, c.M, c.S});
    auto logits = torch::matmul(keys, q.unsqueeze(-1)).squeeze(-1) * scale + lp.index_select(0, idx.reshape({-1})).view({c.n, c.M});
    logits = logits.masked_fill(mask.logical_not(), -1e300);
    auto att = torch::softmax(logits, -1) * mask.to(torch::kFloat64);
    auto want_ctx = torch::matmul(att.unsqueeze(1), vals).squeeze(1);
    auto got = cuda_ops::slot_attention_rows(q.to(gpu, torch::kFloat32), k.to(gpu, torch::kFloat32),
                                             v.to(gpu, torch::kFloat32), lp.to(gpu, torch::kFloat32), visible.to(gpu),
                                             scale);
    const double ew = (got.weights.cpu().to(torch::kFloat64) - att).abs().max().item<double>();
    const double ec = (got.context.cpu().to(torch::kFloat64) - want_ctx).abs().max().item<double>();
    const bool empty_rows_zero = got.weights.narrow(0, 0, std::min<int64_t>(3, c.n)).abs().sum().item<double>() == 0 &&
                                 got.context.narrow(0, 0, std::min<int64_t>(3, c.n)).abs().sum().item<double>() == 0;
    check(ew < 1e-5 && ec < 1e-4 && empty_rows_zero,
          "slot attention kernel == float64 tensors (n=" + std::to_string(c.n) + ", S=" + std::to_string(c.S) +
              ", M=" + std::to_string(c.M) + "): weights " + std::to_string(ew) + ", context " + std::to_string(ec));
  }
}

// The first (position, layer) where two traces of the same tokens decide differently: the
// noted flag, or the pool events at that position. {-1, -1} when they never do.
std::pair<int64_t, int32_t> first_divergence(const Trace& a, const Trace& b) {
  std::map<std::tuple<int64_t, int32_t>, std::vector<std::pair<int, int32_t>>> ea, eb;
  for (const PoolEvent& e : a.events) ea[{e.position, e.layer}].push_back({e.kind, e.slot});
  for (const PoolEvent& e : b.events) eb[{e.position, e.layer}].push_back({e.kind, e.slot});
  for (int64_t t = 0; t < a.length(); ++t)
    for (int32_t l = 0; l < static_cast<int32_t>(a.layers.size()); ++l) {
      const bool noted_a = a.layers[l].flags[t] & kNoted, noted_b = b.layers[l].flags[t] & kNoted;
      auto ia = ea.find({t, l});
      auto ib = eb.find({t, l});
      const bool same_events = (ia == ea.end()) == (ib == eb.end()) && (ia == ea.end() || ia->second == ib->second);
      if (noted_a != noted_b || !same_events) return {t, l};
    }
  return {-1, -1};
}

// Untrained weights note almost every token, and the pool's priority policy then compares a
// new note's importance with the lowest priority in a full pool again and again: where the
// two are within float noise, the GPU's and the CPU's arithmetic may decide differently, and
// from there on the runs differ. So: the GPU and the CPU agree on every decision up to the
// first one that differs, that one lies within 1e-4 of tau1 or of a priority in the pool,
// and the logits agree up to it.
void dense_gpu_matches_cpu_up_to_a_tie() {
  torch::NoGradGuard no_grad;
  const torch::Device gpu(torch::kCUDA);
  ModelConfig c;  // the default small config (K=50, S=64)
  const int64_t T = 3000;
  MemMambaModel cpu = MemMambaModel::random(c, 11);
  MemMambaModel dev = MemMambaModel::random(c, 11);
  dev.to(gpu);
  torch::manual_seed(3);
  auto tokens = torch::randint(0, c.vocab_size, {1, T}, torch::kInt64);
  std::vector<int32_t> ids(tokens.data_ptr<int64_t>(), tokens.data_ptr<int64_t>() + T);
  auto trace = [&](const MemMambaModel& m) {
    TraceRunRequest req;
    req.tokens = ids;
    req.options = m.default_options();
    req.options.chunk_tokens = 1024;
    req.trace_options.record_attention = false;
    return trace_tokens(m, std::move(req));
  };
  const Trace a = trace(cpu), b = trace(dev);
  const auto [position, layer] = first_divergence(a, b);
  int64_t noted = 0;
  for (const auto& l : a.layers) for (uint8_t f : l.flags) noted += (f & kNoted) != 0;
  double margin = 0;
  if (position >= 0) {
    const float importance = a.layers[layer].importance[position];
    margin = std::abs(importance - c.tau_note);
    for (int64_t note : a.pool_at(layer, position))
      if (note >= 0) margin = std::min(margin, static_cast<double>(std::abs(importance - a.notes[note].priority)));
  }
  // Logits of the rows up to the divergence (a note made there is visible from the next token).
  const int64_t rows = position >= 0 ? position + 1 : T;
  RunOptions oc = cpu.default_options(), og = dev.default_options();
  oc.chunk_tokens = og.chunk_tokens = 1024;
  RunState sc = cpu.new_state(1), sg = dev.new_state(1);
  auto lc = cpu.logits(cpu.forward(tokens, sc, oc)).narrow(1, 0, rows);
  auto lg = dev.logits(dev.forward(tokens, sg, og)).narrow(1, 0, rows);
  const double e = max_rel(lg, lc);
  check(noted > T && (position < 0 || margin < 1e-4) && e < 1e-3,
        "GPU == CPU, default config, untrained (" + std::to_string(noted) + " notes): " +
            (position < 0 ? std::string("every decision the same")
                          : "first different decision at token " + std::to_string(position) + ", layer " +
                                std::to_string(layer) + ", " + std::to_string(margin) + " from a threshold") +
            "; logits before it: rel err " + std::to_string(e));
}

// The fused causal conv + SiLU against the same arithmetic in float64 tensors, over chunks in
// a row (the carried inputs), chunks shorter than the kernel, fp32 and bf16 inputs.
void causal_conv_matches_tensors() {
  torch::NoGradGuard no_grad;
  const torch::Device gpu(torch::kCUDA);
  for (auto type : {torch::kFloat32, torch::kBFloat16}) {
    for (int64_t Kc : {2, 4}) {
      torch::manual_seed(Kc);
      const int64_t B = 2, Di = 96;
      const std::vector<int64_t> chunks = {1, 2, 300, 1, 77};
      int64_t total = 0;
      for (int64_t n : chunks) total += n;
      auto x = torch::randn({B, total, 2 * Di}).narrow(2, 0, Di);  // a strided view, as the mixer's
      auto weight = torch::randn({Di, Kc}), bias = torch::randn({Di});
      // Reference over the whole sequence at once, in float64, on the rounded inputs.
      auto xr = x.to(type).to(torch::kFloat64);
      auto padded = torch::cat({torch::zeros({B, Kc - 1, Di}, torch::kFloat64), xr}, 1);
      auto conv = bias.to(torch::kFloat64).expand({B, total, Di}).clone();
      for (int64_t k = 0; k < Kc; ++k) conv += padded.narrow(1, k, total) * weight.select(1, k).to(torch::kFloat64);
      auto want = conv * torch::sigmoid(conv);
      auto xg = torch::randn({B, total, 2 * Di}).to(gpu, type);
      xg.narrow(2, 0, Di).copy_(x.to(type));
      auto xv = xg.narrow(2, 0, Di);
      auto carried = torch::zeros({B, Kc - 1, Di}, torch::TensorOptions().dtype(type).device(gpu));
      std::vector<torch::Tensor> outs;
      int64_t t0 = 0;
      for (int64_t n : chunks) {
        auto [u, next] = cuda_scan::causal_conv_silu(xv.narrow(1, t0, n), carried, weight.to(gpu), bias.to(gpu));
        outs.push_back(u.cpu().to(torch::kFloat64));
        carried = next;
        t0 += n;
      }
      const double err = (torch::cat(outs, 1) - want).abs().max().item<double>();
      check(err < 1e-4 && outs[0].size(1) == 1,
            std::string("causal conv + SiLU kernel == float64 tensors, ") + (type == torch::kFloat32 ? "fp32" : "bf16") +
                " inputs, Kc=" + std::to_string(Kc) + ", chunks of 1..300 carried: max err " + std::to_string(err));
    }
  }
}

// The one-pass RMSNorm against float64 tensors: widths of the model and odd ones, fp32 and bf16.
void rms_norm_kernel_matches_tensors() {
  torch::NoGradGuard no_grad;
  const torch::Device gpu(torch::kCUDA);
  for (auto type : {torch::kFloat32, torch::kBFloat16}) {
    for (int64_t width : {256, 64, 17, 1000}) {
      torch::manual_seed(width);
      auto x = torch::randn({3, 41, width}).to(type);
      auto weight = torch::randn({width});
      auto xr = x.to(torch::kFloat64);
      auto want = xr * torch::rsqrt(xr.pow(2).mean(-1, true) + 1e-5) * weight.to(torch::kFloat64);
      auto got = cuda_scan::rms_norm(x.to(gpu), weight.to(gpu), 1e-5);
      const double err = (got.cpu().to(torch::kFloat64) - want).abs().max().item<double>();
      check(err < 1e-4 && got.scalar_type() == torch::kFloat32,
            std::string("RMSNorm kernel == float64 tensors, ") + (type == torch::kFloat32 ? "fp32" : "bf16") +
                " rows of " + std::to_string(width) + ": max err " + std::to_string(err));
    }
  }
}

// The training forms of RMSNorm and the conv + SiLU (autograd functions with backward
// kernels): outputs and every gradient against float64 autograd on the same rounded inputs.
void trainable_norm_and_conv_match_autograd() {
  const torch::Device gpu(torch::kCUDA);
  for (auto type : {torch::kFloat32, torch::kBFloat16}) {
    const std::string kind = type == torch::kFloat32 ? "fp32" : "bf16";
    const double tol = type == torch::kFloat32 ? 1e-4 : 1e-2;  // bf16 inputs get bf16 gradients
    for (int64_t width : {256, 17}) {
      torch::manual_seed(width + 1);
      auto x = torch::randn({3, 41, width}).to(type), weight = torch::randn({width}), g = torch::randn({3, 41, width});
      auto xg = x.to(gpu).requires_grad_(true), wg = weight.to(gpu).requires_grad_(true);
      auto out = cuda_scan::rms_norm_trainable(xg, wg, 1e-5);
      (out * g.to(gpu)).sum().backward();
      auto xr = x.to(torch::kFloat64).requires_grad_(true), wr = weight.to(torch::kFloat64).requires_grad_(true);
      auto want = xr * torch::rsqrt(xr.pow(2).mean(-1, true) + 1e-5) * wr;
      (want * g.to(torch::kFloat64)).sum().backward();
      const double e = std::max({max_rel(out, want), max_rel(xg.grad(), xr.grad()), max_rel(wg.grad(), wr.grad())});
      check(e < tol, "trainable RMSNorm, " + kind + " rows of " + std::to_string(width) +
                         ": output, dx, dweight vs float64 autograd, max rel err " + std::to_string(e));
    }
    for (int64_t Kc : {2, 4}) {
      torch::manual_seed(Kc + 11);
      const int64_t B = 2, T = 150, Di = 96;
      auto x = torch::randn({B, T, 2 * Di}).to(type), carried = torch::randn({B, Kc - 1, Di}).to(type);
      auto weight = torch::randn({Di, Kc}), bias = torch::randn({Di}), g = torch::randn({B, T, Di});
      auto xg = x.to(gpu).requires_grad_(true), cg = carried.to(gpu).requires_grad_(true);
      auto wg = weight.to(gpu).requires_grad_(true), bg = bias.to(gpu).requires_grad_(true);
      auto u = cuda_scan::causal_conv_silu_trainable(xg.narrow(2, 0, Di), cg, wg, bg);  // strided, as the mixer's
      (u * g.to(gpu)).sum().backward();
      auto xr = x.to(torch::kFloat64).requires_grad_(true), cr = carried.to(torch::kFloat64).requires_grad_(true);
      auto wr = weight.to(torch::kFloat64).requires_grad_(true), br = bias.to(torch::kFloat64).requires_grad_(true);
      auto padded = torch::cat({cr, xr.narrow(2, 0, Di)}, 1);
      auto conv = br + padded.narrow(1, 0, T) * wr.select(1, 0);
      for (int64_t k = 1; k < Kc; ++k) conv = conv + padded.narrow(1, k, T) * wr.select(1, k);
      auto want = conv * torch::sigmoid(conv);
      (want * g.to(torch::kFloat64)).sum().backward();
      const double e = std::max({max_rel(u, want), max_rel(xg.grad(), xr.grad()), max_rel(cg.grad(), cr.grad()),
                                 max_rel(wg.grad(), wr.grad()), max_rel(bg.grad(), br.grad())});
      check(e < tol, "trainable causal conv + SiLU, " + kind + ", Kc=" + std::to_string(Kc) +
                         ": output, dx, dcarried, dweight, dbias vs float64 autograd, max rel err " + std::to_string(e));
    }
  }
}

// A training step's gradients on the GPU (the pool walked there, the batch's banks as one,
// the norm and conv kernels' backward) equal the CPU's, two rows of a batch.
void training_gradients_gpu_match_cpu() {
  const torch::Device gpu(torch::kCUDA);
  for (FusionKind fusion : {FusionKind::Weighted, FusionKind::Gated}) {
    const ModelConfig config = model_case(ImportanceRule::Novelty, PoolPolicy::Priority, fusion);
    MemMambaModel cpu = MemMambaModel::random(config, 5), dev = MemMambaModel::random(config, 5);
    dev.to(gpu);
    cpu.mutable_weights().set_requires_grad(true);
    dev.mutable_weights().set_requires_grad(true);
    torch::manual_seed(9);
    auto batch = torch::randint(0, config.vocab_size, {2, 301}, torch::kInt64);
    sequence_loss(cpu, batch).total.backward();
    sequence_loss(dev, batch.to(gpu)).total.backward();
    double worst = 0;
    std::string where;
    for (const auto& [name, t] : cpu.weights().all()) {
      const torch::Tensor& other = dev.weights().all().at(name);
      if (!t.grad().defined() || !other.grad().defined()) continue;
      const double e = max_rel(other.grad(), t.grad());
      if (e > worst) { worst = e; where = name; }
    }
    check(worst < 1e-3, std::string("training gradients GPU == CPU, batch of 2, ") +
                            (fusion == FusionKind::Weighted ? "weighted" : "gated") + " fusion: max rel err " +
                            std::to_string(worst) + " (" + where + ")");
  }
}

void traces_agree() {
  torch::NoGradGuard no_grad;
  ModelConfig c;  // default: novelty, priority, K=50
  c.vocab_size = 512;
  MemMambaModel cpu = MemMambaModel::random(c, 5);
  MemMambaModel dev = MemMambaModel::random(c, 5);
  dev.to(torch::Device(torch::kCUDA));
  std::vector<int32_t> tokens(2500);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919 + i / 13) % 512);
  auto run = [&](const MemMambaModel& m) {
    TraceRunRequest req;
    req.tokens = tokens;
    req.options = m.default_options();
    req.options.chunk_tokens = 1000;
    return trace_tokens(m, std::move(req));
  };
  Trace a = run(cpu), b = run(dev);
  int64_t flag_mismatch = 0, noted = 0;
  for (size_t l = 0; l < a.layers.size(); ++l)
    for (size_t t = 0; t < tokens.size(); ++t) {
      flag_mismatch += a.layers[l].flags[t] != b.layers[l].flags[t];
      noted += (a.layers[l].flags[t] & 1) != 0;
    }
  check(flag_mismatch == 0 && noted > 0, "GPU trace flags == CPU trace flags (" + std::to_string(noted) +
                                             " notes, " + std::to_string(flag_mismatch) + " mismatches)");
  check(a.events.size() == b.events.size() && a.notes.size() == b.notes.size(),
        "GPU trace events/notes == CPU (" + std::to_string(a.events.size()) + " vs " + std::to_string(b.events.size()) +
            " events)");
  bool same_pool = true;
  for (int32_t l = 0; l < c.n_layers; ++l)
    for (int64_t pos : {100, 1200, 2499}) same_pool = same_pool && a.pool_at(l, pos) == b.pool_at(l, pos);
  check(same_pool, "GPU trace pool replay == CPU at positions 100, 1200, 2499");
  // The signals the GPU's reports bring to the host on the trace's thread: norms, decay,
  // attention rows, losses.
  double signal_diff = 0, loss_diff = 0;
  size_t rows_a = 0, rows_b = 0;
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerTrace &la = a.layers[l], &lb = b.layers[l];
    auto relative = [](double x, double y) { return std::abs(x - y) / std::max(1.0, std::abs(x)); };
    for (size_t t = 0; t < tokens.size(); ++t)
      signal_diff = std::max({signal_diff, relative(la.fusion_token_norm[t], lb.fusion_token_norm[t]),
                              relative(la.fusion_layer_norm[t], lb.fusion_layer_norm[t]),
                              relative(la.log_decay[t], lb.log_decay[t])});
    rows_a += la.token_attention.token.size() + la.layer_attention.token.size();
    rows_b += lb.token_attention.token.size() + lb.layer_attention.token.size();
  }
  for (size_t t = 0; t + 1 < tokens.size(); ++t) loss_diff = std::max(loss_diff, std::abs(double(a.loss[t]) - b.loss[t]));
  check(signal_diff < 1e-3 && loss_diff < 1e-3 && rows_a == rows_b && rows_a > 0,
        "GPU trace signals == CPU (max relative |d| of norms and decay " + std::to_string(signal_diff) + ", of losses " +
            std::to_string(loss_diff) + "; attention rows " + std::to_string(rows_a) + " vs " + std::to_string(rows_b) + ")");
}

// The GPU running out of memory: a run that does not fit retries in smaller chunks, and
// when even the smallest chunk does not fit it runs on the CPU; the trace is the same.
void out_of_memory_falls_back() {
  torch::NoGradGuard no_grad;
  ModelConfig c;
  c.vocab_size = 512;
  MemMambaModel dev = MemMambaModel::random(c, 6);
  dev.to(torch::Device(torch::kCUDA));
  std::vector<int32_t> tokens(40000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919 + i / 13) % 512);
  auto run = [&](int64_t chunk) {
    TraceRunRequest req;
    req.tokens = tokens;
    req.options = dev.default_options();
    req.options.chunk_tokens = chunk;
    req.trace_options.record_attention = false;
    return trace_tokens(dev, std::move(req));
  };
  auto peak_of = [&](int64_t chunk) {
    cuda_memory::release_cached();
    cuda_memory::reset_peak();
    Trace t = run(chunk);
    return std::make_pair(std::move(t), cuda_memory::peak_allocated_bytes());
  };
  auto [reference, peak_big] = peak_of(40000);
  auto [small, peak_small] = peak_of(2048);
  std::printf("peak GPU memory: chunk 40000 %.1f MB, chunk 2048 %.1f MB\n", peak_big / 1048576.0, peak_small / 1048576.0);
  auto same = [&](const Trace& t) {
    bool ok = t.events.size() == reference.events.size() && t.notes.size() == reference.notes.size();
    for (size_t l = 0; ok && l < t.layers.size(); ++l) ok = t.layers[l].flags == reference.layers[l].flags;
    return ok;
  };
  // A limit between the two peaks: the 40000-token chunk cannot fit, smaller ones can.
  cuda_memory::release_cached();
  cuda_memory::set_limit_bytes((peak_big + peak_small) / 2);
  Trace chunked = run(40000);
  check(same(chunked) && chunked.run_info.at("device").as_string().rfind("cuda", 0) == 0,
        "out of GPU memory: retried in smaller chunks on the GPU, same trace (" + std::to_string(chunked.events.size()) +
            " events)");
  // A limit below the weights themselves: nothing fits, the run goes to the CPU.
  cuda_memory::release_cached();
  cuda_memory::set_limit_bytes(peak_small / 50);
  Trace on_cpu = run(40000);
  cuda_memory::set_limit_bytes(0);
  check(same(on_cpu) && on_cpu.run_info.at("device").as_string() == "cpu",
        "out of GPU memory at every chunk: ran on the CPU, same trace (device " +
            on_cpu.run_info.at("device").as_string() + ")");
}

// The trainer's attention taps: for every layer, sequence and kind, the weight each applied
// row puts on each source position is the same on the GPU (device bookkeeping) and the CPU.
void attention_taps_agree() {
  torch::NoGradGuard no_grad;
  ModelConfig c;  // default: K = 50, S = 64, w = 1
  c.tau_note = 0.5;
  const int64_t T = 700;
  MemMambaModel cpu = MemMambaModel::random(c, 5);
  MemMambaModel dev = MemMambaModel::random(c, 5);
  dev.to(torch::Device(torch::kCUDA));
  auto tokens = torch::randint(0, c.vocab_size, {2, T}, torch::kInt64);
  auto dense_maps = [&](const MemMambaModel& m) {
    std::map<std::tuple<int64_t, bool, int64_t>, torch::Tensor> maps;  // (layer, cross, seq) -> [T, T]
    RunOptions o = m.default_options();
    o.chunk_tokens = T;
    o.on_attention = [&](const AttentionTap& tap) {
      auto w = tap.weights.to(torch::kCPU, torch::kFloat64), src = tap.source.to(torch::kCPU);
      auto rows = tap.rows.to(torch::kCPU), applied = tap.applied.to(torch::kCPU);
      check(tap.sequences == 2 && tap.tokens == T, "an attention tap covers the whole batch");
      auto dense = torch::zeros({2, T, T}, torch::kFloat64);  // [sequence, row, source]
      auto d = dense.accessor<double, 3>();
      auto wa = w.accessor<double, 2>();
      auto sa = src.accessor<int64_t, 2>();
      auto ra = rows.accessor<int64_t, 1>();
      auto aa = applied.accessor<bool, 1>();
      for (int64_t i = 0; i < rows.size(0); ++i) {
        if (!aa[i]) continue;
        for (int64_t j = 0; j < src.size(1); ++j)
          if (sa[i][j] >= 0) d[ra[i] / T][ra[i] % T][sa[i][j]] += wa[i][j];
      }
      for (int64_t b = 0; b < 2; ++b) maps[{tap.layer, tap.cross_layer, b}] = dense[b];
    };
    RunState st = m.new_state(2);
    m.forward(m.device().is_cuda() ? tokens.to(m.device()) : tokens, st, o);
    return maps;
  };
  const auto a = dense_maps(cpu), b = dense_maps(dev);
  double worst = 0, mass = 0;
  bool same_keys = a.size() == b.size() && !a.empty();
  for (const auto& [key, ta] : a) {
    auto it = b.find(key);
    if (it == b.end()) { same_keys = false; continue; }
    worst = std::max(worst, (ta - it->second).abs().max().item<double>());
    mass += ta.sum().item<double>();
  }
  check(same_keys && worst < 1e-3 && mass > 100, "GPU attention taps == CPU (" + std::to_string(a.size()) +
                                                     " attentions, mass " + std::to_string(mass) +
                                                     ", max diff " + std::to_string(worst) + ")");
}

// DeciMamba on the GPU: the same kept tokens in every layer and the same logits (where the
// step-size norms are not within float noise of each other at the cut) as on the CPU, and a
// decimated prompt continues in step mode.
void decimation_gpu_matches_cpu() {
  const torch::Device gpu(torch::kCUDA);
  ModelConfig c = testing::tiny_config();
  c.memory = false;
  MemMambaModel cpu = MemMambaModel::random(c, 13);
  MemMambaModel dev = MemMambaModel::random(c, 13);
  dev.to(gpu);
  std::vector<int32_t> tokens;
  for (int64_t t = 0; t < 2000; ++t) tokens.push_back(static_cast<int32_t>((t * 31 + t / 9) % c.vocab_size));
  auto run = [&](const MemMambaModel& m) {
    TraceRunRequest req;
    req.tokens = tokens;
    req.options = m.default_options();
    req.options.decimation.layers = {1, 2};
    req.options.decimation.base_length = 300;
    return trace_tokens(m, std::move(req));
  };
  const Trace tc = run(cpu), tg = run(dev);
  int64_t differing = 0, kept = 0;
  for (size_t l = 0; l < tc.layers.size(); ++l)
    for (int64_t p = 0; p < tc.length(); ++p) {
      const bool a = tc.layers[l].flags[p] & kDecimated, b = tg.layers[l].flags[p] & kDecimated;
      differing += a != b;
      kept += !a;
    }
  check(differing == 0, "decimation: GPU keeps the CPU's tokens (" + std::to_string(differing) + " differ of " +
                            std::to_string(kept) + " kept)");
  double worst = 0;
  for (int64_t p = 0; p + 1 < tc.length(); ++p)
    if (std::isfinite(tc.loss[p]) && std::isfinite(tg.loss[p])) worst = std::max(worst, std::abs(double(tc.loss[p]) - tg.loss[p]));
  check(worst < 1e-3, "decimation: GPU == CPU per-token loss, max diff " + std::to_string(worst));
  RunOptions g = dev.default_options();
  g.decimation.layers = {1};
  g.decimation.base_length = 100;
  const auto out_gpu = generate_greedy(dev, std::vector<int64_t>(tokens.begin(), tokens.begin() + 500), 6, g);
  RunOptions gc = cpu.default_options();
  gc.decimation = g.decimation;
  const auto out_cpu = generate_greedy(cpu, std::vector<int64_t>(tokens.begin(), tokens.begin() + 500), 6, gc);
  check(out_gpu == out_cpu, "decimation: a decimated prompt continues in step mode, GPU == CPU");
}

// A decimated run in chunks equals one over the whole context on the GPU: the same kept
// tokens, outputs and final state (the layers before the first decimating one run chunk by
// chunk; that layer, on the GPU, over the whole context).
void decimation_in_chunks_matches_one_pass_on_gpu() {
  torch::NoGradGuard no_grad;
  const torch::Device gpu(torch::kCUDA);
  ModelConfig c = testing::tiny_config();
  c.memory = false;
  MemMambaModel dev = MemMambaModel::random(c, 8);
  dev.to(gpu);
  std::vector<int64_t> ids;
  for (int64_t t = 0; t < 700; ++t) ids.push_back((t * 13 + t / 7) % c.vocab_size);
  const auto input = torch::tensor(ids, torch::kInt64).view({1, 700}).to(gpu);
  for (const std::vector<int64_t>& layers : {std::vector<int64_t>{1, 2}, std::vector<int64_t>{0}, std::vector<int64_t>{2}}) {
    auto run = [&](int64_t chunk) {
      RunOptions o = dev.default_options();
      o.decimation.layers = layers;
      o.decimation.base_length = 60;  // many 32-token chunks keep none
      o.decimation.min_length = 10;
      o.decimation.protected_tail = 5;
      o.chunk_tokens = chunk;
      RunState s = dev.new_state(1);
      auto h = dev.forward(input, s, o);
      return std::pair{h.to(torch::kCPU), s.mixers[3].ssm.to(torch::kCPU)};
    };
    const auto [h_whole, state_whole] = run(1 << 20);
    const auto [h_chunked, state_chunked] = run(32);
    const auto finite = torch::isfinite(h_whole);
    const bool same_kept = torch::equal(finite, torch::isfinite(h_chunked));
    const double worst = same_kept ? (h_whole.masked_select(finite) - h_chunked.masked_select(finite)).abs().max().item<double>() : 1e9;
    const double state_diff = (state_whole - state_chunked).abs().max().item<double>();
    check(same_kept && worst < 1e-3 && state_diff < 1e-3,
          "decimation: in chunks == the whole context on the GPU (layers " + std::to_string(layers[0]) + "..., max diff " +
              std::to_string(worst) + ", state " + std::to_string(state_diff) + ")");
  }
}

}  // namespace

int main() {
  return cuda_testing::run_on_gpu([] {
    scan_forward_matches_reference();
    scan_backward_matches_autograd();
    event_walk_matches_sequential_walk();
    slot_attention_kernel_matches_tensors();
    causal_conv_matches_tensors();
    rms_norm_kernel_matches_tensors();
    trainable_norm_and_conv_match_autograd();
    training_gradients_gpu_match_cpu();
    model_gpu_matches_cpu_and_step();
    dense_gpu_matches_cpu_up_to_a_tie();
    traces_agree();
    attention_taps_agree();
    out_of_memory_falls_back();
    decimation_gpu_matches_cpu();
    decimation_in_chunks_matches_one_pass_on_gpu();
  });
}
