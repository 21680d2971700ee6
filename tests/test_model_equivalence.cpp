// Parallel (whole-sequence, chunked) and step (recurrent) mode must give the same logits.
#include <torch/torch.h>

#include <atomic>
#include <optional>

#include <QtTest/QtTest>

#include "model/causal_conv_cpu.h"
#include "model/memmamba.h"
#include "model/memory/slot_attention.h"
#include "model/selective_scan.h"
#include "model/runtime.h"
#include "test_helpers.h"

using namespace memmamba;

namespace {
torch::Tensor parallel_logits(const MemMambaModel& m, const torch::Tensor& tokens, const RunOptions& o, int64_t chunk) {
  RunState s = m.new_state(tokens.size(0));
  RunOptions opts = o;
  opts.chunk_tokens = chunk;
  return m.logits(m.forward(tokens, s, opts));
}

torch::Tensor step_logits(const MemMambaModel& m, const torch::Tensor& tokens, const RunOptions& o) {
  RunState s = m.new_state(tokens.size(0));
  std::vector<torch::Tensor> out;
  for (int64_t t = 0; t < tokens.size(1); ++t) out.push_back(m.step(tokens.select(1, t), s, o));
  return torch::stack(out, 1);
}

struct Counts {
  int64_t notes = 0, evictions = 0, triggered = 0;
};

// Runs step mode token by token while counting what the pool did in layer 0.
Counts pool_activity(const MemMambaModel& m, const torch::Tensor& tokens, const RunOptions& o) {
  RunState s = m.new_state(1);
  for (int64_t t = 0; t < tokens.size(1); ++t) m.step(tokens.select(1, t), s, o);
  Counts c;
  c.notes = s.pools[0]->notes_made(0);
  return c;
}
}  // namespace

class TestModelEquivalence : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { configure_cpu_runtime(); }

  void parallelEqualsStep_data() {
    QTest::addColumn<int>("window");
    QTest::addColumn<QString>("policy");
    QTest::addColumn<QString>("fusion");
    QTest::addColumn<QString>("importance");
    QTest::addColumn<bool>("memory");
    for (int w : {1, 4})
      for (const char* policy : {"priority", "fifo"})
        for (const char* fusion : {"weighted", "residual", "gated"})
          for (const char* importance : {"novelty", "learned"})
            QTest::newRow(qPrintable(QString("w%1 %2 %3 %4").arg(w).arg(policy, fusion, importance)))
                << w << QString(policy) << QString(fusion) << QString(importance) << true;
    QTest::newRow("mamba only (config)") << 1 << QString("priority") << QString("weighted") << QString("novelty") << false;
  }

  void parallelEqualsStep() {
    QFETCH(int, window);
    QFETCH(QString, policy);
    QFETCH(QString, fusion);
    QFETCH(QString, importance);
    QFETCH(bool, memory);
    ModelConfig c = testing::tiny_config();
    c.note_window = window;
    c.pool_policy = pool_policy_from_string(policy.toStdString());
    c.fusion = fusion_kind_from_string(fusion.toStdString());
    c.importance = importance_rule_from_string(importance.toStdString());
    c.tau_note = importance == "learned" ? 0.45 : 0.2;
    c.memory = memory;
    MemMambaModel m = MemMambaModel::random(c, 5);
    torch::NoGradGuard no_grad;
    const int64_t T = 12 * window + 3;  // many windows, the last one left open
    torch::manual_seed(9);
    auto tokens = torch::randint(0, c.vocab_size, {2, T}, torch::kInt64);
    RunOptions o = m.default_options();
    auto par = parallel_logits(m, tokens, o, 1 << 20);
    auto stp = step_logits(m, tokens, o);
    const double diff = (par - stp).abs().max().item<double>();
    QVERIFY2(diff < 1e-4, qPrintable(QString("max |parallel - step| = %1").arg(diff)));
    // Chunk boundaries inside windows change nothing either.
    auto chunked = parallel_logits(m, tokens, o, 5);
    QVERIFY((chunked - par).abs().max().item<double>() < 1e-4);
    if (memory) {
      // The case must exercise the pool: more notes than slots.
      Counts counts = pool_activity(m, tokens.narrow(0, 0, 1), o);
      QVERIFY2(counts.notes > c.pool_slots, qPrintable(QString("only %1 notes").arg(counts.notes)));
    }
  }

  // run --bf16 on the CPU: the projections in bf16, close to fp32 but not equal (the path ran),
  // and only for the pass that asked (the scope ends with it).
  void cpuBf16ProjectionsStayCloseToFp32() {
    ModelConfig c = testing::tiny_config();
    c.memory = false;  // untrained notes fire on nearly every token: a rounding flips decisions
    MemMambaModel m = MemMambaModel::random(c, 3);
    torch::NoGradGuard no_grad;
    torch::manual_seed(2);
    auto tokens = torch::randint(0, c.vocab_size, {1, 48}, torch::kInt64);
    RunOptions fp32 = m.default_options(), bf16 = fp32;
    bf16.cpu_bf16_projections = true;
    auto exact = parallel_logits(m, tokens, fp32, 1 << 20);
    auto rounded = parallel_logits(m, tokens, bf16, 1 << 20);
    const double diff = (exact - rounded).abs().max().item<double>(), scale = exact.abs().max().item<double>();
    QVERIFY2(diff > 0 && diff < 0.05 * scale, qPrintable(QString("max |dlogit| %1 of %2").arg(diff).arg(scale)));
    QVERIFY(!CpuBf16Projections::active());
    {
      CpuBf16Projections on(true);
      QVERIFY(CpuBf16Projections::active());
      {
        CpuBf16Projections off(false);
        QVERIFY(!CpuBf16Projections::active());
      }
      QVERIFY(CpuBf16Projections::active());
    }
    QVERIFY(!CpuBf16Projections::active());
    // The product is of the bf16-rounded operands (its output rounded to bf16 too).
    auto x = torch::randn({64, 32}), w = torch::randn({48, 32});
    torch::Tensor got;
    {
      CpuBf16Projections on(true);
      got = project(x, w);
    }
    QCOMPARE(got.scalar_type(), torch::kFloat32);
    auto want = torch::mm(x.to(torch::kBFloat16).to(torch::kFloat32), w.to(torch::kBFloat16).to(torch::kFloat32).t());
    QVERIFY((got - want).abs().max().item<double>() < 0.01 * want.abs().max().item<double>());
    QVERIFY((project(x, w) - torch::mm(x, w.t())).abs().max().item<double>() < 1e-4);
  }

  // Products of many rows split by rows over the intra-op threads: equal to one product, also
  // under NoGradGuard with weights that require grad (grad mode is per thread, and OpenMP's
  // workers start with it on), and the split really runs on more than one thread.
  void rowSplitProductsEqualOneProduct() {
    const int previous = at::get_num_threads();
    at::set_num_threads(2);
    auto x = torch::randn({1500, 64});
    auto w = torch::randn({96, 64}).requires_grad_(true);
    torch::Tensor got;
    {
      torch::NoGradGuard no_grad;
      got = project(x, w);
    }
    QVERIFY(!got.requires_grad());
    QVERIFY((got - torch::mm(x, w.detach().t())).abs().max().item<double>() < 1e-4);
    std::atomic<int> regions{0};
    at::parallel_for(0, 1024, 256, [&](int64_t, int64_t) { regions += at::get_thread_num() > 0 ? 1 : 0; });
    at::set_num_threads(previous);
    QVERIFY2(regions > 0, "at::parallel_for ran every range on the calling thread (no OpenMP in this build?)");
  }

  // The CPU's one-pass causal conv + SiLU equals the shifted products it replaces: rows read
  // from a wider tensor (in_proj's output), channels not a multiple of the vector width,
  // chunks shorter than the kernel, and the carried inputs it hands on.
  void cpuCausalConvEqualsShiftedProducts() {
    // Training differentiates through the tensor-op form.
    auto trained = torch::randn({1, 4, 8}).requires_grad_(true);
    QVERIFY(!causal_conv_silu_cpu_applies(trained, torch::zeros({1, 3, 8}), torch::randn({8, 4}), torch::randn({8})));
    torch::NoGradGuard no_grad;
    torch::manual_seed(4);
    for (int64_t taps : {2, 4, 5})
      for (int64_t T : {1, 3, 37}) {
        const int64_t B = 2, Di = 40;
        auto wide = torch::randn({B, T, 2 * Di});
        auto a = wide.narrow(2, 0, Di);
        auto carried = torch::randn({B, taps - 1, Di});
        auto weight = torch::randn({Di, taps}), bias = torch::randn({Di});
        QVERIFY(causal_conv_silu_cpu_applies(a, carried, weight, bias));
        auto [u, next] = causal_conv_silu_cpu(a, carried, weight, bias);
        auto padded = torch::cat({carried, a}, 1);
        auto conv = bias + padded.narrow(1, 0, T) * weight.select(1, 0);
        for (int64_t k = 1; k < taps; ++k) conv = conv + padded.narrow(1, k, T) * weight.select(1, k);
        QVERIFY2((u - torch::silu(conv)).abs().max().item<double>() < 1e-5, qPrintable(QString("taps %1, T %2").arg(taps).arg(T)));
        QVERIFY(torch::equal(next, padded.narrow(1, padded.size(1) - (taps - 1), taps - 1)));
      }
  }

  void memorySwitchAtRunTimeMatchesAMambaOnlyRun() {
    ModelConfig c = testing::tiny_config();
    MemMambaModel m = MemMambaModel::random(c, 2);
    torch::NoGradGuard no_grad;
    torch::manual_seed(1);
    auto tokens = torch::randint(0, c.vocab_size, {1, 30}, torch::kInt64);
    RunOptions on = m.default_options(), off = on;
    off.memory.enabled = false;
    auto with_memory = parallel_logits(m, tokens, on, 1 << 20);
    auto without = parallel_logits(m, tokens, off, 1 << 20);
    QVERIFY((with_memory - without).abs().max().item<double>() > 1e-3);  // memory changes the answer
    QVERIFY((step_logits(m, tokens, off) - without).abs().max().item<double>() < 1e-4);
    // A Mamba-only model built from the same weights (memory weights dropped) agrees.
    ModelConfig plain = c;
    plain.memory = false;
    Weights w;
    for (const ParamSpec& spec : parameter_specs(plain)) w.set(spec.name, m.weights()[spec.name]);
    MemMambaModel mamba(plain, w);
    QVERIFY((parallel_logits(mamba, tokens, mamba.default_options(), 1 << 20) - without).abs().max().item<double>() < 1e-6);
  }

  void fusionGainEqualsScaledFusionWeights() {
    ModelConfig c = testing::tiny_config();
    c.tau_retrieve = -1;  // every token reads, so the gain touches every position
    MemMambaModel m = MemMambaModel::random(c, 3);
    torch::NoGradGuard no_grad;
    torch::manual_seed(2);
    auto tokens = torch::randint(0, c.vocab_size, {1, 40}, torch::kInt64);
    RunOptions loud = m.default_options();
    loud.memory.fusion_gain = 3;
    Weights scaled;
    int scales = 0;
    for (const auto& [name, t] : m.weights().all()) {
      const bool is_scale = QString::fromStdString(name).endsWith(QStringLiteral("fusion.scale"));
      scales += is_scale;
      scaled.set(name, is_scale ? t * 3 : t);
    }
    QVERIFY(scales > 0);
    MemMambaModel louder_weights(c, scaled);
    auto by_gain = parallel_logits(m, tokens, loud, 1 << 20);
    auto by_weights = parallel_logits(louder_weights, tokens, louder_weights.default_options(), 1 << 20);
    QVERIFY((by_gain - by_weights).abs().max().item<double>() < 1e-4);
    QVERIFY((step_logits(m, tokens, loud) - by_gain).abs().max().item<double>() < 1e-4);
    QVERIFY((parallel_logits(m, tokens, m.default_options(), 1 << 20) - by_gain).abs().max().item<double>() > 1e-3);
    // Gain 0 silences the memory's read-out: every token still reads, and adds nothing, so the
    // logits are those of the same weights with memory off.
    RunOptions silent = m.default_options(), off = silent;
    silent.memory.fusion_gain = 0;
    off.memory.enabled = false;
    QVERIFY((parallel_logits(m, tokens, silent, 1 << 20) - parallel_logits(m, tokens, off, 1 << 20)).abs().max().item<double>() < 1e-5);
  }

  void overflowingPoolKeepsParallelAndStepEqualOverLongInputs() {
    ModelConfig c = testing::tiny_config();
    c.pool_slots = 3;
    MemMambaModel m = MemMambaModel::random(c, 8);
    torch::NoGradGuard no_grad;
    torch::manual_seed(4);
    auto tokens = torch::randint(0, c.vocab_size, {1, 200}, torch::kInt64);
    for (double tau2 : {-1.0, 0.05, 0.5}) {  // always, sometimes, rarely triggered
      RunOptions o = m.default_options();
      o.memory.tau_retrieve = tau2;
      const double diff = (parallel_logits(m, tokens, o, 64) - step_logits(m, tokens, o)).abs().max().item<double>();
      QVERIFY2(diff < 1e-4, qPrintable(QString("tau2 %1: %2").arg(tau2).arg(diff)));
    }
  }

  // The memory reads the whole batch at once (one bank, sequences one after another): a
  // sequence must read only its own notes. Each row of a batch equals that text run alone,
  // in chunks and in steps, with and without autograd (the dense reads).
  void batchRowsEqualTheirTextsAlone() {
    for (bool autograd : {false, true}) {
      ModelConfig c = testing::tiny_config();
      c.tau_note = 0.2;
      Weights w = Weights::random(c, 9);
      if (autograd) w.set_requires_grad(true);
      MemMambaModel m(c, w);
      torch::manual_seed(11);
      auto tokens = torch::randint(0, c.vocab_size, {3, 90}, torch::kInt64);
      RunOptions o = m.default_options();
      o.memory.tau_retrieve = 0.05;
      std::optional<torch::NoGradGuard> no_grad;
      if (!autograd) no_grad.emplace();
      auto together = parallel_logits(m, tokens, o, 32).detach();
      auto stepped = autograd ? torch::Tensor() : step_logits(m, tokens, o);
      for (int64_t b = 0; b < 3; ++b) {
        auto alone = parallel_logits(m, tokens.narrow(0, b, 1), o, 32).detach();
        const double diff = (together.narrow(0, b, 1) - alone).abs().max().item<double>();
        QVERIFY2(diff < 1e-4, qPrintable(QString("row %1 (autograd %2): %3").arg(b).arg(autograd).arg(diff)));
        if (stepped.defined()) QVERIFY((stepped.narrow(0, b, 1) - alone).abs().max().item<double>() < 1e-4);
      }
      RunState s = m.new_state(3);
      m.forward(tokens, s, o);
      QVERIFY2(s.pools[0]->notes_made(0) > 0 && s.pools[0]->notes_made(2) > 0, "the rows take notes");
    }
  }

  // The context mix (memory_context): summaries and queries read the last k layer inputs. Step
  // mode, chunks shorter than the mix and whole sequences agree; the untrained mix (the token
  // alone) is the paper's memory; trained taps change what the memory reads; gradients reach them.
  void contextMixKeepsParallelAndStepEqual() {
    ModelConfig c = testing::tiny_config();
    torch::manual_seed(4);
    auto tokens = torch::randint(0, c.vocab_size, {2, 40}, torch::kInt64);
    const MemMambaModel plain = MemMambaModel::random(c, 6);
    c.memory_context = 4;
    Weights w = Weights::random(c, 6);
    const MemMambaModel untrained(c, w);
    RunOptions o = untrained.default_options();
    torch::NoGradGuard no_grad;
    const auto plain_logits = parallel_logits(plain, tokens, o, 1 << 20);
    QVERIFY((parallel_logits(untrained, tokens, o, 1 << 20) - plain_logits).abs().max().item<double>() < 1e-5);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string name = layer_prefix(l) + "memory.context.weight";
      w.set(name, torch::randn(w[name].sizes()));
    }
    const MemMambaModel mixed(c, w);
    const auto par = parallel_logits(mixed, tokens, o, 1 << 20);
    QVERIFY2((par - plain_logits).abs().max().item<double>() > 1e-3, "the taps change what the memory reads");
    const double step_diff = (par - step_logits(mixed, tokens, o)).abs().max().item<double>();
    QVERIFY2(step_diff < 1e-4, qPrintable(QString("max |parallel - step| = %1").arg(step_diff)));
    for (int64_t chunk : {2, 5})
      QVERIFY2((parallel_logits(mixed, tokens, o, chunk) - par).abs().max().item<double>() < 1e-4,
               qPrintable(QString("chunks of %1").arg(chunk)));
  }

  // note_block_inputs (what `bench` walks the GPU pool with) gives the learned rule's
  // importances of a layer's input: the run's own, with a context mix of random taps.
  void noteImportancesAreTheRunsOwn() {
    ModelConfig c = testing::tiny_config();
    c.importance = ImportanceRule::Learned;
    c.memory_context = 3;
    Weights w = Weights::random(c, 9);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string name = layer_prefix(l) + "memory.context.weight";
      w.set(name, torch::randn(w[name].sizes()));
    }
    const MemMambaModel model(c, w);
    torch::manual_seed(5);
    auto tokens = torch::randint(0, c.vocab_size, {1, 40}, torch::kInt64);
    std::vector<torch::Tensor> inputs(static_cast<size_t>(c.n_layers)), importance(static_cast<size_t>(c.n_layers));
    inputs[0] = w["embedding.weight"].index_select(0, tokens[0]).unsqueeze(0);
    RunOptions o = model.default_options();
    o.chunk_tokens = 40;
    o.on_layer_output = [&](int64_t layer, int64_t, const torch::Tensor& x) {
      if (layer + 1 < c.n_layers) inputs[static_cast<size_t>(layer + 1)] = x.detach().clone();
    };
    o.on_importance = [&](int64_t layer, int64_t, const torch::Tensor& i) { importance[static_cast<size_t>(layer)] = i.detach().clone(); };
    torch::NoGradGuard no_grad;
    RunState state = model.new_state(1);
    model.forward(tokens, state, o);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const auto mine = model.note_block_inputs(l, inputs[static_cast<size_t>(l)], true).learned;
      const double diff = (mine.view({1, 40}) - importance[static_cast<size_t>(l)].view({1, 40})).abs().max().item<double>();
      QVERIFY2(diff < 1e-5, qPrintable(QString("layer %1: max |difference| %2").arg(l).arg(diff)));
    }
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, model.note_block_inputs(c.n_layers, inputs[0], true));
  }

  void gradientsReachTheNoteBlock() {
    struct Case {
      const char* rule;
      int64_t context;
    };
    for (const auto& [rule, context] : {Case{"learned", 1}, Case{"novelty", 1}, Case{"novelty", 4}}) {
      ModelConfig c = testing::tiny_config();
      c.importance = importance_rule_from_string(rule);
      c.memory_context = context;
      c.tau_note = std::string(rule) == "learned" ? 0.4 : 0.2;
      Weights w = Weights::random(c, 3);
      w.set_requires_grad(true);
      MemMambaModel m(c, w);
      torch::manual_seed(2);
      auto tokens = torch::randint(0, c.vocab_size, {2, 40}, torch::kInt64);
      RunState s = m.new_state(2);
      auto logits = m.logits(m.forward(tokens, s, m.default_options()));
      auto loss = torch::nn::functional::cross_entropy(logits.narrow(1, 0, 39).reshape({-1, c.vocab_size}),
                                                       tokens.narrow(1, 1, 39).reshape({-1}));
      loss.backward();
      auto grad_norm = [&](const std::string& name) {
        const auto& g = m.weights()[name].grad();
        return g.defined() ? g.norm().item<double>() : 0.0;
      };
      QVERIFY2(grad_norm("layers.0.note.summary.weight") > 0, rule);
      QVERIFY2(grad_norm("layers.1.token_attention.q.weight") > 0, rule);
      QVERIFY2(grad_norm("layers.1.layer_attention.k.weight") > 0, rule);
      QVERIFY2(grad_norm("layers.0.mixer.A_log") > 0, rule);
      if (c.memory_context > 1) QVERIFY2(grad_norm("layers.1.memory.context.weight") > 0, rule);
      if (std::string(rule) == "learned") QVERIFY(grad_norm("layers.0.note.importance.weight") > 0);
    }
  }

  void fastAttentionEqualsTheAutogradPath() {
    ModelConfig c = testing::tiny_config();
    Weights w = Weights::random(c, 6);
    MemMambaModel m(c, w);
    torch::manual_seed(3);
    auto tokens = torch::randint(0, c.vocab_size, {1, 50}, torch::kInt64);
    RunState s1 = m.new_state(1), s2 = m.new_state(1);
    torch::Tensor fast;
    {
      torch::NoGradGuard no_grad;
      fast = m.logits(m.forward(tokens, s1, m.default_options()));
    }
    Weights wg = Weights::random(c, 6);
    wg.set_requires_grad(true);
    MemMambaModel mg(c, wg);
    auto slow = mg.logits(mg.forward(tokens, s2, mg.default_options())).detach();
    QVERIFY((fast - slow).abs().max().item<double>() < 1e-4);
  }

  // Training reads the pool through matrix products over the bank entries seen; they must
  // give the per-row gathers' weights, context and gradients: empty slots, rows that see
  // nothing, entries seen by a few rows only, and the union's width.
  void denseSlotAttentionEqualsGathered() {
    struct Case { int64_t n, S, M, nb; };
    for (const Case& c : {Case{300, 16, 50, 120}, Case{64, 8, 200, 900}, Case{7, 3, 4, 5}}) {
      torch::manual_seed(c.n + c.M);
      auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
      auto q = torch::randn({c.n, c.S}, f64), k = torch::randn({c.nb, c.S}, f64), v = torch::randn({c.nb, c.S}, f64);
      auto lp = torch::log(torch::rand({c.nb}, f64).add(0.01));
      // Each row sees distinct entries (a note holds one slot), some slots empty.
      auto visible = std::get<1>(torch::rand({c.n, c.nb}).sort(1)).narrow(1, 0, c.M).contiguous();
      visible = torch::where(torch::rand({c.n, c.M}).lt(0.3), torch::full_like(visible, -1), visible);
      visible.narrow(0, 0, 2).fill_(-1);  // rows that see nothing
      std::vector<torch::Tensor> grads[2];
      torch::Tensor ctx[2], att[2];
      for (int path = 0; path < 2; ++path) {
        std::vector<torch::Tensor> in{q.clone().requires_grad_(), k.clone().requires_grad_(), v.clone().requires_grad_(),
                                      lp.clone().requires_grad_()};
        auto out = attend_slots(in[0], in[1], in[2], in[3], visible, 0.3,
                                path == 0 ? SlotAttentionPath::Dense : SlotAttentionPath::Gathered);
        (out.context.pow(2).sum() + (out.weights * torch::arange(c.M, f64)).sum()).backward();
        ctx[path] = out.context.detach();
        att[path] = out.weights.detach();
        for (auto& t : in) grads[path].push_back(t.grad());
      }
      QVERIFY((ctx[0] - ctx[1]).abs().max().item<double>() < 1e-12);
      QVERIFY((att[0] - att[1]).abs().max().item<double>() < 1e-12);
      QVERIFY(att[0].narrow(0, 0, 2).abs().sum().item<double>() == 0);
      for (size_t i = 0; i < 4; ++i)
        QVERIFY2((grads[0][i] - grads[1][i]).abs().max().item<double>() < 1e-10, qPrintable(QString("input %1").arg(i)));
    }
  }

  void loopMixerStepEqualsTheTensorOpsStep() {
    ModelConfig c = testing::tiny_config();
    Weights w = Weights::random(c, 12);
    torch::NoGradGuard no_grad;
    MixerState a = new_mixer_state(c, 3, torch::kCPU), b = new_mixer_state(c, 3, torch::kCPU);
    torch::manual_seed(5);
    for (int t = 0; t < 6; ++t) {
      auto x = torch::randn({3, c.d_model});
      auto fast = mixer_step(c, w, 1, x, a);
      auto ops = mixer_step_tensor_ops(c, w, 1, x, b);
      QVERIFY((fast.x_next - ops.x_next).abs().max().item<double>() < 1e-5);
      QVERIFY((fast.dt - ops.dt).abs().max().item<double>() < 1e-5);
    }
    QVERIFY((a.ssm - b.ssm).abs().max().item<double>() < 1e-5);
    QVERIFY((a.conv - b.conv).abs().max().item<double>() < 1e-6);
  }

  void refusesBadTokens() {
    MemMambaModel m = MemMambaModel::random(testing::tiny_config(), 1);
    RunState s = m.new_state(1);
    auto bad = torch::tensor({{1, 2, 64}}, torch::kInt64);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, m.forward(bad, s, m.default_options()));
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, m.step(torch::tensor({-1}, torch::kInt64), s, m.default_options()));
  }
};

QTEST_APPLESS_MAIN(TestModelEquivalence)
#include "test_model_equivalence.moc"
