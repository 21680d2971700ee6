// DeciMamba's decimation: the kept set from hand-made scores, the number kept per stage, a
// budget above the context changes nothing, kept tokens stay in order, the protected tail is
// never dropped, and a passkey case says whether its key survived.
#include <torch/torch.h>

#include <QtTest/QtTest>

#include <cmath>

#include "model/decimation.h"
#include "model/eval/fidelity.h"
#include "model/memmamba.h"
#include "model/runner.h"
#include "model/runtime.h"
#include "tests/test_helpers.h"

using namespace memmamba;

namespace {

ModelConfig mamba_only() {
  ModelConfig c = testing::tiny_config();
  c.memory = false;
  return c;
}

std::vector<int32_t> pattern(int64_t n, int64_t vocab) {
  std::vector<int32_t> out;
  for (int64_t t = 0; t < n; ++t) out.push_back(static_cast<int32_t>((t * 13 + t / 7) % vocab));
  return out;
}

Trace traced(const MemMambaModel& model, const std::vector<int32_t>& tokens, const DecimationSettings& d) {
  TraceRunRequest req;
  req.tokens = tokens;
  req.options = model.default_options();
  req.options.decimation = d;
  return trace_tokens(model, std::move(req));
}

std::vector<int64_t> scanned(const Trace& t, int layer) {
  std::vector<int64_t> out;
  for (int64_t p = 0; p < t.length(); ++p)
    if (!(t.layers[layer].flags[p] & kDecimated)) out.push_back(p);
  return out;
}

}  // namespace

class TestDecimation : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { configure_cpu_runtime(); }

  void handMadeScoresGiveTheExpectedSet() {
    auto scores = torch::tensor({0.1f, 0.9f, 0.3f, 0.8f, 0.2f, 0.7f, 0.05f, 0.6f, 0.4f, 0.5f}).view({1, 10});
    // Two protected at the end (8, 9), then the three highest of the rest: 1 (0.9), 3, 5.
    auto kept = decimation_keep(scores, 5, 2);
    QCOMPARE(kept.sizes().vec(), (std::vector<int64_t>{1, 5}));
    const std::vector<int64_t> expected{1, 3, 5, 8, 9};
    for (int i = 0; i < 5; ++i) QCOMPARE(kept[0][i].item<int64_t>(), expected[i]);
    // No tail: the five highest, in order. Ties go to the earlier position.
    kept = decimation_keep(scores, 5, 0);
    const std::vector<int64_t> top{1, 3, 5, 7, 9};
    for (int i = 0; i < 5; ++i) QCOMPARE(kept[0][i].item<int64_t>(), top[i]);
    auto ties = decimation_keep(torch::ones({1, 6}), 3, 0);
    for (int i = 0; i < 3; ++i) QCOMPARE(ties[0][i].item<int64_t>(), int64_t{i});
    // A tail as long as the budget: the tail alone.
    kept = decimation_keep(scores, 2, 4);
    QCOMPARE(kept[0][0].item<int64_t>(), int64_t{8});
    QCOMPARE(kept[0][1].item<int64_t>(), int64_t{9});
    // Keeping everything keeps everything.
    QCOMPARE(decimation_keep(scores, 10, 2).size(1), int64_t{10});
  }

  void keepCountFollowsTheSchedule() {
    DecimationSettings d;  // L_base 2000, beta 0.5, min 20
    QCOMPARE(d.keep_count(100000, 0), int64_t{2000});
    QCOMPARE(d.keep_count(2000, 1), int64_t{1000});
    QCOMPARE(d.keep_count(500, 0), int64_t{500});   // never more than the sequence
    QCOMPARE(d.keep_count(1000, 10), int64_t{20});  // 2000 / 1024 < 20: the minimum
    QCOMPARE(d.keep_count(10, 10), int64_t{10});
    ModelConfig c = mamba_only();
    d.layers = {2, 1};
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, d.validate(c));
    d.layers = {c.n_layers};
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, d.validate(c));
    d.layers = {1};
    d.beta = 0;
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, d.validate(c));
  }

  void aBudgetAboveTheContextEqualsThePlainModel() {
    torch::NoGradGuard no_grad;
    const MemMambaModel model = MemMambaModel::random(mamba_only(), 5);
    auto tokens = torch::tensor(std::vector<int64_t>(200, 3), torch::kInt64).view({1, 200});
    for (int64_t i = 0; i < 200; ++i) tokens[0][i] = (i * 7) % model.config().vocab_size;
    RunOptions plain = model.default_options();
    RunState a = model.new_state(1);
    auto h_plain = model.forward(tokens, a, plain);
    RunOptions deci = plain;
    deci.decimation.layers = {1, 2};
    deci.decimation.base_length = 1 << 20;
    RunState b = model.new_state(1);
    auto h_deci = model.forward(tokens, b, deci);
    QVERIFY(torch::equal(h_plain, h_deci));
    QVERIFY(torch::equal(a.mixers[3].ssm, b.mixers[3].ssm));
  }

  void keptTokensStayInOrderAndTheTailStays() {
    const MemMambaModel model = MemMambaModel::random(mamba_only(), 5);
    const auto tokens = pattern(300, model.config().vocab_size);
    DecimationSettings d;
    d.layers = {1, 2};
    d.base_length = 80;
    d.beta = 0.5;
    d.min_length = 10;
    d.protected_tail = 12;
    const Trace t = traced(model, tokens, d);
    QCOMPARE(scanned(t, 0).size(), size_t{300});  // before the first decimating layer: all
    const auto first = scanned(t, 1), second = scanned(t, 2), last = scanned(t, 3);
    QCOMPARE(static_cast<int64_t>(first.size()), d.keep_count(300, 0));   // 80
    QCOMPARE(static_cast<int64_t>(second.size()), d.keep_count(80, 1));   // 40
    QCOMPARE(last, second);                                               // no later drops
    for (size_t i = 0; i < second.size(); ++i)
      QVERIFY(std::find(first.begin(), first.end(), second[i]) != first.end());  // a subset
    for (int64_t p = 300 - d.protected_tail; p < 300; ++p)
      for (int l = 0; l < 4; ++l) QVERIFY(!(t.layers[l].flags[p] & kDecimated));
    // Dropped tokens have no loss; the kept ones (and the tail) do.
    for (int64_t p = 0; p + 1 < 300; ++p) {
      const bool kept = std::find(last.begin(), last.end(), p) != last.end();
      QCOMPARE(std::isfinite(t.loss[p]), kept);
    }
    QVERIFY(t.run_info.contains("decimation"));
    // The kept set is the top of the step-size norm: a plain run's layer-1 dt gives the same set.
    torch::NoGradGuard no_grad;
    RunOptions plain = model.default_options();
    torch::Tensor layer1_input;
    plain.on_layer_output = [&](int64_t layer, int64_t, const torch::Tensor& x) {
      if (layer == 0) layer1_input = x.clone();
    };
    RunState s = model.new_state(1);
    std::vector<int64_t> ids(tokens.begin(), tokens.end());
    model.forward(torch::tensor(ids, torch::kInt64).view({1, 300}), s, plain);
    MixerState fresh = new_mixer_state(model.config(), 1, model.device());
    auto dt = mixer_forward(model.config(), model.weights(), 1, layer1_input, fresh).dt;
    auto expect = decimation_keep(dt.norm(2, -1), 80, 12);
    for (size_t i = 0; i < first.size(); ++i) QCOMPARE(expect[0][static_cast<int64_t>(i)].item<int64_t>(), first[i]);
  }

  // A long context runs chunk by chunk up to the first decimating layer and through it in two
  // passes (score every token, then scan the kept ones): the same kept tokens in every layer
  // and the same hidden states as one pass over the whole context, including chunks whose
  // tokens the layer dropped entirely and a decimating layer 0.
  void chunkedDecimationEqualsOnePass() {
    torch::NoGradGuard no_grad;
    const MemMambaModel model = MemMambaModel::random(mamba_only(), 8);
    const auto tokens = pattern(700, model.config().vocab_size);
    std::vector<int64_t> ids(tokens.begin(), tokens.end());
    const auto input = torch::tensor(ids, torch::kInt64).view({1, 700});
    for (const std::vector<int64_t>& layers : {std::vector<int64_t>{1, 2}, std::vector<int64_t>{0}, std::vector<int64_t>{2}}) {
      DecimationSettings d;
      d.layers = layers;
      d.base_length = 60;  // about one token in twelve: many 32-token chunks keep none
      d.min_length = 10;
      d.protected_tail = 5;
      auto run = [&](int64_t chunk, std::vector<std::vector<int64_t>>* kept) {
        RunOptions o = model.default_options();
        o.decimation = d;
        o.chunk_tokens = chunk;
        RunState s = model.new_state(1);
        auto h = model.forward(input, s, o);
        TraceRunRequest req;
        req.tokens = tokens;
        req.options = o;
        const Trace t = trace_tokens(model, std::move(req));
        for (int l = 0; l < model.config().n_layers; ++l) kept->push_back(scanned(t, l));
        return std::pair{h, s.mixers[3].ssm.clone()};
      };
      std::vector<std::vector<int64_t>> whole_kept, chunked_kept;
      const auto [h_whole, state_whole] = run(1 << 20, &whole_kept);
      const auto [h_chunked, state_chunked] = run(32, &chunked_kept);
      QVERIFY(chunked_kept == whole_kept);
      QCOMPARE(static_cast<int64_t>(whole_kept[static_cast<size_t>(layers[0])].size()), int64_t{60});
      auto finite = torch::isfinite(h_whole);
      QVERIFY(torch::equal(finite, torch::isfinite(h_chunked)));
      QVERIFY((h_whole.masked_select(finite) - h_chunked.masked_select(finite)).abs().max().item<double>() < 1e-4);
      QVERIFY((state_whole - state_chunked).abs().max().item<double>() < 1e-4);
    }
  }

  void decimationNeedsAMambaOnlyRunFromTheStart() {
    const MemMambaModel with_memory = MemMambaModel::random(testing::tiny_config(), 5);
    RunOptions o = with_memory.default_options();
    o.decimation.layers = {1};
    RunState s = with_memory.new_state(1);
    auto tokens = torch::zeros({1, 30}, torch::kInt64);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, with_memory.forward(tokens, s, o));
    o.memory.enabled = false;  // the memory off: allowed
    with_memory.forward(tokens, s, o);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, with_memory.forward(tokens, s, o));  // not from the start
    // Generation after a decimated prompt runs in step mode on the states it left.
    const MemMambaModel mamba = MemMambaModel::random(mamba_only(), 5);
    RunOptions g = mamba.default_options();
    g.decimation.layers = {1};
    g.decimation.base_length = 20;
    const auto out = generate_greedy(mamba, std::vector<int64_t>(100, 5), 4, g);
    QCOMPARE(out.size(), size_t{4});
    // Fidelity reads every layer at every token: a decimated run is refused with a reason
    // (it once failed deep inside torch.cat).
    eval::FidelityOptions fidelity;
    fidelity.run = g;
    try {
      eval::memory_fidelity(mamba, pattern(60, mamba.config().vocab_size), fidelity);
      QFAIL("fidelity ran on a decimated run");
    } catch (const std::invalid_argument& e) {
      QVERIFY2(QString::fromUtf8(e.what()).contains(QStringLiteral("decimated")), e.what());
    }
    fidelity.run.decimation = DecimationSettings();
    QVERIFY(eval::memory_fidelity(mamba, pattern(60, mamba.config().vocab_size), fidelity).contains("etmf_per_layer"));
  }
};

QTEST_MAIN(TestDecimation)
#include "test_decimation.moc"
