#include <torch/torch.h>

#include <QtTest/QtTest>

#include "model/eval/transformer_baseline.h"
#include "test_helpers.h"

using namespace memmamba;

class TestTransformerBaseline : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void blockedAttentionEqualsMaskedSoftmax() {
    torch::manual_seed(1);
    auto q = torch::randn({2, 10, 4}), k = torch::randn({2, 10, 4}), v = torch::randn({2, 10, 4});
    auto scores = torch::matmul(q, k.transpose(1, 2)) / 2.0;
    auto mask = torch::ones({10, 10}).triu(1).to(torch::kBool);
    auto expected = torch::matmul(torch::softmax(scores.masked_fill(mask, -INFINITY), -1), v);
    for (int64_t block : {1, 3, 10, 64})
      QVERIFY((eval::causal_attention(q, k, v, block) - expected).abs().max().item<double>() < 1e-5);
  }

  void isCausal() {
    ModelConfig c = testing::tiny_config();
    c.d_model = 128;  // two heads
    eval::TransformerBaseline t(c, 3);
    auto a = torch::randint(0, c.vocab_size, {1, 20}, torch::kInt64);
    auto b = a.clone();
    b[0][15] = (b[0][15].item<int64_t>() + 1) % c.vocab_size;
    auto ha = t.forward(a), hb = t.forward(b);
    QVERIFY((ha.narrow(1, 0, 15) - hb.narrow(1, 0, 15)).abs().max().item<double>() < 1e-6);
    QVERIFY((ha.narrow(1, 15, 5) - hb.narrow(1, 15, 5)).abs().max().item<double>() > 1e-4);
  }
};

QTEST_APPLESS_MAIN(TestTransformerBaseline)
#include "test_transformer_baseline.moc"
