#include "model/runner.h"
#include "model/selective_scan.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <algorithm>
#include <cmath>
#include <fstream>

#include "model/cuda/note_pool_op.h"
#include "model/cuda/scan_dispatch.h"
#include "model/log.h"
#include "model/profile.h"
#include "model/queued_observer.h"
#include "model/trace_builder.h"
#include "model/runtime.h"

namespace memmamba {

namespace {
// Adds -log p(next token) for each row of a hidden chunk [n, D] starting at pos0.
void chunk_losses(const MemMambaModel& model, const torch::Tensor& hidden, int64_t pos0,
                  const std::vector<int32_t>& tokens, std::vector<float>& out) {
  torch::NoGradGuard no_grad;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t valid = std::min(hidden.size(0), T - 1 - pos0);  // rows that have a next token
  if (valid <= 0) return;
  // The next tokens go over once and the losses come back once: one wait for the GPU a chunk.
  std::vector<int64_t> next(static_cast<size_t>(valid));
  for (int64_t i = 0; i < valid; ++i) next[i] = tokens[pos0 + i + 1];
  const auto next_tokens = torch::tensor(next, torch::kInt64).to(hidden.device());
  std::vector<torch::Tensor> picked;
  for (int64_t r0 = 0; r0 < valid; r0 += 1024) {  // blocks bound the [rows, vocab] log-probabilities
    const int64_t rn = std::min<int64_t>(1024, valid - r0);
    auto logp = torch::log_softmax(model.logits(hidden.narrow(0, r0, rn)).to(torch::kFloat32), -1);
    picked.push_back(logp.gather(1, next_tokens.narrow(0, r0, rn).unsqueeze(1)).squeeze(1).neg());
  }
  auto cpu = torch::cat(picked, 0).to(torch::kCPU).contiguous();
  std::copy(cpu.data_ptr<float>(), cpu.data_ptr<float>() + valid, out.begin() + pos0);
}
}  // namespace

uint64_t estimate_trace_bytes(const ModelConfig& c, int64_t tokens, const TraceOptions& o) {
  const uint64_t T = static_cast<uint64_t>(std::max<int64_t>(tokens, 0));
  const uint64_t L = static_cast<uint64_t>(c.n_layers);
  uint64_t bytes = T * (4 + 8 + 8 + 4 + 1) + T * L * (5 * 4 + 1);  // tokens, offsets, loss, text; layer signals
  if (!c.memory) return bytes;
  // Notes and pool events, as if every window made a note that evicted another one.
  const uint64_t windows = (T + c.note_window - 1) / c.note_window;
  bytes += windows * L * (sizeof(NoteInfo) + 8 * c.note_window + 2 * sizeof(PoolEvent));
  if (!o.record_attention) return bytes;
  const uint64_t begin = static_cast<uint64_t>(std::clamp<int64_t>(o.detail_begin, 0, tokens));
  const uint64_t end = static_cast<uint64_t>(std::clamp<int64_t>(o.detail_end, 0, tokens));
  const uint64_t rows = end > begin ? end - begin : 0;
  const uint64_t entry = 4 + 4 + 8 + 4;  // slot, layer, note, weight
  const uint64_t token_width = static_cast<uint64_t>(attention_row_width(c, o.attention_topk, false));
  const uint64_t layer_width = static_cast<uint64_t>(attention_row_width(c, o.attention_topk, true));
  uint64_t cross_layers = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) cross_layers += c.has_cross_layer(l);
  bytes += rows * L * (16 + token_width * entry) + rows * cross_layers * (16 + layer_width * entry);
  return bytes;
}

std::string fit_trace_to_budget(const ModelConfig& c, int64_t tokens, uint64_t budget, TraceOptions& o) {
  if (estimate_trace_bytes(c, tokens, o) <= budget) return {};
  const int32_t asked_topk = o.attention_topk;
  while (o.attention_topk > 2 && estimate_trace_bytes(c, tokens, o) > budget) o.attention_topk /= 2;
  std::string what;
  if (o.attention_topk != asked_topk)
    what = "keeping the top " + std::to_string(o.attention_topk) + " slots per attention row (asked " +
           std::to_string(asked_topk) + ")";
  if (estimate_trace_bytes(c, tokens, o) > budget) {
    // Keep rows only for the last tokens: the ones a question or an answer sits among.
    const int64_t end = std::min<int64_t>(o.detail_end, tokens);
    int64_t lo = 0, hi = end - std::max<int64_t>(o.detail_begin, 0);
    while (lo < hi) {  // the longest range that fits
      const int64_t mid = (lo + hi + 1) / 2;
      TraceOptions t = o;
      t.detail_begin = end - mid;
      if (estimate_trace_bytes(c, tokens, t) <= budget) lo = mid; else hi = mid - 1;
    }
    o.detail_begin = end - lo;
    o.detail_end = end;
    what += std::string(what.empty() ? "" : ", and ") + "attention rows only for tokens " + std::to_string(o.detail_begin) +
            ".." + std::to_string(end);
  }
  std::string message = "the full trace would not fit the " + std::to_string(budget >> 20) + " MiB trace budget: " + what;
  if (estimate_trace_bytes(c, tokens, o) > budget)
    message += " (per-token signals, notes and pool events are always kept and alone may exceed the budget)";
  return message;
}

namespace {

bool is_device_out_of_memory(const c10::Error& e) {
  return std::string(e.what()).find("out of memory") != std::string::npos;
}

// Runs `attempt(model, chunk_tokens)`; when the GPU runs out of memory, frees Torch's cache
// and retries with half the chunk (down to kMinChunk), then on a CPU copy of the model, with
// a warning each time. CPU runs and other errors pass through.
Trace trace_tokens_once(const MemMambaModel& model, TraceRunRequest request);
std::vector<float> token_losses_once(const MemMambaModel& model, const std::vector<int32_t>& tokens,
                                     const RunOptions& options_in);

template <typename Result, typename Attempt>
Result with_memory_fallback(const MemMambaModel& model, int64_t chunk_tokens, Attempt&& attempt) {
  constexpr int64_t kMinChunk = 512;
  int64_t chunk = chunk_tokens;
  while (true) {
    try {
      return attempt(model, chunk);
    } catch (const c10::Error& e) {
      if (!model.device().is_cuda() || !is_device_out_of_memory(e)) throw;
    }
    cuda_memory::release_cached();
    if (chunk > kMinChunk) {
      chunk = std::max<int64_t>(kMinChunk, chunk / 2);
      log::warn("the GPU ran out of memory: running again in chunks of " + std::to_string(chunk) + " tokens");
      continue;
    }
    log::warn("the GPU ran out of memory even in chunks of " + std::to_string(chunk) +
              " tokens: running on the CPU instead (slower)");
    MemMambaModel on_cpu(model.config(), model.weights());
    on_cpu.to(torch::kCPU);
    return attempt(on_cpu, chunk_tokens);
  }
}

}  // namespace

Trace trace_tokens(const MemMambaModel& model, TraceRunRequest request) {
  const int64_t chunk = request.options.chunk_tokens;
  return with_memory_fallback<Trace>(model, chunk, [&](const MemMambaModel& m, int64_t chunk_tokens) {
    TraceRunRequest attempt = request;  // the first try may have consumed nothing: keep the original
    attempt.options.chunk_tokens = chunk_tokens;
    return trace_tokens_once(m, std::move(attempt));
  });
}

namespace {
Trace trace_tokens_once(const MemMambaModel& model, TraceRunRequest request) {
  torch::NoGradGuard no_grad;
  const int64_t T = static_cast<int64_t>(request.tokens.size());
  if (T == 0) throw std::invalid_argument("nothing to run: the text has no tokens");
  TraceBuilder builder(model.config(), request.trace_options);
  builder.expect_tokens(T);
  std::vector<float> loss(static_cast<size_t>(T), std::nanf(""));
  RunOptions options = request.options;
  // The trace is built on a thread of its own while the model runs on.
  QueuedObserver queued(builder);
  options.observer = &queued;
  options.keep_hidden = false;
  options.on_hidden = [&](int64_t pos0, const torch::Tensor& h) { chunk_losses(model, h[0], pos0, request.tokens, loss); };
  RunState state = model.new_state(1);
  std::vector<int64_t> ids(request.tokens.begin(), request.tokens.end());
  model.forward(torch::tensor(ids, torch::kInt64).view({1, T}), state, options);
  queued.drain();

  builder.losses(0, loss);
  Trace& t = builder.trace();
  t.tokens = std::move(request.tokens);
  t.text = std::move(request.text);
  t.char_begin = request.char_begin.size() == static_cast<size_t>(T) ? std::move(request.char_begin)
                                                                     : std::vector<int64_t>(T, -1);
  t.char_end = request.char_end.size() == static_cast<size_t>(T) ? std::move(request.char_end)
                                                                 : std::vector<int64_t>(T, -1);
  Json info = request.run_info.is_object() ? request.run_info : Json::object();
  const Json settings = options.memory.to_json(model.config().memory);
  for (const auto& [key, value] : settings.as_object()) info[key] = value;
  if (options.decimation.enabled()) info["decimation"] = options.decimation.to_json();
  info["device"] = model.device().str();
  if (options.cpu_bf16_projections) info["precision"] = "bf16 matrix products";
  t.run_info = info;
  return builder.finish();
}
}  // namespace

std::vector<float> token_losses(const MemMambaModel& model, const std::vector<int32_t>& tokens,
                                const RunOptions& options) {
  return with_memory_fallback<std::vector<float>>(model, options.chunk_tokens, [&](const MemMambaModel& m, int64_t chunk) {
    RunOptions attempt = options;
    attempt.chunk_tokens = chunk;
    return token_losses_once(m, tokens, attempt);
  });
}

namespace {
std::vector<float> token_losses_once(const MemMambaModel& model, const std::vector<int32_t>& tokens,
                                     const RunOptions& options_in) {
  torch::NoGradGuard no_grad;
  const int64_t T = static_cast<int64_t>(tokens.size());
  std::vector<float> loss(static_cast<size_t>(T), std::nanf(""));
  RunOptions options = options_in;
  options.observer = nullptr;
  options.keep_hidden = false;
  options.on_hidden = [&](int64_t pos0, const torch::Tensor& h) { chunk_losses(model, h[0], pos0, tokens, loss); };
  RunState state = model.new_state(1);
  std::vector<int64_t> ids(tokens.begin(), tokens.end());
  model.forward(torch::tensor(ids, torch::kInt64).view({1, T}), state, options);
  return loss;
}
}  // namespace

double current_peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";  // resets the peak resident set size (Linux >= 4.0)
}

std::vector<BenchRow> run_benchmark(const MemMambaModel& model, const RunOptions& base, const std::vector<int64_t>& lengths,
                                    int64_t step_tokens, bool traced, uint64_t seed,
                                    const std::function<void(const BenchRow&)>& on_row,
                                    const std::vector<int32_t>& text_tokens) {
  torch::NoGradGuard no_grad;
  std::vector<BenchRow> rows;
  auto gen = at::detail::createCPUGenerator(seed);
  auto random_tokens = [&](int64_t n) {
    if (text_tokens.empty()) return torch::randint(0, model.config().vocab_size, {1, n}, gen, torch::kInt64);
    auto out = torch::empty({1, n}, torch::kInt64);
    int64_t* o = out.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) o[i] = text_tokens[static_cast<size_t>(i) % text_tokens.size()];
    return out;
  };
  auto sync = [&] {
    if (model.device().is_cuda()) torch::cuda::synchronize();
  };
  auto time_it = [&](const std::function<void()>& fn) {
    sync();
    auto t0 = std::chrono::steady_clock::now();
    fn();
    sync();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  {  // warm-up: first calls allocate and pick kernels
    RunState st = model.new_state(1);
    RunOptions o = base;
    o.keep_hidden = false;
    model.forward(random_tokens(256), st, o);
  }
  if (model.device().is_cuda()) {
    // The selective scan alone at the peer's shape (Di = 512, N = 16, batch 1).
    const int64_t Di = 512, N = 16;
    for (auto type : {torch::kFloat32, torch::kBFloat16}) {
      for (int64_t T : lengths) {
        auto f = torch::TensorOptions().device(model.device());
        auto u = torch::randn({1, T, Di}, f).to(type);
        auto dt = torch::rand({1, T, Di}, f).mul(0.1).to(type);
        auto A = -torch::rand({Di, N}, f).add(0.5);
        auto Bm = torch::randn({1, T, N}, f).to(type), Cm = torch::randn({1, T, N}, f).to(type);
        auto D = torch::ones({Di}, f);
        auto h0 = torch::zeros({1, Di, N}, f);
        selective_scan(u, dt, A, Bm, Cm, D, h0);  // warm-up
        const int reps = T >= (1 << 20) ? 3 : 10;
        const double seconds = time_it([&] {
          for (int i = 0; i < reps; ++i) selective_scan(u, dt, A, Bm, Cm, D, h0);
        }) / reps;
        const double element = type == torch::kFloat32 ? 4 : 2;
        BenchRow row{type == torch::kFloat32 ? "scan fp32" : "scan bf16", T, seconds, T / seconds, 0};
        row.bandwidth_gbs = (3.0 * T * Di + 2.0 * T * N) * element / seconds / 1e9;
        rows.push_back(row);
        if (on_row) on_row(row);
      }
    }
  }
  const ModelConfig& config = model.config();
  if (model.device().is_cuda() && config.memory && base.memory.enabled && config.note_window == 1 &&
      cuda_ops::note_pool_available(config.pool_slots, config.summary_dim)) {
    // The note pool alone, both walks on every layer's summaries from one forward pass.
    for (int64_t T : lengths) {
      if (T > 65536) continue;  // one chunk: the forward below keeps every layer's input
      auto tokens = random_tokens(T).to(model.device());
      std::vector<torch::Tensor> inputs(static_cast<size_t>(config.n_layers));
      inputs[0] = model.weights()["embedding.weight"].index_select(0, tokens[0]).unsqueeze(0);
      RunState st = model.new_state(1);
      RunOptions o = base;
      o.keep_hidden = false;
      o.chunk_tokens = T;
      o.on_layer_output = [&](int64_t layer, int64_t, const torch::Tensor& x) {
        if (layer + 1 < config.n_layers) inputs[static_cast<size_t>(layer + 1)] = x;
      };
      model.forward(tokens, st, o);
      // The learned rule walks the pool with its importances, the novelty rule without.
      const bool learned_rule = base.memory.importance == ImportanceRule::Learned;
      std::vector<NoteInputs> note_block_in;
      for (int64_t l = 0; l < config.n_layers; ++l)
        note_block_in.push_back(model.note_block_inputs(l, inputs[static_cast<size_t>(l)], learned_rule));
      for (auto walk : {cuda_ops::PoolWalk::Sequential, cuda_ops::PoolWalk::Events}) {
        double seconds = 0;
        int64_t notes = 0;
        for (int64_t l = 0; l < config.n_layers; ++l) {
          auto decide = [&] {
            cuda_ops::DevicePool pool = cuda_ops::new_device_pool(1, config.pool_slots, config.summary_dim, model.device());
            auto position = torch::zeros({1}, tokens.options());
            const NoteInputs& in = note_block_in[static_cast<size_t>(l)];
            return cuda_ops::note_pool(in.summaries, in.learned, base.memory, pool, position, walk);
          };
          if (l == 0) decide();  // warm-up: work space from the caching allocator
          cuda_ops::DevicePoolDecisions d;
          seconds += time_it([&] { d = decide(); });
          notes += d.flags.bitwise_and(1).ne(0).sum().item<int64_t>();
        }
        BenchRow row{walk == cuda_ops::PoolWalk::Sequential ? "pool sequential" : "pool events", T,
                     seconds / static_cast<double>(config.n_layers), 0, 0};
        row.tokens_per_second = T / row.seconds;
        char detail[96];
        std::snprintf(detail, sizeof detail, "%.1f notes/layer (%.3f%% of tokens)",
                      static_cast<double>(notes) / static_cast<double>(config.n_layers),
                      100.0 * static_cast<double>(notes) / static_cast<double>(T * config.n_layers));
        row.detail = detail;
        rows.push_back(row);
        if (on_row) on_row(row);
      }
    }
  }
  for (int64_t T : lengths) {
    auto tokens = random_tokens(T);
    reset_peak_rss();
    BenchRow row{traced ? "parallel+trace" : "parallel", T, 0, 0, 0};
    auto run_once = [&] {
      if (traced) {
        TraceRunRequest req;
        req.tokens.assign(tokens.data_ptr<int64_t>(), tokens.data_ptr<int64_t>() + T);
        req.options = base;
        Trace t = trace_tokens(model, std::move(req));
      } else {
        RunState st = model.new_state(1);
        RunOptions o = base;
        o.keep_hidden = false;
        model.forward(tokens, st, o);
      }
    };
    // On a GPU the first run at a new length also pays the caching allocator's first
    // allocations, and a short chunk without memory is captured as a graph on its second run
    // (model/cuda/chunk_graph.h): the row is the third of three runs.
    if (model.device().is_cuda()) {
      run_once();
      run_once();
    }
    profile::reset();
    profile::Timeline timeline(model.device().is_cuda(), "." + std::to_string(T));  // MEMMAMBA_TIMELINE=PATH
    timeline.start();
    row.seconds = time_it(run_once);
    timeline.finish();
    row.tokens_per_second = T / row.seconds;
    row.peak_rss_mb = current_peak_rss_mb();
    if (profile::enabled()) row.profile = profile::report(row.seconds);
    rows.push_back(row);
    if (on_row) on_row(row);
  }
  if (step_tokens > 0) {
    auto tokens = random_tokens(step_tokens);
    RunState st = model.new_state(1);
    RunOptions o = base;
    reset_peak_rss();
    BenchRow row{"step", step_tokens, 0, 0, 0};
    profile::reset();
    row.seconds = time_it([&] {
      for (int64_t i = 0; i < step_tokens; ++i) model.step(tokens[0].narrow(0, i, 1), st, o);
    });
    row.tokens_per_second = step_tokens / row.seconds;
    row.peak_rss_mb = current_peak_rss_mb();
    if (profile::enabled()) row.profile = profile::report(row.seconds);
    rows.push_back(row);
    if (on_row) on_row(row);
  }
  return rows;
}

}  // namespace memmamba
