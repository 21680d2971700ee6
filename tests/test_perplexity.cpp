#include <torch/torch.h>

#include <QtTest/QtTest>

#include "model/eval/perplexity.h"
#include "model/selective_scan.h"
#include "model/runtime.h"
#include "test_helpers.h"

using namespace memmamba;

class TestPerplexity : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { configure_cpu_runtime(); }

  void matchesADirectComputation() {
    ModelConfig c = testing::tiny_config();
    MemMambaModel m = MemMambaModel::random(c, 3);
    torch::manual_seed(1);
    auto t = torch::randint(0, c.vocab_size, {600}, torch::kInt32);
    std::vector<int32_t> tokens(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + 600);
    eval::PerplexityOptions o;
    o.lengths = {128, 256, 1000};
    o.windows = 2;
    o.scored = 10;
    o.run = m.default_options();
    o.run.chunk_tokens = 50;  // windows cross chunk boundaries
    Json r = eval::perplexity_by_length(m, tokens, o);
    const auto& rows = r.at("lengths").as_array();
    QCOMPARE(rows[0].at("windows").as_int(), int64_t(2));
    QCOMPARE(rows[1].at("windows").as_int(), int64_t(2));
    QCOMPARE(rows[2].at("windows").as_int(), int64_t(0));  // longer than the book
    // Window 1 of length 128: tokens [128, 256), scored targets 246..255.
    torch::NoGradGuard ng;
    RunState s = m.new_state(1);
    auto window = t.narrow(0, 128, 128).to(torch::kInt64).view({1, 128});
    auto logp = torch::log_softmax(m.logits(m.forward(window, s, m.default_options()))[0], -1);
    double nll = 0;
    for (int64_t p = 117; p < 127; ++p) nll -= logp[p][window[0][p + 1].item<int64_t>()].item<double>();
    const double reported = rows[0].at("window_nll").as_array()[1].as_double();
    QVERIFY2(std::fabs(reported - nll / 10) < 1e-4, qPrintable(QString("%1 vs %2").arg(reported).arg(nll / 10)));
    const double mean = (rows[0].at("window_nll").as_array()[0].as_double() + reported) / 2;
    QVERIFY(std::fabs(rows[0].at("perplexity").as_double() - std::exp(mean)) < 1e-3 * std::exp(mean));

    // By position: the two 256-token windows (the longest that fits) score positions 128 and
    // 256 alike; position 128 of window 0 is tokens [0, 128) with the same targets as row 0's
    // window 0, and position 256 is exactly row 1.
    QCOMPARE(r.at("positions_window_length").as_int(), int64_t(256));
    const auto& positions = r.at("positions").as_array();
    QCOMPARE(positions.size(), size_t{2});
    QCOMPARE(positions[0].at("position").as_int(), int64_t(128));
    QCOMPARE(positions[0].at("windows").as_int(), int64_t(2));
    QVERIFY(std::fabs(positions[1].at("perplexity").as_double() - rows[1].at("perplexity").as_double()) <
            1e-6 * rows[1].at("perplexity").as_double());
    RunState s0 = m.new_state(1), s1 = m.new_state(1);
    double nll128 = 0;
    for (int64_t start : {0, 256}) {
      RunState& st = start == 0 ? s0 : s1;
      auto w = t.narrow(0, start, 128).to(torch::kInt64).view({1, 128});
      auto lp = torch::log_softmax(m.logits(m.forward(w, st, m.default_options()))[0], -1);
      for (int64_t p = 117; p < 127; ++p) nll128 -= lp[p][w[0][p + 1].item<int64_t>()].item<double>();
    }
    const double expected = std::exp(nll128 / 20);
    QVERIFY2(std::fabs(positions[0].at("perplexity").as_double() - expected) < 1e-3 * expected,
             qPrintable(QString("%1 vs %2").arg(positions[0].at("perplexity").as_double()).arg(expected)));
    QVERIFY(!r.contains("by_context"));  // only when asked

    // By context: the targets of the 256-token windows (tokens 246..255 and 502..511) scored
    // after 128 tokens of context, [128, 256) and [384, 512); after 256 they are row 1.
    o.by_context = true;
    Json rc = eval::perplexity_by_length(m, tokens, o);
    const auto& by_context = rc.at("by_context").as_array();
    QCOMPARE(by_context.size(), size_t{2});
    QCOMPARE(by_context[0].at("context").as_int(), int64_t(128));
    QCOMPARE(by_context[0].at("scored_tokens").as_int(), int64_t(20));
    double nll_context = reported * 10;  // row 0's window 1 is [128, 256)
    RunState s2 = m.new_state(1);
    auto late = t.narrow(0, 384, 128).to(torch::kInt64).view({1, 128});
    auto lp = torch::log_softmax(m.logits(m.forward(late, s2, m.default_options()))[0], -1);
    for (int64_t p = 117; p < 127; ++p) nll_context -= lp[p][late[0][p + 1].item<int64_t>()].item<double>();
    const double expected_context = std::exp(nll_context / 20);
    QVERIFY2(std::fabs(by_context[0].at("perplexity").as_double() - expected_context) < 1e-3 * expected_context,
             qPrintable(QString("%1 vs %2").arg(by_context[0].at("perplexity").as_double()).arg(expected_context)));
    QVERIFY(std::fabs(by_context[1].at("perplexity").as_double() - rows[1].at("perplexity").as_double()) <
            1e-6 * rows[1].at("perplexity").as_double());
  }

  void refusesBadOptions() {
    MemMambaModel m = MemMambaModel::random(testing::tiny_config(), 3);
    eval::PerplexityOptions o;
    o.lengths = {50};
    o.scored = 100;
    o.run = m.default_options();
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, eval::perplexity_by_length(m, std::vector<int32_t>(200, 1), o));
  }
};

QTEST_APPLESS_MAIN(TestPerplexity)
#include "test_perplexity.moc"
