#include <QtTest/QtTest>

#include "model/memory/note_block.h"

using namespace memmamba;

namespace {
constexpr int64_t kWidth = 4;

// A distinct summary per token: a one-hot-ish vector so cosines are easy to reason about.
std::vector<float> summary(int k) {
  std::vector<float> v(kWidth, 0.f);
  v[k % kWidth] = 1.f + 0.1f * static_cast<float>(k / kWidth);
  return v;
}

struct Feed {
  std::vector<PoolEventRecord> events;
  std::vector<NoteMade> notes;
  std::vector<TokenDecision> decisions;
};

Feed feed_learned(NoteTaker& taker, const std::vector<float>& importance, const MemorySettings& settings) {
  Feed f;
  for (size_t t = 0; t < importance.size(); ++t) {
    auto s = summary(static_cast<int>(t));
    f.decisions.push_back(taker.observe(s.data(), importance[t], settings, f.events, f.notes));
  }
  return f;
}

MemorySettings learned(PoolPolicy policy, double tau_note = 0.5) {
  MemorySettings m;
  m.importance = ImportanceRule::Learned;
  m.policy = policy;
  m.tau_note = tau_note;
  m.tau_retrieve = 0.5;
  return m;
}

std::vector<int64_t> slots_of(const NoteTaker& t) {
  std::vector<int64_t> v;
  for (int64_t j = 0; j < t.pool().slots(); ++j) v.push_back(t.pool().note_id(j));
  return v;
}
}  // namespace

class TestNoteBlock : public QObject {
  Q_OBJECT
 private Q_SLOTS:
  void priorityPolicyEvictsTheLowestAndDropsWeakerNotes() {
    NoteTaker taker(3, kWidth, 1);
    Feed f = feed_learned(taker, {0.9f, 0.6f, 0.7f, 0.8f, 0.55f, 0.95f, 0.6f, 0.4f}, learned(PoolPolicy::Priority));
    QCOMPARE(f.notes.size(), size_t(7));  // 0.4 is below tau1
    QCOMPARE(slots_of(taker), (std::vector<int64_t>{0, 3, 5}));
    // Event sequence: inserts 0,1,2; evict 1 for 3; drop 4; evict 2 for 5; drop 6.
    std::vector<std::pair<int, int64_t>> seen;
    for (const auto& e : f.events) seen.push_back({static_cast<int>(e.kind), e.note_id});
    const std::vector<std::pair<int, int64_t>> expected = {{0, 0}, {0, 1}, {0, 2}, {1, 1}, {0, 3}, {2, 4}, {1, 2}, {0, 5}, {2, 6}};
    QCOMPARE(seen, expected);
    QCOMPARE(f.notes[4].slot, -1);
    QCOMPARE(f.events[3].position, int64_t(3));
  }

  void priorityTiesEvictTheOldest() {
    NoteTaker taker(2, kWidth, 1);
    feed_learned(taker, {0.7f, 0.7f, 0.9f}, learned(PoolPolicy::Priority));
    QCOMPARE(slots_of(taker), (std::vector<int64_t>{2, 1}));
  }

  void fifoPolicyEvictsTheOldestWhateverItsPriority() {
    NoteTaker taker(3, kWidth, 1);
    Feed f = feed_learned(taker, {0.9f, 0.6f, 0.7f, 0.8f, 0.55f}, learned(PoolPolicy::Fifo));
    QCOMPARE(slots_of(taker), (std::vector<int64_t>{3, 4, 2}));
    QCOMPARE(f.events[3].kind, PoolEventKind::Evict);
    QCOMPARE(f.events[3].note_id, int64_t(0));
  }

  void aNoteIsNeverVisibleToItsOwnToken() {
    // Novelty rule, w = 1: the same summary twice. At t = 0 nothing is visible (importance 1);
    // at t = 1 the note of t = 0 is, and the repeat is not novel.
    MemorySettings m;
    m.importance = ImportanceRule::Novelty;
    m.tau_note = 0.3;
    NoteTaker taker(4, kWidth, 1);
    std::vector<PoolEventRecord> events;
    std::vector<NoteMade> notes;
    auto s = summary(1);
    TokenDecision d0 = taker.observe(s.data(), 0.f, m, events, notes);
    QCOMPARE(d0.reference.kind, ImportanceReference::Kind::None);
    QCOMPARE(d0.importance, 1.f);
    QVERIFY(d0.noted);
    QCOMPARE(taker.pool().occupied(), int64_t(1));
    TokenDecision d1 = taker.observe(s.data(), 0.f, m, events, notes);
    QCOMPARE(d1.reference.kind, ImportanceReference::Kind::Slot);
    QVERIFY(std::fabs(d1.importance) < 1e-6f);
    QVERIFY(!d1.noted);
  }

  void windowsPoolByMaxAndBecomeVisibleAfterTheyClose() {
    MemorySettings m = learned(PoolPolicy::Priority, 0.5);
    NoteTaker taker(4, kWidth, 4);
    std::vector<PoolEventRecord> events;
    std::vector<NoteMade> notes;
    const std::vector<std::vector<float>> s = {{1, -1, 0, 2}, {3, 0, -2, 1}, {0, 5, 0, 0}, {2, 2, 2, 2}};
    const std::vector<float> importance = {0.6f, 0.9f, 0.2f, 0.7f};  // token 2 is not noted
    for (int t = 0; t < 4; ++t) {
      taker.observe(s[t].data(), importance[t], m, events, notes);
      QCOMPARE(taker.pool().occupied(), int64_t(t == 3 ? 1 : 0));  // nothing visible inside the window
    }
    QCOMPARE(notes.size(), size_t(1));
    QCOMPARE(notes[0].vector, (std::vector<float>{3, 2, 2, 2}));  // max over tokens 0, 1, 3 only
    QCOMPARE(notes[0].sources, (std::vector<int64_t>{0, 1, 3}));
    QCOMPARE(notes[0].priority, 0.9f);
    QCOMPARE(notes[0].priority_source, int64_t(1));
    QCOMPARE(notes[0].channel_source, (std::vector<int64_t>{1, 3, 3, 0}));
    QCOMPARE(events.back().position, int64_t(3));
    // A window without a noted token makes no note.
    for (int t = 0; t < 4; ++t) taker.observe(s[t].data(), 0.1f, m, events, notes);
    QCOMPARE(notes.size(), size_t(1));
  }

  void noveltyComparesWithEarlierTokensOfTheWindow() {
    MemorySettings m;
    m.importance = ImportanceRule::Novelty;
    m.tau_note = 0.3;
    NoteTaker taker(4, kWidth, 3);
    std::vector<PoolEventRecord> events;
    std::vector<NoteMade> notes;
    auto a = summary(0), b = summary(1);
    taker.observe(a.data(), 0, m, events, notes);
    TokenDecision d = taker.observe(a.data(), 0, m, events, notes);
    QCOMPARE(d.reference.kind, ImportanceReference::Kind::Token);
    QCOMPARE(d.reference.index, int64_t(0));
    QVERIFY(!d.noted);
    TokenDecision e = taker.observe(b.data(), 0, m, events, notes);  // orthogonal: fully novel
    QVERIFY(std::fabs(e.importance - 1.f) < 1e-6f);
    QVERIFY(e.noted);
  }

  void triggerComparesThePreviousSummaryWithThePoolItSaw() {
    MemorySettings m = learned(PoolPolicy::Priority, 0.5);
    m.tau_retrieve = 0.5;
    NoteTaker taker(2, kWidth, 1);
    std::vector<PoolEventRecord> events;
    std::vector<NoteMade> notes;
    auto a = summary(0), b = summary(1);
    TokenDecision d0 = taker.observe(a.data(), 0.9f, m, events, notes);  // noted
    TokenDecision d1 = taker.observe(b.data(), 0.1f, m, events, notes);  // s_0 vs empty pool -> 1
    TokenDecision d2 = taker.observe(a.data(), 0.1f, m, events, notes);  // s_1 = b vs {a}: orthogonal -> 1
    TokenDecision d3 = taker.observe(b.data(), 0.1f, m, events, notes);  // s_2 = a vs {a} -> 0
    QCOMPARE(d0.istate, 1.f);
    QCOMPARE(d1.istate, 1.f);
    QVERIFY(std::fabs(d2.istate - 1.f) < 1e-6f);
    QVERIFY(d2.trigger);
    QVERIFY(std::fabs(d3.istate) < 1e-6f);
    QVERIFY(!d3.trigger);
  }
};

QTEST_APPLESS_MAIN(TestNoteBlock)
#include "test_note_block.moc"
