#include <torch/torch.h>

#include <QtTest/QtTest>

#include "model/eval/fidelity.h"
#include "model/selective_scan.h"
#include "model/runtime.h"
#include "test_helpers.h"

using namespace memmamba;

class TestFidelity : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { configure_cpu_runtime(); }

  void etmfMatchesAPerPositionComputation() {
    torch::manual_seed(2);
    auto E = torch::randn({30, 6});
    auto H = torch::randn({20, 6});
    std::vector<int32_t> tokens;
    for (int i = 0; i < 20; ++i) tokens.push_back((i * 7) % 30);
    for (int64_t delta : {0, 3}) {
      double sum = 0;
      for (int64_t i = 0; i + delta < 20; ++i) {
        auto p = torch::softmax(torch::mv(E, H[i + delta]), 0);
        auto recon = torch::mv(E.t(), p);
        auto t = E[tokens[i]];
        sum += (torch::dot(t, recon) / (t.norm() * recon.norm())).item<double>();
      }
      QVERIFY(std::fabs(eval::etmf(E, H, tokens, delta) - sum / (20 - delta)) < 1e-5);
    }
    // A perfect predictor reconstructs well: one-hot logits on the right token.
    auto sharp = E.index_select(0, torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.end()))) * 1000.0;
    QVERIFY(eval::etmf(E, sharp, tokens, 0) > eval::etmf(E, H, tokens, 0));
  }

  void ridgeScoreMatchesLeastSquares() {
    torch::manual_seed(3);
    auto X = torch::randn({200, 8}, torch::kFloat64);
    auto M = torch::randn({8, 8}, torch::kFloat64);
    auto Y = torch::matmul(X, M) + 0.1 * torch::randn({200, 8}, torch::kFloat64);
    const double lambda = 1e-4;
    // Ridge as plain least squares on the augmented system [X; sqrt(lambda) I] W = [Y; 0].
    auto Xa = torch::cat({X, std::sqrt(lambda) * torch::eye(8, torch::kFloat64)}, 0);
    auto Ya = torch::cat({Y, torch::zeros({8, 8}, torch::kFloat64)}, 0);
    auto W = std::get<0>(at::linalg_lstsq(Xa, Ya));
    const double expected = 1.0 - (Y - torch::matmul(X, W)).norm().item<double>() / (X.norm().item<double>() + 1e-6);
    QVERIFY(std::fabs(eval::ridge_reconstruction_score(X, Y, lambda) - expected) < 1e-9);
    // Unrelated states score lower than linearly related ones.
    QVERIFY(eval::ridge_reconstruction_score(X, torch::randn({200, 8}, torch::kFloat64), lambda) < expected);
  }

  void reportsEveryMetricOnAModel() {
    ModelConfig c = testing::tiny_config();
    c.n_layers = 6;
    c.cross_layer_groups = 2;
    MemMambaModel m = MemMambaModel::random(c, 4);
    std::vector<int32_t> tokens;
    for (int i = 0; i < 120; ++i) tokens.push_back((i * 13) % c.vocab_size);
    eval::FidelityOptions o;
    o.run = m.default_options();
    o.run.chunk_tokens = 50;
    Json r = eval::memory_fidelity(m, tokens, o);
    QVERIFY(r.at("etmf").is_number());
    QVERIFY(r.at("etmf_delta").at("32").is_number());
    QCOMPARE(r.at("eclmf").at("2").at("per_layer").as_array().size(), size_t(4));
    QCOMPARE(r.at("eclmf").at("5").at("per_layer").as_array().size(), size_t(1));
    QVERIFY(r.at("eclmf").at("10").is_null());
    // Per-layer ETMF reads each layer through the final norm and head: the last layer's
    // value is the model's own ETMF, and every value is a mean cosine.
    const Json::Array& per_layer = r.at("etmf_per_layer").as_array();
    QCOMPARE(per_layer.size(), size_t(6));
    QVERIFY(std::abs(per_layer.back().as_double() - r.at("etmf").as_double()) < 1e-5);
    for (const Json& v : per_layer) QVERIFY(v.as_double() >= -1.0 && v.as_double() <= 1.0);
    QVERIFY(per_layer.front().as_double() != per_layer.back().as_double());
  }
};

QTEST_APPLESS_MAIN(TestFidelity)
#include "test_fidelity.moc"
