#include "model/memmamba.h"

#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <optional>
#include <stdexcept>

#include "model/cuda/fused_step.h"
#include "model/cuda/step_graph.h"
#include "model/cuda/stream_mark.h"
#include "model/memory/memory_layer.h"
#include "model/profile.h"
#include "model/retention_cpu.h"
#include "model/trace.h"
#include "model/run_observer.h"

namespace memmamba {

namespace {
std::vector<float> to_floats(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// Hands the observer a layer's per-token signals for tokens [pos0, pos0 + n): the log decay
// [n] comes to the host in the report, after the memory's reports have filled `signals`.
void report_layer_tokens(RunObserver& observer, int64_t layer, int64_t pos0, int64_t n,
                         std::shared_ptr<const LayerSignals> signals, const torch::Tensor& log_decay) {
  observer.later([layer, pos0, n, signals = std::move(signals), log_decay,
                  mark = cuda_ops::mark_stream(log_decay.device())](RunObserver& o) {
    std::vector<float> decay;
    cuda_ops::run_after_mark(mark, [&] { decay = to_floats(log_decay); });
    o.layer_tokens(static_cast<int32_t>(layer), pos0, n, signals->importance.data(), signals->istate.data(),
                   signals->flags.data(), signals->token_norm.data(), signals->layer_norm.data(), decay.data());
  });
}
}  // namespace

MemMambaModel::MemMambaModel(ModelConfig config, Weights weights) : config_(std::move(config)), weights_(std::move(weights)) {
  config_.validate();
  for (const ParamSpec& spec : parameter_specs(config_)) {
    if (!weights_.has(spec.name)) throw std::invalid_argument("weights lack \"" + spec.name + "\"");
    if (weights_[spec.name].sizes() != torch::IntArrayRef(spec.shape))
      throw std::invalid_argument("weight \"" + spec.name + "\" has the wrong shape");
  }
}

MemMambaModel MemMambaModel::random(const ModelConfig& config, uint64_t seed) {
  return MemMambaModel(config, Weights::random(config, seed));
}

NoteInputs MemMambaModel::note_block_inputs(int64_t layer, const torch::Tensor& x, bool learned_rule) const {
  if (!config_.memory) throw std::invalid_argument("a Mamba-only model has no Note Block");
  if (layer < 0 || layer >= config_.n_layers) throw std::invalid_argument("layer out of range");
  return note_inputs(config_, weights_, layer, memory_inputs(config_, weights_, layer, x, nullptr), learned_rule);
}

torch::Device MemMambaModel::device() const { return weights_["embedding.weight"].device(); }

RunOptions MemMambaModel::default_options() const {
  RunOptions o;
  o.memory = MemorySettings::from(config_);
  // A GPU needs long chunks to be busy; its memory holds them.
  if (device().is_cuda()) o.chunk_tokens = 65536;
  return o;
}

RunState MemMambaModel::new_state(int64_t batch) const {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1");
  RunState s;
  s.batch = batch;
  const auto dev = device();
  if (dev.is_cuda()) s.device_position = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  s.retention_sums.resize(static_cast<size_t>(config_.n_layers));
  for (int64_t l = 0; l < config_.n_layers; ++l) s.mixers.push_back(new_mixer_state(config_, batch, dev));
  return s;
}

void MemMambaModel::prepare_pools(RunState& state, const RunOptions& options) const {
  if (!config_.memory) return;
  const bool wanted = options.edits && !options.edits->empty();
  const bool edits_change = wanted ? state.edits != options.edits : static_cast<bool>(state.edits);
  if (edits_change) {
    if (state.position != 0)
      throw std::invalid_argument("memory edits must be given from a run's first token (this state has read " +
                                  std::to_string(state.position) + " tokens)");
    if (wanted && torch::GradMode::is_enabled())
      throw std::invalid_argument("memory edits are for inference: run them without gradients");
    state.edits = wanted ? options.edits : nullptr;
    state.pools.clear();
  }
  if (!options.memory.enabled || !state.pools.empty()) return;
  // Made here, not with the state: a run without memory makes no pools (on a GPU each is a
  // handful of small fills, which a 4k-token run without memory would time).
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    state.pools.push_back(new_layer_pool(config_, state.batch, device(), state.device_position,
                                         state.edits ? &state.edits->pool(l) : nullptr));
    // Defined from the start, so that a captured step can re-bind it like the pool's tensors.
    if (config_.memory_context > 1)
      state.pools.back()->context_tail = torch::zeros({state.batch, config_.memory_context - 1, config_.d_model},
                                                      weights_["embedding.weight"].options());
  }
}

torch::Tensor MemMambaModel::logits(const torch::Tensor& hidden) const {
  return project(hidden, weights_["embedding.weight"]);
}

void MemMambaModel::record_retention(int64_t layer, int64_t pos0, const torch::Tensor& dt, RunState& state,
                                     const RunOptions& options) const {
  if (!options.observer || options.retention_sources.empty()) return;
  torch::NoGradGuard no_grad;
  auto dt0 = dt.select(0, 0).detach().to(torch::kFloat32);  // [T, Di]
  const int64_t T = dt0.size(0);
  auto A = mixer_decay_rates(weights_, layer).detach().to(torch::kFloat32).unsqueeze(0);  // [1, Di, N]
  auto& sums = state.retention_sums[layer];
  for (int64_t source : options.retention_sources) {
    if (source < 0 || source >= pos0 + T) continue;
    const int64_t last = source + options.retention_horizon;
    if (last < pos0) continue;
    std::vector<float> values;
    torch::Tensor carried;
    if (source >= pos0) {
      values.push_back(1.f);
      carried = torch::zeros({dt0.size(1)}, dt0.options());
    } else {
      auto it = sums.find(source);
      if (it == sums.end()) continue;  // the source was before this run began
      carried = it->second;
    }
    const int64_t t_begin = std::max(source + 1, pos0), t_end = std::min(last, pos0 + T - 1);
    const bool fused_on_cpu = retention_cpu_applies(dt0, A[0], carried);
    if (fused_on_cpu && t_begin <= t_end) {
      auto means = retention_means_cpu(dt0.narrow(0, t_begin - pos0, t_end - t_begin + 1), A[0], carried);
      values.insert(values.end(), means.begin(), means.end());
    }
    for (int64_t b0 = t_begin; b0 <= t_end && !fused_on_cpu; b0 += 256) {
      const int64_t n = std::min<int64_t>(256, t_end - b0 + 1);
      auto cum = dt0.narrow(0, b0 - pos0, n).cumsum(0) + carried;  // [n, Di]
      auto r = torch::exp(cum.unsqueeze(-1) * A).mean({1, 2});
      auto rv = to_floats(r);
      values.insert(values.end(), rv.begin(), rv.end());
      carried = cum.select(0, n - 1);
    }
    sums[source] = carried;
    if (!values.empty()) options.observer->retention(static_cast<int32_t>(layer), source, std::move(values));
  }
}

torch::Tensor MemMambaModel::layer_forward(int64_t layer, const torch::Tensor& x, RunState& state,
                                           const RunOptions& options, const torch::Tensor& ssm_input_mask,
                                           std::vector<LayerBank>& banks) const {
  const int64_t T = x.size(1), pos0 = state.position;
  const auto signals = std::make_shared<LayerSignals>(T);
  const torch::Tensor xf = config_.memory && options.memory.enabled
                               ? memory_forward(config_, weights_, layer, x, pos0, *state.pools[layer], banks, options, signals)
                               : x;
  MixerOutput mixed = mixer_forward(config_, weights_, layer, xf, state.mixers[layer], ssm_input_mask);
  if (RunObserver* observer = options.observer) {
    const profile::Section section("trace (host)", x.device());
    report_layer_tokens(*observer, layer, pos0, T, signals,
                        (mixed.dt[0] * mixer_decay_rates(weights_, layer).mean(1)).mean(-1));
    record_retention(layer, pos0, mixed.dt, state, options);
  }
  return mixed.x_next;
}

// Step mode on the host: the memory walks a chunk of one token (the same pool walk and
// attention as a parallel chunk), then the mixer takes one recurrent step.
torch::Tensor MemMambaModel::layer_step(int64_t layer, const torch::Tensor& x, RunState& state,
                                        const RunOptions& options, std::vector<LayerBank>& banks) const {
  const int64_t pos = state.position;
  const auto signals = std::make_shared<LayerSignals>(1);
  const torch::Tensor xf =
      config_.memory && options.memory.enabled
          ? memory_forward(config_, weights_, layer, x.unsqueeze(1), pos, *state.pools[layer], banks, options, signals)
                .squeeze(1)
          : x;
  std::optional<profile::Section> section(std::in_place, "mixer: step", x.device());
  MixerOutput mixed = mixer_step(config_, weights_, layer, xf, state.mixers[layer]);
  section.reset();
  if (RunObserver* observer = options.observer) {
    report_layer_tokens(*observer, layer, pos, 1, signals,
                        (mixed.dt[0] * mixer_decay_rates(weights_, layer).mean(1)).mean().reshape({1}));
    record_retention(layer, pos, mixed.dt.unsqueeze(1), state, options);
  }
  return mixed.x_next;
}

namespace {
void check_tokens(const torch::Tensor& tokens, int64_t vocab) {
  if (tokens.numel() == 0) return;
  auto lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
  if (lo < 0 || hi >= vocab)
    throw std::invalid_argument("token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary of " +
                                std::to_string(vocab));
}
}  // namespace

torch::Tensor MemMambaModel::forward(const torch::Tensor& tokens_in, RunState& state, const RunOptions& options) const {
  state.step_graph.reset();  // a parallel pass replaces the state tensors a captured step reads
  CpuBf16Projections bf16(options.cpu_bf16_projections || CpuBf16Projections::active());
  return forward_impl(tokens_in, state, options, false);
}

torch::Tensor MemMambaModel::forward_impl(const torch::Tensor& tokens_in, RunState& state, const RunOptions& options,
                                          bool tokens_checked) const {
  if (tokens_in.dim() != 2) throw std::invalid_argument("forward expects tokens of shape [batch, length]");
  if (tokens_in.size(0) != state.batch) throw std::invalid_argument("token batch does not match the run state");
  if (options.observer && state.batch != 1) throw std::invalid_argument("tracing needs batch 1");
  if (options.chunk_tokens < 1) throw std::invalid_argument("chunk_tokens must be positive");
  prepare_pools(state, options);
  auto tokens = tokens_in.to(device(), torch::kInt64);
  if (!tokens_checked) check_tokens(tokens, config_.vocab_size);
  const int64_t B = tokens.size(0), T = tokens.size(1), D = config_.d_model;
  if (options.ssm_input_mask.defined() &&
      (options.ssm_input_mask.dim() != 2 || options.ssm_input_mask.size(0) != B || options.ssm_input_mask.size(1) != T))
    throw std::invalid_argument("the SSM input mask must have the tokens' shape [batch, length]");
  if (options.decimation.enabled()) return forward_decimated(tokens, state, options);
  std::vector<torch::Tensor> hidden;
  const auto& embedding = weights_["embedding.weight"];
  for (int64_t c0 = 0; c0 < T; c0 += options.chunk_tokens) {
    const int64_t n = std::min(options.chunk_tokens, T - c0);
    const torch::Tensor chunk = tokens.narrow(1, c0, n);
    torch::Tensor h;
    if (chunk_graph_applies(options, B, n)) {
      std::vector<torch::Tensor*> carried;
      for (MixerState& m : state.mixers) {
        carried.push_back(&m.conv);
        carried.push_back(&m.ssm);
      }
      // The weights' addresses name the graph: it reads them where they were at capture.
      size_t weights_hash = 0;
      for (const auto& [name, t] : weights_.all())
        weights_hash = weights_hash * 1000003u ^ std::hash<const void*>()(t.data_ptr());
      const std::string key = std::to_string(B) + "x" + std::to_string(n) + "/" + std::to_string(weights_hash);
      h = cuda_ops::run_chunk_graph(
          *chunk_graphs_, key, chunk, [&](const torch::Tensor& t) { return chunk_forward(t, state, options, {}); }, carried);
    } else {
      const torch::Tensor mask =
          options.ssm_input_mask.defined() ? options.ssm_input_mask.narrow(1, c0, n).to(device()) : torch::Tensor();
      h = chunk_forward(chunk, state, options, mask);
    }
    const int64_t pos0 = state.position;
    state.position += n;
    if (state.device_position.defined()) state.device_position.add_(n);
    if (options.on_hidden) options.on_hidden(pos0, h);
    if (options.keep_hidden) hidden.push_back(h);
    if (options.progress && !options.progress(c0 + n, T)) throw Cancelled();
  }
  if (!options.keep_hidden) return {};
  if (hidden.empty()) return torch::zeros({B, 0, D}, embedding.options());
  return hidden.size() == 1 ? hidden[0] : torch::cat(hidden, 1);
}

torch::Tensor MemMambaModel::chunk_forward(const torch::Tensor& tokens, RunState& state, const RunOptions& options,
                                           const torch::Tensor& ssm_input_mask) const {
  const int64_t B = tokens.size(0), n = tokens.size(1);
  auto x = weights_["embedding.weight"].index_select(0, tokens.reshape({-1})).view({B, n, config_.d_model});
  std::vector<LayerBank> banks(static_cast<size_t>(config_.n_layers));
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    x = layer_forward(l, x, state, options, ssm_input_mask, banks);
    if (options.on_layer_output) options.on_layer_output(l, state.position, x);
  }
  return rms_norm(x, weights_["norm_f.weight"], config_.norm_eps);
}

bool MemMambaModel::chunk_graph_applies(const RunOptions& options, int64_t batch, int64_t tokens) const {
  // Only the mixers' kernels: the memory's pool bookkeeping, observers, callbacks inside the
  // chunk, masks, gradients and profiling waits cannot be replayed.
  if (!chunk_graphs_ || !options.chunk_graphs || !device().is_cuda() || !cuda_ops::step_graphs_available() ||
      profile::enabled())
    return false;
  if (batch * tokens > cuda_ops::kChunkGraphMaxTokens || (config_.memory && options.memory.enabled)) return false;
  if (options.observer || options.on_layer_output || options.ssm_input_mask.defined()) return false;
  if (torch::GradMode::is_enabled())
    for (const auto& entry : weights_.all())
      if (entry.second.requires_grad()) return false;
  return true;
}

torch::Tensor MemMambaModel::forward_decimated(const torch::Tensor& tokens, RunState& state, const RunOptions& options) const {
  const DecimationSettings& decimation = options.decimation;
  decimation.validate(config_);
  if (config_.memory && options.memory.enabled)
    throw std::invalid_argument("decimation (DeciMamba) runs on a Mamba-only model, or with the memory off (--no-memory)");
  if (state.position != 0) throw std::invalid_argument("decimation needs the whole context in one pass from its first token");
  if (options.ssm_input_mask.defined()) throw std::invalid_argument("decimation does not take an SSM input mask");
  const int64_t B = tokens.size(0), T = tokens.size(1), D = config_.d_model;
  const int64_t chunk = std::max<int64_t>(1, options.chunk_tokens);
  const auto& embedding = weights_["embedding.weight"];
  const auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(device());
  auto is_decimating = [&](int64_t l) {
    return std::find(decimation.layers.begin(), decimation.layers.end(), l) != decimation.layers.end();
  };
  // Per original token, a layer's flags and log decay for the observer: a token outside the
  // layer's scan is flagged and does not decay the state (log decay 0).
  auto report = [&](int64_t l, int64_t pos0, int64_t n, const torch::Tensor& kept_positions, const torch::Tensor& dt) {
    RunObserver* observer = options.observer;
    if (!observer) return;
    const profile::Section section("trace (host)", device());
    std::vector<float> zeros(static_cast<size_t>(n), 0.f), log_decay(static_cast<size_t>(n), 0.f);
    std::vector<uint8_t> flags(static_cast<size_t>(n), kDecimated);
    const auto decay = to_floats((dt[0] * mixer_decay_rates(weights_, l).mean(1)).mean(-1));
    const auto kept_cpu = kept_positions.to(torch::kCPU).contiguous();
    const int64_t* kept = kept_cpu.data_ptr<int64_t>();
    for (int64_t i = 0; i < kept_cpu.numel(); ++i) {
      flags[static_cast<size_t>(kept[i] - pos0)] = 0;
      log_decay[static_cast<size_t>(kept[i] - pos0)] = decay[static_cast<size_t>(i)];
    }
    observer->layer_tokens(static_cast<int32_t>(l), pos0, n, zeros.data(), zeros.data(), flags.data(), zeros.data(),
                           zeros.data(), log_decay.data());
  };
  auto progress = [&](int64_t done) {
    if (options.progress && !options.progress(done, T)) throw Cancelled();
  };

  // Up to the first decimating layer every token goes on: those layers run chunk by chunk, as
  // the plain forward does, so a long context holds one chunk's intermediates at a time and
  // the first decimating layer's input [B, T, D].
  const int64_t first = *std::min_element(decimation.layers.begin(), decimation.layers.end());
  std::vector<torch::Tensor> inputs;  // the first decimating layer's input, chunk by chunk
  for (int64_t c0 = 0; c0 < T; c0 += chunk) {
    const int64_t n = std::min(chunk, T - c0);
    auto x = embedding.index_select(0, tokens.narrow(1, c0, n).reshape({-1})).view({B, n, D});
    for (int64_t l = 0; l < first; ++l) {
      MixerOutput mixed = mixer_forward(config_, weights_, l, x, state.mixers[l]);
      report(l, c0, n, torch::arange(c0, c0 + n, long_opts), mixed.dt);
      x = mixed.x_next;
      if (options.on_layer_output) options.on_layer_output(l, c0, x);
    }
    inputs.push_back(x);
    if (first > 0) progress(std::min(T, c0 + n) * first / config_.n_layers);
  }

  // The first decimating layer scores every token by its step sizes and keeps the top k of
  // the whole context. With one sequence it runs chunk by chunk in two passes: the first (on a
  // copy of the layer's state, its scan skipped) scores every token, the second runs the conv
  // over every token and the scan over the kept ones, whose order the chunks keep. A batch
  // runs it on the whole context at once (the chunks would keep different counts per row), and
  // so does the GPU, whose memory holds a layer of a million tokens: measured on an H200 at 1M,
  // two passes there run at 0.91x the speed in 0.52x the memory, and the baseline keeps its
  // speed (docs/decimamba.md).
  const int64_t first_keep = decimation.keep_count(T, 0);
  torch::Tensor x, positions;
  if (B == 1 && first_keep < T && inputs.size() > 1 && !device().is_cuda()) {
    std::vector<torch::Tensor> scores;
    {
      MixerState scratch{state.mixers[first].conv.clone(), state.mixers[first].ssm.clone()};
      for (const torch::Tensor& input : inputs)
        mixer_forward(config_, weights_, first, input, scratch, {}, [&scores, &long_opts](const torch::Tensor& dt) {
          scores.push_back(dt.to(torch::kFloat32).norm(2, -1));
          return torch::zeros({dt.size(0), 1}, long_opts);  // one row, so the scan costs nothing
        });
    }
    const torch::Tensor kept_all = decimation_keep(torch::cat(scores, 1), first_keep, decimation.protected_tail)[0];
    std::vector<torch::Tensor> outputs, kept_parts;
    int64_t c0 = 0;
    for (torch::Tensor& input : inputs) {
      const int64_t n = input.size(1);
      const auto in_chunk = kept_all.masked_select(kept_all.ge(c0) & kept_all.lt(c0 + n));
      MixerOutput mixed = mixer_forward(config_, weights_, first, input, state.mixers[first], {},
                                        [&](const torch::Tensor&) { return (in_chunk - c0).unsqueeze(0); });
      report(first, c0, n, in_chunk, mixed.dt);
      outputs.push_back(mixed.x_next);
      kept_parts.push_back(in_chunk);
      input = torch::Tensor();  // its rows are no longer needed
      c0 += n;
    }
    x = torch::cat(outputs, 1);
    positions = torch::cat(kept_parts, 0).unsqueeze(0);
  } else {
    x = inputs.size() == 1 ? inputs[0] : torch::cat(inputs, 1);
    inputs.clear();
    positions = torch::arange(T, long_opts).unsqueeze(0).expand({B, T}).contiguous();
  }
  progress(T * (first + 1) / config_.n_layers);

  // The rest on the shorter sequence, whole: the first decimating layer's stage when it has not
  // run above, then every later layer (a decimating one drops more).
  int64_t stage = x.size(1) < T ? 1 : 0;
  for (int64_t l = stage == 1 ? first + 1 : first; l < config_.n_layers; ++l) {
    TokenSelector select;
    if (is_decimating(l)) {
      const int64_t keep = decimation.keep_count(x.size(1), stage++);
      select = [keep, &decimation](const torch::Tensor& dt) {
        if (keep >= dt.size(1)) return torch::Tensor();
        return decimation_keep(dt.to(torch::kFloat32).norm(2, -1), keep, decimation.protected_tail);
      };
    }
    MixerOutput mixed = mixer_forward(config_, weights_, l, x, state.mixers[l], {}, select);
    if (mixed.kept.defined()) positions = positions.gather(1, mixed.kept);
    report(l, 0, T, positions[0], mixed.dt);
    x = mixed.x_next;
    if (options.on_layer_output && x.size(1) == T) options.on_layer_output(l, 0, x);
  }
  auto h = rms_norm(x, weights_["norm_f.weight"], config_.norm_eps);
  state.position += T;
  if (state.device_position.defined()) state.device_position.add_(T);
  torch::Tensor hidden;
  if (options.keep_hidden || options.on_hidden) {
    // Every original position: the kept ones' hidden states, NaN for the dropped.
    hidden = torch::full({B, T, D}, std::numeric_limits<float>::quiet_NaN(), h.options());
    hidden.scatter_(1, positions.unsqueeze(-1).expand({B, positions.size(1), D}), h);
    if (options.on_hidden) options.on_hidden(0, hidden);
  }
  progress(T);
  return options.keep_hidden ? hidden : torch::Tensor();
}

torch::Tensor MemMambaModel::step(const torch::Tensor& tokens_in, RunState& state, const RunOptions& options_in) const {
  // A step continues a context: decimation chose its tokens in the parallel pass before.
  RunOptions stepping;
  const bool decimating = options_in.decimation.enabled();
  if (decimating) {
    stepping = options_in;
    stepping.decimation = {};
  }
  const RunOptions& options = decimating ? stepping : options_in;
  if (tokens_in.dim() != 1 || tokens_in.size(0) != state.batch)
    throw std::invalid_argument("step expects one token per sequence of the batch");
  prepare_pools(state, options);
  if (options.observer && state.batch != 1) throw std::invalid_argument("tracing needs batch 1");
  if (device().is_cuda()) {
    // On the GPU a step is a parallel pass over one token: the same kernels and the same
    // device-side pool, so parallel and step mode cannot drift apart. Without tracing or
    // callbacks it runs as a captured CUDA graph (model/cuda/step_graph.h).
    auto host_tokens = tokens_in.to(torch::kCPU, torch::kInt64);
    check_tokens(host_tokens, config_.vocab_size);
    RunOptions one = options;
    one.progress = nullptr;
    one.keep_hidden = true;
    one.chunk_graphs = false;  // the step itself may be being captured
    // Fused kernels where nothing observes the step (model/cuda/fused_step.h), else the
    // parallel pass over one token.
    const bool fused = cuda_ops::fused_step_applies(config_, weights_, options, state);
    auto direct = [&](const torch::Tensor& tokens) {
      if (fused) return cuda_ops::fused_step(config_, weights_, tokens.to(device()), state, options);
      auto h = forward_impl(tokens.view({state.batch, 1}), state, one, true);
      return logits(h.select(1, 0));
    };
    // Capturable only when no host bookkeeping runs (windows of one token, or memory off).
    bool device_only = true;
    if (config_.memory && options.memory.enabled)
      for (const auto& pool : state.pools) device_only = device_only && pool->capturable();
    // Profiling waits for the GPU inside the step, which a graph capture cannot hold.
    if (options.observer || options.on_hidden || !device_only || !cuda_ops::step_graphs_available() ||
        profile::enabled()) {
      state.step_graph.reset();
      auto out = direct(host_tokens);
      if (fused) state.position += 1;  // the parallel pass moves it on itself
      return out;
    }
    const Json settings = options.memory.to_json(config_.memory);
    const std::string key = settings.dump() + "/" + std::to_string(state.batch) + (fused ? "/fused" : "");
    const int64_t before = state.position;
    auto out = cuda_ops::run_step_graph(state.step_graph, key, host_tokens, direct, [&state] {
      std::vector<torch::Tensor*> slots;
      for (auto& m : state.mixers) {
        slots.push_back(&m.conv);
        slots.push_back(&m.ssm);
      }
      for (auto& pool : state.pools) {
        for (torch::Tensor* t : pool->carried_tensors()) slots.push_back(t);
        if (pool->context_tail.defined()) slots.push_back(&pool->context_tail);
      }
      return slots;
    });
    if (state.position == before) state.position += 1;  // a replay runs no host code
    return out;
  }
  auto tokens = tokens_in.to(device(), torch::kInt64);
  check_tokens(tokens, config_.vocab_size);
  auto x = weights_["embedding.weight"].index_select(0, tokens);  // [B, D]
  std::vector<LayerBank> banks(static_cast<size_t>(config_.n_layers));
  for (int64_t l = 0; l < config_.n_layers; ++l) x = layer_step(l, x, state, options, banks);
  auto h = rms_norm(x, weights_["norm_f.weight"], config_.norm_eps);
  if (options.on_hidden) options.on_hidden(state.position, h.unsqueeze(1));
  state.position += 1;
  return logits(h);
}

std::vector<int64_t> generate_greedy(const MemMambaModel& model, const std::vector<int64_t>& prompt,
                                     int64_t max_new_tokens, const RunOptions& options,
                                     const std::function<bool(int64_t)>& stop) {
  if (prompt.empty()) throw std::invalid_argument("generation needs a non-empty prompt");
  torch::NoGradGuard no_grad;
  RunState state = model.new_state(1);
  RunOptions prompt_options = options;
  torch::Tensor last_hidden;
  prompt_options.keep_hidden = false;
  prompt_options.on_hidden = [&](int64_t, const torch::Tensor& h) { last_hidden = h.select(1, h.size(1) - 1); };
  model.forward(torch::tensor(prompt, torch::kInt64).view({1, -1}), state, prompt_options);
  std::vector<int64_t> out;
  auto logits = model.logits(last_hidden);
  for (int64_t i = 0; i < max_new_tokens; ++i) {
    const int64_t next = logits.argmax(-1).item<int64_t>();
    out.push_back(next);
    if (stop && stop(next)) break;
    if (i + 1 == max_new_tokens) break;
    logits = model.step(torch::tensor({next}, torch::kInt64), state, options);
  }
  return out;
}

}  // namespace memmamba
