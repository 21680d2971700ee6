#include <torch/torch.h>

#include <QtTest/QtTest>

#include "model/selective_scan.h"
#include "model/runtime.h"

using namespace memmamba;

namespace {
struct Inputs {
  torch::Tensor u, delta, A, B, C, D, h0;
};

Inputs random_inputs(int64_t batch, int64_t T, int64_t Di, int64_t N, torch::ScalarType type, uint64_t seed) {
  torch::manual_seed(seed);
  auto o = torch::TensorOptions().dtype(type);
  Inputs in;
  in.u = torch::randn({batch, T, Di}, o);
  in.delta = torch::nn::functional::softplus(torch::randn({batch, T, Di}, o) - 2.0);
  in.A = -torch::exp(torch::randn({Di, N}, o) * 0.5);
  in.B = torch::randn({batch, T, N}, o);
  in.C = torch::randn({batch, T, N}, o);
  in.D = torch::randn({Di}, o);
  in.h0 = torch::randn({batch, Di, N}, o);
  return in;
}

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max() / (b.to(torch::kFloat64).abs().max() + 1e-12))
      .item<double>();
}
}  // namespace

class TestSelectiveScan : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void initTestCase() { configure_cpu_runtime(); }

  void matchesReference_data() {
    QTest::addColumn<int>("batch");
    QTest::addColumn<int>("length");
    QTest::addColumn<int>("channels");
    QTest::addColumn<int>("state");
    QTest::addColumn<bool>("withInitialState");
    QTest::newRow("one block") << 1 << 37 << 16 << 4 << false;
    QTest::newRow("ragged channels") << 2 << 65 << 21 << 16 << true;
    QTest::newRow("several blocks") << 1 << 200 << 48 << 8 << true;
    QTest::newRow("one token") << 3 << 1 << 5 << 3 << true;
  }
  void matchesReference() {
    QFETCH(int, batch);
    QFETCH(int, length);
    QFETCH(int, channels);
    QFETCH(int, state);
    QFETCH(bool, withInitialState);
    Inputs in = random_inputs(batch, length, channels, state, torch::kFloat32, 7);
    auto h0 = withInitialState ? in.h0 : torch::Tensor();
    auto fast = selective_scan(in.u, in.delta, in.A, in.B, in.C, in.D, h0);
    auto ref = selective_scan_reference(in.u.to(torch::kFloat64), in.delta.to(torch::kFloat64), in.A.to(torch::kFloat64),
                                        in.B.to(torch::kFloat64), in.C.to(torch::kFloat64), in.D.to(torch::kFloat64),
                                        withInitialState ? in.h0.to(torch::kFloat64) : torch::Tensor());
    QVERIFY2(max_rel(fast.y, ref.y) < 1e-5, qPrintable(QString::number(max_rel(fast.y, ref.y))));
    QVERIFY(max_rel(fast.last_state, ref.last_state) < 1e-5);
    QCOMPARE(fast.last_state.scalar_type(), torch::kFloat32);
  }

  void chunksCarryTheState() {
    Inputs in = random_inputs(2, 90, 20, 6, torch::kFloat32, 3);
    auto whole = selective_scan(in.u, in.delta, in.A, in.B, in.C, in.D, in.h0);
    auto first = selective_scan(in.u.narrow(1, 0, 41), in.delta.narrow(1, 0, 41), in.A, in.B.narrow(1, 0, 41),
                                in.C.narrow(1, 0, 41), in.D, in.h0);
    auto second = selective_scan(in.u.narrow(1, 41, 49), in.delta.narrow(1, 41, 49), in.A, in.B.narrow(1, 41, 49),
                                 in.C.narrow(1, 41, 49), in.D, first.last_state);
    QVERIFY(max_rel(torch::cat({first.y, second.y}, 1), whole.y) < 1e-6);
    QVERIFY(max_rel(second.last_state, whole.last_state) < 1e-6);
  }

  void gradientsMatchAutogradThroughTheReference() {
    Inputs in = random_inputs(2, 23, 19, 5, torch::kFloat64, 11);
    std::vector<torch::Tensor> ref_leaves, fast_leaves;
    for (auto* t : {&in.u, &in.delta, &in.A, &in.B, &in.C, &in.D, &in.h0}) {
      ref_leaves.push_back(t->clone().set_requires_grad(true));
      fast_leaves.push_back(t->to(torch::kFloat32).clone().set_requires_grad(true));
    }
    auto weights_y = torch::randn({2, 23, 19}, torch::kFloat64);
    auto weights_h = torch::randn({2, 19, 5}, torch::kFloat64);
    auto ref = selective_scan_reference(ref_leaves[0], ref_leaves[1], ref_leaves[2], ref_leaves[3], ref_leaves[4],
                                        ref_leaves[5], ref_leaves[6]);
    ((ref.y * weights_y).sum() + (ref.last_state * weights_h).sum()).backward();
    auto fast = selective_scan(fast_leaves[0], fast_leaves[1], fast_leaves[2], fast_leaves[3], fast_leaves[4],
                               fast_leaves[5], fast_leaves[6]);
    ((fast.y * weights_y.to(torch::kFloat32)).sum() + (fast.last_state * weights_h.to(torch::kFloat32)).sum()).backward();
    const char* names[] = {"u", "delta", "A", "B", "C", "D", "h0"};
    for (size_t i = 0; i < ref_leaves.size(); ++i) {
      QVERIFY2(fast_leaves[i].grad().defined(), names[i]);
      const double err = max_rel(fast_leaves[i].grad(), ref_leaves[i].grad());
      QVERIFY2(err < 1e-4, qPrintable(QString("%1: %2").arg(names[i]).arg(err)));
    }
  }

  void refusesBadShapes() {
    Inputs in = random_inputs(1, 8, 4, 2, torch::kFloat32, 1);
    QVERIFY_THROWS_EXCEPTION(c10::Error, selective_scan(in.u, in.delta.narrow(1, 0, 4), in.A, in.B, in.C, in.D));
    QVERIFY_THROWS_EXCEPTION(c10::Error, selective_scan(in.u, in.delta, in.A.t(), in.B, in.C, in.D));
    QVERIFY_THROWS_EXCEPTION(c10::Error, selective_scan(in.u[0], in.delta, in.A, in.B, in.C, in.D));
  }
};

QTEST_APPLESS_MAIN(TestSelectiveScan)
#include "test_selective_scan.moc"
