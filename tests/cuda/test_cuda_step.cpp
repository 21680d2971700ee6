// Step mode's fused kernels (model/cuda/step_kernels.cu) against the step they replace (the
// parallel pass over one token, MEMMAMBA_NO_FUSED_STEP=1) and against the parallel pass over
// the whole text: logits, every pool's notes and slots, for each importance rule, pool
// policy and fusion the kernels take, batches of one and three, untrained weights (dense
// notes, full pools, evictions and drops) and the bundled model on a book. A plain program
// (the GPU machine has no Qt); without a GPU it exits 77, which CTest reports as skipped.
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "model/autocast.h"
#include "model/cuda/chunk_graph.h"
#include "model/cuda/fused_step.h"
#include "model/memmamba.h"
#include "model/file_io.h"
#include "model/session.h"
#include "model/tokenizer.h"
#include "tests/cuda/cuda_checks.h"

using namespace memmamba;

namespace {

using cuda_testing::check;
using cuda_testing::model_case;

void set_fused(bool on) {
  if (on)
    unsetenv("MEMMAMBA_NO_FUSED_STEP");
  else
    setenv("MEMMAMBA_NO_FUSED_STEP", "1", 1);
}

struct Stepped {
  torch::Tensor logits;                  // [steps, B, V]
  std::vector<std::vector<int64_t>> ids;  // per layer and sequence: the pool's note ids
  std::vector<int64_t> made;             // per layer and sequence: notes made
};

// Steps through tokens [B, T] from a fresh state (or after a parallel prompt of `prompt` tokens).
Stepped step_through(const MemMambaModel& model, const torch::Tensor& tokens, const RunOptions& options, bool fused,
                     int64_t prompt = 0) {
  set_fused(fused);
  const int64_t B = tokens.size(0), T = tokens.size(1);
  RunState state = model.new_state(B);
  if (prompt > 0) model.forward(tokens.narrow(1, 0, prompt).to(model.device()), state, options);
  std::vector<torch::Tensor> rows;
  for (int64_t t = prompt; t < T; ++t) rows.push_back(model.step(tokens.select(1, t), state, options));
  set_fused(true);
  Stepped out;
  out.logits = torch::stack(rows, 0).to(torch::kCPU, torch::kFloat32);
  for (const auto& pool : state.pools)
    for (int64_t b = 0; b < B; ++b) {
      out.ids.push_back(pool->slot_note_ids(b));
      out.made.push_back(pool->notes_made(b));
    }
  return out;
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// Fused steps == unfused steps == the parallel pass, with the same notes in the same slots.
void fused_step_matches_unfused_and_parallel() {
  const torch::Device gpu(torch::kCUDA);
  torch::NoGradGuard no_grad;
  struct Case {
    ModelConfig config;
    int64_t batch, steps;
    const char* name;
  };
  ModelConfig big;  // the default config: K 50, S 64, D 256; untrained weights note densely
  ModelConfig big_fifo = big;
  big_fifo.pool_policy = PoolPolicy::Fifo;
  const std::vector<Case> cases = {
      {model_case(ImportanceRule::Novelty, PoolPolicy::Priority, FusionKind::Weighted), 1, 200, "novelty/priority/weighted"},
      {model_case(ImportanceRule::Novelty, PoolPolicy::Fifo, FusionKind::Residual), 3, 200, "novelty/fifo/residual, batch 3"},
      {model_case(ImportanceRule::Learned, PoolPolicy::Priority, FusionKind::Residual), 3, 200, "learned/priority/residual, batch 3"},
      {model_case(ImportanceRule::Learned, PoolPolicy::Fifo, FusionKind::Weighted), 1, 200, "learned/fifo/weighted"},
      {big, 2, 300, "default config, batch 2"},
      {big_fifo, 1, 300, "default config, fifo"},
  };
  for (const Case& c : cases) {
    MemMambaModel model = MemMambaModel::random(c.config, 17);
    model.to(gpu);
    const RunOptions options = model.default_options();
    torch::manual_seed(5);
    auto tokens = torch::randint(0, c.config.vocab_size, {c.batch, c.steps}, torch::kInt64);
    RunState probe = model.new_state(c.batch);
    check(cuda_ops::fused_step_applies(c.config, model.weights(), options, probe),
          std::string("the fused step applies: ") + c.name);
    const Stepped fused = step_through(model, tokens, options, true);
    const Stepped plain = step_through(model, tokens, options, false);
    const double scale = plain.logits.abs().max().item<double>();
    const double diff = max_abs(fused.logits, plain.logits);
    check(diff < 1e-4 * std::max(1.0, scale), std::string("fused step == unfused step, ") + c.name + ": max |dlogit| " +
                                                  std::to_string(diff) + " of " + std::to_string(scale));
    check(fused.ids == plain.ids && fused.made == plain.made,
          std::string("fused step: the same notes in the same slots, ") + c.name);
    int64_t notes = 0;
    for (int64_t m : plain.made) notes += m;
    const int64_t slots = c.config.pool_slots * c.config.n_layers * c.batch;
    check(notes > slots, std::string("the case fills its pools (notes ") + std::to_string(notes) + ", slots " +
                             std::to_string(slots) + "): " + c.name);
    RunState whole = model.new_state(c.batch);
    auto parallel = model.logits(model.forward(tokens.to(gpu), whole, options)).transpose(0, 1).to(torch::kCPU);
    const double pdiff = max_abs(fused.logits, parallel);
    check(pdiff < 1e-4 * std::max(1.0, scale), std::string("fused step == parallel pass, ") + c.name + ": max |dlogit| " +
                                                   std::to_string(pdiff));
    // A prompt read in parallel, then fused steps.
    const Stepped after = step_through(model, tokens, options, true, c.steps / 2);
    const double adiff = max_abs(after.logits, parallel.narrow(0, c.steps / 2, c.steps - c.steps / 2));
    check(adiff < 1e-4 * std::max(1.0, scale),
          std::string("fused steps after a parallel prompt == parallel pass, ") + c.name + ": " + std::to_string(adiff));
  }
}

// The settings a run may change: memory off, other thresholds, the gain; and what the fused
// kernels leave to the parallel pass (gated fusion, an observer's callbacks).
void fused_step_follows_run_settings() {
  const torch::Device gpu(torch::kCUDA);
  torch::NoGradGuard no_grad;
  const ModelConfig config = model_case(ImportanceRule::Novelty, PoolPolicy::Priority, FusionKind::Weighted);
  MemMambaModel model = MemMambaModel::random(config, 23);
  model.to(gpu);
  torch::manual_seed(6);
  auto tokens = torch::randint(0, config.vocab_size, {2, 120}, torch::kInt64);
  std::vector<std::pair<std::string, RunOptions>> runs;
  RunOptions off = model.default_options();
  off.memory.enabled = false;
  runs.emplace_back("memory off", off);
  RunOptions other = model.default_options();
  other.memory.tau_note = 0.5;
  other.memory.tau_retrieve = 0.3;
  other.memory.fusion_gain = 2.5;
  other.memory.importance = ImportanceRule::Learned;
  runs.emplace_back("tau1 0.5, tau2 0.3, gain 2.5, learned rule at run time", other);
  for (const auto& [name, options] : runs) {
    RunState probe = model.new_state(2);
    check(cuda_ops::fused_step_applies(config, model.weights(), options, probe), "the fused step applies: " + name);
    const Stepped fused = step_through(model, tokens, options, true);
    const Stepped plain = step_through(model, tokens, options, false);
    const double diff = max_abs(fused.logits, plain.logits);
    check(diff < 1e-4 * std::max(1.0, plain.logits.abs().max().item<double>()) && fused.ids == plain.ids,
          "fused step == unfused step, " + name + ": max |dlogit| " + std::to_string(diff));
  }
  const ModelConfig gated = model_case(ImportanceRule::Novelty, PoolPolicy::Priority, FusionKind::Gated);
  MemMambaModel gated_model = MemMambaModel::random(gated, 23);
  gated_model.to(gpu);
  RunState state = gated_model.new_state(1);
  check(!cuda_ops::fused_step_applies(gated, gated_model.weights(), gated_model.default_options(), state),
        "gated fusion stays on the parallel pass");
  RunOptions hooked = model.default_options();
  hooked.on_hidden = [](int64_t, const torch::Tensor&) {};
  RunState hs = model.new_state(1);
  check(!cuda_ops::fused_step_applies(config, model.weights(), hooked, hs), "a run with callbacks stays on the parallel pass");
  torch::GradMode::set_enabled(true);
  check(!cuda_ops::fused_step_applies(config, model.weights(), model.default_options(), hs),
        "a step with gradients stays on the parallel pass");
  torch::GradMode::set_enabled(false);
}

// The bundled model on the opening of a book: steps after a parallel prompt give the parallel
// pass's logits and greedy tokens, and where the fused step applies (a memory that takes its
// summaries from the token alone) it gives the unfused step's.
void bundled_model_on_a_book() {
  torch::NoGradGuard no_grad;
  ModelChoice choice;
  choice.checkpoint = std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/memmamba-small.safetensors";
  choice.device = "cuda";
  LoadedModel loaded = load_model(choice);
  const Tokenizer tok = Tokenizer::load(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/tokenizer.model");
  const std::string text = read_file(std::string(MEMMAMBA_SOURCE_DIR) + "/sample_data/The-Time-Machine_35.txt");
  const Encoding enc = tok.encode(text.substr(0, 6000));
  std::vector<int64_t> ids(enc.ids.begin(), enc.ids.begin() + std::min<size_t>(enc.ids.size(), 1000));
  auto tokens = torch::tensor(ids, torch::kInt64).view({1, -1});
  const int64_t prompt = 200, T = tokens.size(1);
  const RunOptions options = loaded.model.default_options();
  RunState whole = loaded.model.new_state(1);
  const auto parallel = loaded.model.logits(loaded.model.forward(tokens.to(loaded.model.device()), whole, options))
                            .transpose(0, 1)
                            .narrow(0, prompt, T - prompt)
                            .to(torch::kCPU, torch::kFloat32);
  const Stepped plain = step_through(loaded.model, tokens, options, false, prompt);
  const double scale = std::max(1.0, parallel.abs().max().item<double>());
  const double pdiff = max_abs(plain.logits, parallel);
  const double agree = plain.logits.argmax(-1).eq(parallel.argmax(-1)).to(torch::kFloat32).mean().item<double>();
  check(pdiff < 1e-3 * scale && agree > 0.99,
        "bundled MemMamba-small, 800 steps of The Time Machine after a 200-token prompt == the parallel pass: max |dlogit| " +
            std::to_string(pdiff) + " (scale " + std::to_string(scale) + "), greedy tokens agree " + std::to_string(agree));
  RunState probe = loaded.model.new_state(1);
  if (!cuda_ops::fused_step_applies(loaded.model.config(), loaded.model.weights(), options, probe)) {
    check(loaded.model.config().memory_context > 1, "the fused step applies to the bundled model unless its memory mixes a context");
    return;
  }
  const Stepped fused = step_through(loaded.model, tokens, options, true, prompt);
  const double diff = max_abs(fused.logits, plain.logits);
  const bool same_argmax = fused.logits.argmax(-1).equal(plain.logits.argmax(-1));
  check(diff < 1e-3 && same_argmax && fused.ids == plain.ids,
        "bundled MemMamba-small, fused steps == unfused steps: max |dlogit| " + std::to_string(diff) +
            (same_argmax ? ", the same greedy tokens" : ", greedy tokens differ"));
}

// Short chunks without memory replay a captured graph (model/cuda/chunk_graph.h): the same
// hidden states and carried state as running them directly, from a fresh state and
// mid-run, in fp32 and under bf16 autocast, and step mode goes on from the state they leave.
void chunk_graphs_match_direct_chunks() {
  const torch::Device gpu(torch::kCUDA);
  torch::NoGradGuard no_grad;
  ModelConfig config;  // the default config, its memory switched off for the run
  MemMambaModel model = MemMambaModel::random(config, 31);
  model.to(gpu);
  auto tokens = torch::randint(config.vocab_size, {2, 3000}, torch::kInt64).to(gpu);
  RunOptions options = model.default_options();
  options.memory.enabled = false;
  options.chunk_tokens = 700;  // chunks of 700 (warm-up, capture, replays) and a last one of 200
  struct Ran {
    torch::Tensor hidden, logits;
    std::vector<torch::Tensor> state;
  };
  auto run = [&](bool graphs, bool bf16) {
    RunOptions o = options;
    o.chunk_graphs = graphs;
    RunState state = model.new_state(2);
    Ran r;
    {
      AutocastGuard autocast(bf16);
      r.hidden = model.forward(tokens, state, o).to(torch::kFloat32);
    }
    for (const MixerState& m : state.mixers) {
      r.state.push_back(m.conv.clone());
      r.state.push_back(m.ssm.clone());
    }
    r.logits = model.step(tokens.select(1, 7), state, o).to(torch::kFloat32);
    return r;
  };
  for (bool bf16 : {false, true}) {
    const std::string name = bf16 ? "bf16 autocast" : "fp32";
    const Ran direct = run(false, bf16);
    // The first round runs the 700-token shape directly, captures it and replays it twice (the
    // 200-token chunk runs directly); the second replays all four and captures the last shape.
    for (int round = 0; round < 2; ++round) {
      const int64_t replays_before = cuda_ops::chunk_graph_replays();
      const Ran graphed = run(true, bf16);
      const int64_t replayed = cuda_ops::chunk_graph_replays() - replays_before;
      check(replayed == (round == 0 ? 3 : 5),
            name + ", round " + std::to_string(round) + ": chunks replayed from the graph: " + std::to_string(replayed));
      const double scale = direct.hidden.abs().max().item<double>();
      const double diff = max_abs(graphed.hidden, direct.hidden);
      double state_diff = 0;
      for (size_t i = 0; i < direct.state.size(); ++i)
        state_diff = std::max(state_diff, max_abs(graphed.state[i].to(torch::kFloat32), direct.state[i].to(torch::kFloat32)));
      const double step_diff = max_abs(graphed.logits, direct.logits);
      check(diff <= 1e-6 * scale && state_diff <= 1e-6 * std::max(1.0, scale) && step_diff <= 1e-5 * std::max(1.0, scale),
            name + ", round " + std::to_string(round) + ": graph == direct chunks (max |dh| " + std::to_string(diff) +
                ", |dstate| " + std::to_string(state_diff) + ", |dlogit| after a step " + std::to_string(step_diff) + ")");
    }
  }
  // The memory on: no graph.
  const int64_t before = cuda_ops::chunk_graph_replays();
  RunState state = model.new_state(1);
  model.forward(tokens.narrow(0, 0, 1).narrow(1, 0, 1400), state, model.default_options());
  model.forward(tokens.narrow(0, 0, 1).narrow(1, 0, 1400), state, model.default_options());
  check(cuda_ops::chunk_graph_replays() == before, "a run with the memory on replays no chunk graph");
}

// The context mix (ModelConfig::memory_context) leaves the fused kernels to the parallel pass
// over one token; its steps (captured as a graph) after a parallel prompt, the GPU's parallel
// pass and the CPU's agree, with the taps away from the token alone.
void context_mix_steps_match_parallel() {
  const torch::Device gpu(torch::kCUDA);
  torch::NoGradGuard no_grad;
  ModelConfig c;  // the default config: the GPU's own pool walk
  c.memory_context = 8;
  Weights w = Weights::random(c, 21);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string name = layer_prefix(l) + "memory.context.weight";
    w.set(name, torch::rand(w[name].sizes()));
  }
  MemMambaModel cpu_model(c, w);
  MemMambaModel model(c, w);
  model.to(gpu);
  const RunOptions options = model.default_options();
  torch::manual_seed(8);
  auto tokens = torch::randint(0, c.vocab_size, {2, 240}, torch::kInt64);
  check(!cuda_ops::fused_step_applies(c, model.weights(), options, model.new_state(2)),
        "the context mix runs its steps as parallel passes over one token");
  RunState whole = model.new_state(2);
  auto parallel = model.logits(model.forward(tokens.to(gpu), whole, options)).transpose(0, 1).to(torch::kCPU);
  const double scale = std::max(1.0, parallel.abs().max().item<double>());
  RunState host = cpu_model.new_state(2);
  auto on_cpu = cpu_model.logits(cpu_model.forward(tokens, host, options)).transpose(0, 1);
  const double cdiff = max_abs(parallel, on_cpu);
  check(cdiff < 2e-3 * scale, "context mix: GPU parallel == CPU parallel, max |dlogit| " + std::to_string(cdiff));
  const Stepped after = step_through(model, tokens, options, false, 120);
  const double sdiff = max_abs(after.logits, parallel.narrow(0, 120, 120));
  check(sdiff < 1e-4 * scale, "context mix: steps after a parallel prompt == parallel pass, " + std::to_string(sdiff));
}

}  // namespace

int main() {
  return cuda_testing::run_on_gpu([] {
    fused_step_matches_unfused_and_parallel();
    fused_step_follows_run_settings();
    bundled_model_on_a_book();
    chunk_graphs_match_direct_chunks();
    context_mix_steps_match_parallel();
  });
}
