// GPU tests (CTest label "cuda"): the CUDA scan against the reference recurrence, its
// gradients against autograd, and the whole model on the GPU against the CPU and
// against its own step mode. A plain program (the GPU machine has no Qt); without a
// GPU it says so and exits 77, which CTest reports as skipped.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <tuple>
#include <string>
#include <vector>

#include "model/cuda/scan_dispatch.h"
#include "model/memmamba.h"
#include "model/runner.h"
#include "model/selective_scan.h"
#include "model/trace.h"
#include "tests/test_helpers.h"

using namespace memmamba;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

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

ModelConfig model_case(ImportanceRule rule, PoolPolicy policy, FusionKind fusion) {
  ModelConfig c = testing::tiny_config();
  c.importance = rule;
  c.pool_policy = policy;
  c.fusion = fusion;
  return c;
}

void model_gpu_matches_cpu_and_step() {
  const torch::Device gpu(torch::kCUDA);
  torch::NoGradGuard no_grad;
  struct Case { ModelConfig config; int64_t T, chunk; const char* name; };
  std::vector<Case> cases = {
      {model_case(ImportanceRule::Novelty, PoolPolicy::Priority, FusionKind::Weighted), 300, 128, "novelty/priority/weighted"},
      {model_case(ImportanceRule::Novelty, PoolPolicy::Fifo, FusionKind::Gated), 300, 4096, "novelty/fifo/gated"},
      {model_case(ImportanceRule::Learned, PoolPolicy::Priority, FusionKind::Residual), 300, 77, "learned/priority/residual"},
      {model_case(ImportanceRule::Learned, PoolPolicy::Fifo, FusionKind::Weighted), 300, 4096, "learned/fifo/weighted"},
  };
  ModelConfig big;  // the default small config
  cases.push_back({big, 3000, 1024, "default config (K=50, S=64)"});
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
    auto lc = cpu.logits(cpu.forward(tokens, sc, oc));
    auto lg = dev.logits(dev.forward(tokens, sg, og));
    const double e = max_rel(lg, lc);
    check(e < 1e-3, std::string("GPU == CPU logits, ") + c.name + ": rel err " + std::to_string(e));

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
      auto dense = torch::zeros({T, T}, torch::kFloat64);
      auto d = dense.accessor<double, 2>();
      auto wa = w.accessor<double, 2>();
      auto sa = src.accessor<int64_t, 2>();
      auto ra = rows.accessor<int64_t, 1>();
      auto aa = applied.accessor<bool, 1>();
      for (int64_t i = 0; i < rows.size(0); ++i) {
        if (!aa[i]) continue;
        for (int64_t j = 0; j < src.size(1); ++j)
          if (sa[i][j] >= 0) d[ra[i]][sa[i][j]] += wa[i][j];
      }
      maps[{tap.layer, tap.cross_layer, tap.sequence}] = dense;
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

}  // namespace

int main() {
  if (!torch::cuda::is_available()) {
    std::printf("SKIPPED: no CUDA device (or this LibTorch has no CUDA); the CUDA tests run on the GPU machine\n");
    return 77;
  }
  configure_cpu_runtime();
  scan_forward_matches_reference();
  scan_backward_matches_autograd();
  model_gpu_matches_cpu_and_step();
  traces_agree();
  attention_taps_agree();
  out_of_memory_falls_back();
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
