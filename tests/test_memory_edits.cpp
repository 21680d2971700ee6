// Interventions on the memory (model/memory/memory_edits.h): each edit kind does what it
// says in the trace, parallel and step mode agree under every kind, an empty edit list
// changes nothing, and bad edit files are refused with a message.
#include <QtTest/QtTest>

#include <torch/torch.h>

#include <cstring>

#include "model/file_io.h"
#include "model/memmamba.h"
#include "model/memory/memory_edits.h"
#include "model/runner.h"
#include "model/selective_scan.h"
#include "model/runtime.h"
#include "tests/test_helpers.h"

using namespace memmamba;

namespace {

constexpr int64_t kTokens = 80;

std::vector<int32_t> tokens_of(const ModelConfig& c) {
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < kTokens; ++t) ids.push_back(static_cast<int32_t>((t * 29 + t / 5 + 3) % c.vocab_size));
  return ids;
}

Trace traced(const MemMambaModel& m, const std::shared_ptr<const MemoryEdits>& edits, int64_t chunk = 1 << 20) {
  TraceRunRequest req;
  req.tokens = tokens_of(m.config());
  req.options = m.default_options();
  req.options.chunk_tokens = chunk;
  req.options.edits = edits;
  return trace_tokens(m, std::move(req));
}

std::shared_ptr<const MemoryEdits> edits_of(const std::string& json, const ModelConfig& c) {
  return std::make_shared<const MemoryEdits>(MemoryEdits::parse(Json::parse(json), c, kTokens));
}

torch::Tensor parallel_logits(const MemMambaModel& m, const RunOptions& o, int64_t chunk) {
  RunState s = m.new_state(1);
  RunOptions run = o;
  run.chunk_tokens = chunk;
  std::vector<int64_t> ids;
  for (int32_t t : tokens_of(m.config())) ids.push_back(t);
  return m.logits(m.forward(torch::tensor(ids, torch::kInt64).view({1, -1}), s, run));
}

torch::Tensor step_logits(const MemMambaModel& m, const RunOptions& o) {
  RunState s = m.new_state(1);
  std::vector<torch::Tensor> out;
  for (int32_t t : tokens_of(m.config())) out.push_back(m.step(torch::tensor({static_cast<int64_t>(t)}, torch::kInt64), s, o));
  return torch::stack(out, 1);
}

// The trace's note index of layer-local note `local` of `layer`, or -1.
int64_t note_index(const Trace& t, int32_t layer, int64_t local) {
  for (size_t i = 0; i < t.notes.size(); ++i)
    if (t.notes[i].layer == layer && t.notes[i].local_id == local) return static_cast<int64_t>(i);
  return -1;
}

bool in_pool(const Trace& t, int32_t layer, int64_t position, int64_t note) {
  for (int64_t n : t.pool_at(layer, position))
    if (n == note) return true;
  return false;
}

}  // namespace

class TestMemoryEdits : public QObject {
  Q_OBJECT
  ModelConfig config_ = testing::tiny_config();
  std::unique_ptr<MemMambaModel> model_;
  Trace base_;

 private Q_SLOTS:
  void initTestCase() {
    configure_cpu_runtime();
    model_ = std::make_unique<MemMambaModel>(MemMambaModel::random(config_, 5));
    torch::NoGradGuard no_grad;
    base_ = traced(*model_, nullptr);
    // The case exercises the pool: evictions in layer 0.
    int64_t evictions = 0;
    for (const PoolEvent& e : base_.events) evictions += e.layer == 0 && e.kind == 1;
    QVERIFY2(evictions > 2, qPrintable(QString("only %1 evictions").arg(evictions)));
  }

  void anEmptyEditListChangesNothing() {
    torch::NoGradGuard no_grad;
    const Trace t = traced(*model_, std::make_shared<const MemoryEdits>());
    QCOMPARE(t.loss.size(), base_.loss.size());
    QVERIFY(std::memcmp(t.loss.data(), base_.loss.data(), t.loss.size() * sizeof(float)) == 0);  // bit for bit (NaN at the end)
    QCOMPARE(t.events.size(), base_.events.size());
  }

  void droppingEveryNoteIsTheMemoryOff() {
    torch::NoGradGuard no_grad;
    RunOptions o = model_->default_options();
    o.edits = edits_of(R"([{"kind": "drop_from", "begin": 0, "end": 80}])", config_);
    RunOptions off = model_->default_options();
    off.memory.enabled = false;
    const auto dropped = parallel_logits(*model_, o, 1 << 20), without = parallel_logits(*model_, off, 1 << 20);
    QVERIFY(torch::equal(dropped, without));  // nothing kept: every read adds exactly 0
    const auto with_memory = parallel_logits(*model_, model_->default_options(), 1 << 20);
    QVERIFY((with_memory - without).abs().max().item<double>() > 1e-3);  // and the memory did matter
  }

  void aPinnedNoteSurvivesItsEviction() {
    torch::NoGradGuard no_grad;
    int64_t victim = -1, evicted_at = -1;
    for (const PoolEvent& e : base_.events)
      if (e.layer == 0 && e.kind == 1) { victim = base_.notes[e.note].local_id; evicted_at = e.position; break; }
    QVERIFY(victim >= 0);
    const Trace t = traced(*model_, edits_of("[{\"kind\": \"pin\", \"layer\": 0, \"note\": " + std::to_string(victim) + "}]", config_));
    const int64_t n = note_index(t, 0, victim);
    QVERIFY(n >= 0);
    for (const PoolEvent& e : t.events) QVERIFY(!(e.layer == 0 && e.kind == 1 && e.note == n));
    QVERIFY(in_pool(t, 0, evicted_at + 1, n));
    QVERIFY(in_pool(t, 0, kTokens, n));
  }

  void aDroppedNoteLeavesAtItsPosition() {
    torch::NoGradGuard no_grad;
    // A note inserted in layer 1 and still there 5 tokens later.
    int64_t local = -1, inserted = -1;
    for (const PoolEvent& e : base_.events)
      if (e.layer == 1 && e.kind == 0 && in_pool(base_, 1, e.position + 6, e.note)) {
        local = base_.notes[e.note].local_id;
        inserted = e.position;
        break;
      }
    QVERIFY(local >= 0);
    const int64_t at = inserted + 3;
    const Trace t = traced(*model_, edits_of("[{\"kind\": \"drop\", \"layer\": 1, \"note\": " + std::to_string(local) +
                                                 ", \"position\": " + std::to_string(at) + "}]", config_));
    const int64_t n = note_index(t, 1, local);
    QVERIFY(in_pool(t, 1, at, n));        // still there while token `at` reads
    QVERIFY(!in_pool(t, 1, at + 1, n));   // gone from the next token on
    // Never inserted: made (it keeps its id) but never in the pool.
    const Trace never = traced(*model_, edits_of("[{\"kind\": \"drop\", \"layer\": 1, \"note\": " + std::to_string(local) + "}]", config_));
    const int64_t m = note_index(never, 1, local);
    QVERIFY(m >= 0);
    for (int64_t pos = 0; pos <= kTokens; ++pos) QVERIFY(!in_pool(never, 1, pos, m));
  }

  void aPlantedNoteEntersWhereItWasPlanted() {
    torch::NoGradGuard no_grad;
    const Trace t = traced(*model_, edits_of(R"([{"kind": "plant", "layer": 2, "source": 7, "position": 40}])", config_));
    int64_t planted = -1;
    for (size_t i = 0; i < t.notes.size(); ++i)
      if (t.notes[i].layer == 2 && t.notes[i].sources.size() == 1 && t.notes[i].sources[0] == 7 && t.notes[i].window == 40)
        planted = static_cast<int64_t>(i);
    QVERIFY(planted >= 0);
    QVERIFY(!in_pool(t, 2, 40, planted));
    QVERIFY(in_pool(t, 2, 41, planted));
  }

  void thresholdsAndMasksActOnTheirLayerOnly() {
    torch::NoGradGuard no_grad;
    const Trace t = traced(*model_, edits_of(R"([{"kind": "thresholds", "layer": 0, "tau_note": 3},
                                                 {"kind": "mask_read", "layer": 1, "begin": 20, "end": 50, "reads": "token"}])", config_));
    for (int64_t pos = 0; pos < kTokens; ++pos) QVERIFY(!(t.layers[0].flags[pos] & kNoted));
    int64_t noted_base = 0, noted_after = 0;
    for (int64_t pos = 0; pos < kTokens; ++pos) {
      noted_base += (base_.layers[0].flags[pos] & kNoted) != 0;
      noted_after += (t.layers[2].flags[pos] & kNoted) != 0;
    }
    QVERIFY(noted_base > 0 && noted_after > 0);
    for (int64_t pos = 20; pos < 50; ++pos) QCOMPARE(t.layers[1].fusion_token_norm[pos], 0.f);
    QVERIFY(t.layers[1].fusion_token_norm[60] > 0.f);
    for (size_t r = 0; r < t.layers[1].token_attention.rows(); ++r) {
      const int64_t pos = t.layers[1].token_attention.token[r];
      QVERIFY(pos < 20 || pos >= 50);  // a masked read is not reported as one
    }
  }

  void parallelEqualsStepUnderEveryEdit_data() {
    QTest::addColumn<QString>("edits");
    QTest::newRow("drop") << R"([{"kind": "drop", "layer": 0, "note": 2}, {"kind": "drop", "layer": 1, "note": 1, "position": 30}])";
    QTest::newRow("drop_from") << R"([{"kind": "drop_from", "begin": 10, "end": 20}])";
    QTest::newRow("pin") << R"([{"kind": "pin", "layer": 0, "note": 0}, {"kind": "pin", "layer": 3, "note": 1}])";
    QTest::newRow("plant") << R"([{"kind": "plant", "layer": 2, "source": 5, "position": 33}])";
    QTest::newRow("thresholds") << R"([{"kind": "thresholds", "tau_note": 0.5, "tau_retrieve": 0.3}])";
    QTest::newRow("mask_read") << R"([{"kind": "mask_read", "begin": 10, "end": 60}])";
  }

  void parallelEqualsStepUnderEveryEdit() {
    QFETCH(QString, edits);
    torch::NoGradGuard no_grad;
    RunOptions o = model_->default_options();
    o.edits = edits_of(edits.toStdString(), config_);
    const auto par = parallel_logits(*model_, o, 1 << 20), chunked = parallel_logits(*model_, o, 7);
    const auto stp = step_logits(*model_, o);
    const double diff = (par - stp).abs().max().item<double>();
    QVERIFY2(diff < 1e-4, qPrintable(QString("max |parallel - step| = %1").arg(diff)));
    QVERIFY((chunked - par).abs().max().item<double>() < 1e-4);
    QVERIFY((par - parallel_logits(*model_, model_->default_options(), 1 << 20)).abs().max().item<double>() > 1e-6);  // it did something
  }

  void editsAreForARunsStart() {
    torch::NoGradGuard no_grad;
    RunState s = model_->new_state(1);
    model_->forward(torch::zeros({1, 4}, torch::kInt64), s, model_->default_options());
    RunOptions o = model_->default_options();
    o.edits = edits_of(R"([{"kind": "pin", "layer": 0, "note": 0}])", config_);
    QVERIFY_THROWS_EXCEPTION(std::invalid_argument, model_->forward(torch::zeros({1, 4}, torch::kInt64), s, o));
  }

  void badEditsAreRefused_data() {
    QTest::addColumn<QString>("json");
    QTest::addColumn<QString>("message");
    QTest::newRow("not a list") << R"({"kind": "pin"})" << "JSON list";
    QTest::newRow("unknown kind") << R"([{"kind": "forget"}])" << "unknown kind \"forget\"";
    QTest::newRow("unknown field") << R"([{"kind": "pin", "layer": 0, "note": 1, "slot": 3}])" << "unknown field \"slot\"";
    QTest::newRow("layer out of range") << R"([{"kind": "pin", "layer": 9, "note": 1}])" << "layer 9 is out of range";
    QTest::newRow("no layer") << R"([{"kind": "drop", "note": 1}])" << "out of range";
    QTest::newRow("no note") << R"([{"kind": "pin", "layer": 0}])" << "\"note\"";
    QTest::newRow("position past the text") << R"([{"kind": "drop", "layer": 0, "note": 1, "position": 500}])" << "past the text's 80 tokens";
    QTest::newRow("source after position") << R"([{"kind": "plant", "layer": 0, "source": 30, "position": 20}])" << "comes after position";
    QTest::newRow("a string for a number") << R"([{"kind": "pin", "layer": "0", "note": 1}])" << "must be an integer";
    QTest::newRow("threshold out of range") << R"([{"kind": "thresholds", "tau_note": 9}])" << "[-1, 3]";
    QTest::newRow("empty mask") << R"([{"kind": "mask_read", "begin": 30, "end": 30}])" << "end must come after begin";
  }

  void badEditsAreRefused() {
    QFETCH(QString, json);
    QFETCH(QString, message);
    try {
      MemoryEdits::parse(Json::parse(json.toStdString()), config_, kTokens);
      QFAIL("accepted");
    } catch (const EditError& e) {
      QVERIFY2(QString::fromUtf8(e.what()).contains(message), e.what());
    }
  }

  void unknownNoteIdsAreNamedAfterTheRun() {
    const MemoryEdits edits = MemoryEdits::parse(Json::parse(R"([{"kind": "pin", "layer": 1, "note": 40}])"), config_, kTokens);
    try {
      edits.check_note_ids({5, 12, 3, 3});
      QFAIL("accepted");
    } catch (const EditError& e) {
      QVERIFY2(QString::fromUtf8(e.what()).contains("note 40 of layer 1 was never made in this run (layer 1 made 12 notes"), e.what());
    }
    edits.check_note_ids({5, 41, 3, 3});
  }
};

QTEST_APPLESS_MAIN(TestMemoryEdits)
#include "test_memory_edits.moc"
