#include <torch/torch.h>

#include <QtTest/QtTest>
#include <atomic>
#include <cstring>
#include <thread>

#include "model/checkpoint.h"
#include "model/file_io.h"
#include "model/memmamba.h"
#include "model/noted_strings.h"
#include "model/queued_observer.h"
#include "model/runner.h"
#include "model/safetensors.h"
#include "model/selective_scan.h"
#include "model/plain_threads.h"
#include "model/trace.h"
#include "model/trace_builder.h"
#include "model/runtime.h"
#include "tests/test_helpers.h"
#include "test_helpers.h"

using namespace memmamba;

namespace {
template <typename Container>
bool same_bits(const Container& a, const Container& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(typename Container::value_type)) == 0);
}

bool same_rows(const AttentionRows& a, const AttentionRows& b) {
  return same_bits(a.token, b.token) && same_bits(a.offset, b.offset) && same_bits(a.slot, b.slot) &&
         same_bits(a.layer, b.layer) && same_bits(a.note, b.note) && same_bits(a.weight, b.weight);
}

Trace make_trace(const MemMambaModel& m, int64_t T, uint64_t seed, int64_t chunk, TraceOptions topts = {},
                 std::vector<int64_t> sources = {}) {
  torch::manual_seed(seed);
  auto tokens = torch::randint(0, m.config().vocab_size, {T}, torch::kInt64);
  TraceRunRequest req;
  req.tokens.assign(tokens.data_ptr<int64_t>(), tokens.data_ptr<int64_t>() + T);
  req.text = std::string(static_cast<size_t>(T), 'x');
  for (int64_t i = 0; i < T; ++i) { req.char_begin.push_back(i); req.char_end.push_back(i + 1); }
  req.options = m.default_options();
  req.options.chunk_tokens = chunk;
  req.options.retention_sources = std::move(sources);
  req.options.retention_horizon = 40;
  req.trace_options = topts;
  return trace_tokens(m, std::move(req));
}
}  // namespace

class TestTrace : public QObject {
  Q_OBJECT
  QTemporaryDir dir_;

 private Q_SLOTS:
  void attentionRowsInBulkEqualRowsInPieces() {
    // A traced GPU chunk hands over millions of entries at once (filled by several threads);
    // the same rows handed over in small pieces (one thread) give the same trace.
    ModelConfig c = testing::tiny_config();
    // queued: 0 straight to the builder, 1 through a QueuedObserver (rows copied), 2 straight,
    // each row picked out of a larger array (rows_at) with other rows between.
    const size_t rows = 20000, width = 8;
    std::vector<int32_t> column_layer, column_slot;
    for (int32_t l = 0; l < 2; ++l)
      for (int32_t j = 0; j < c.pool_slots; ++j) { column_layer.push_back(l); column_slot.push_back(j); }
    std::vector<int32_t> bank_note(60);
    for (size_t b = 0; b < bank_note.size(); ++b) bank_note[b] = b % 11 == 3 ? -1 : static_cast<int32_t>((b * 7) % 40);
    std::vector<int64_t> positions(rows);
    std::vector<int32_t> column(rows * width), bank(rows * width);
    std::vector<float> weight(rows * width);
    size_t expected_entries = 0;
    for (size_t r = 0; r < rows; ++r) {
      positions[r] = static_cast<int64_t>(3 * r + 1);
      for (size_t i = 0; i < width; ++i) {
        const size_t e = r * width + i;
        column[e] = (r + i) % 5 == 0 ? -1 : static_cast<int32_t>((r * 7 + i) % column_layer.size());
        bank[e] = (r + 2 * i) % 13 == 0 ? -1 : static_cast<int32_t>((r + 3 * i) % 61);  // 60: past the table
        weight[e] = static_cast<float>(e % 97) / 97.f;
        const bool padding = column[e] < 0 || bank[e] < 0 || bank[e] >= 60 || bank_note[bank[e]] < 0;
        if (positions[r] >= 100 && !padding) ++expected_entries;
      }
    }
    auto make = [&](size_t pieces, int queued_mode = 0) {
      TraceOptions o;
      o.record_attention = true;
      o.attention_topk = static_cast<int32_t>(width);
      o.detail_begin = 100;  // rows before it are left out
      TraceBuilder builder(c, o);
      QueuedObserver queue(builder);
      RunObserver& b = queued_mode == 1 ? static_cast<RunObserver&>(queue) : builder;
      std::vector<NoteMade> notes(40);
      for (size_t i = 0; i < notes.size(); ++i) notes[i].note_id = static_cast<int64_t>(i);
      for (int32_t l = 0; l < c.n_layers; ++l) b.notes_made(l, notes);
      // Mode 2's arrays: row r at 2r + 1, junk rows between.
      std::vector<int32_t> spread_column(2 * rows * width, 7), spread_bank(2 * rows * width, 5);
      std::vector<float> spread_weight(2 * rows * width, 9.f);
      for (size_t e = 0; e < rows * width; ++e) {
        const size_t to = (2 * (e / width) + 1) * width + e % width;
        spread_column[to] = column[e];
        spread_bank[to] = bank[e];
        spread_weight[to] = weight[e];
      }
      const size_t per = rows / pieces;
      for (size_t p = 0; p < pieces; ++p) {
        AttentionRowsIn in;
        in.positions.assign(positions.begin() + p * per, positions.begin() + (p + 1) * per);
        in.width = width;
        in.bank_note = bank_note;
        in.column_layer = column_layer;
        in.column_slot = column_slot;
        if (queued_mode == 2) {
          for (size_t r = p * per; r < (p + 1) * per; ++r) in.rows_at.push_back(static_cast<int64_t>(2 * r + 1));
          in.column = spread_column.data();
          in.bank = spread_bank.data();
          in.weight = spread_weight.data();
        } else {
          in.column = column.data() + p * per * width;
          in.bank = bank.data() + p * per * width;
          in.weight = weight.data() + p * per * width;
        }
        b.attention_rows(1, true, in);
      }
      queue.drain();
      return builder.finish();
    };
    const Trace bulk = make(1), pieces = make(40), queued = make(40, 1), picked = make(40, 2);
    const AttentionRows& x = bulk.layers[1].layer_attention;
    QVERIFY(x.rows() > 19000 && x.slot.size() > 100000);
    QCOMPARE(x.slot.size(), expected_entries);
    for (const Trace* other : {&pieces, &queued, &picked}) {
      const AttentionRows& y = other->layers[1].layer_attention;
      QVERIFY(x.token == y.token && x.offset == y.offset && x.slot == y.slot && x.layer == y.layer && x.note == y.note &&
              x.weight == y.weight);
    }
    // Row 33 (position 100): its first entry that is not padding, worked out by hand.
    for (size_t i = 0; i < width; ++i) {
      const size_t e = 33 * width + i;
      if (column[e] < 0 || bank[e] < 0 || bank[e] >= 60 || bank_note[bank[e]] < 0) continue;
      QCOMPARE(x.slot[0], column_slot[static_cast<size_t>(column[e])]);
      QCOMPARE(x.layer[0], column_layer[static_cast<size_t>(column[e])]);
      // Each layer made 40 notes, layer 0's first: the pool's layer picks the global id.
      QCOMPARE(x.note[0], int64_t{40} * column_layer[static_cast<size_t>(column[e])] + bank_note[static_cast<size_t>(bank[e])]);
      QCOMPARE(x.weight[0], weight[e]);
      break;
    }
    QCOMPARE(x.token[0], int64_t{100});  // 3 * 33 + 1: the first row in the detail range
  }

  void expectedTokensKeepRowsInPlace() {
    // A builder told the run's length up front appends every chunk's rows where the first
    // chunk's went (its pages are made ready meanwhile) and builds the same trace.
    ModelConfig c = testing::tiny_config();
    const int64_t tokens = 4000, chunk = 1000, width = 4;
    TraceOptions o;
    o.attention_topk = static_cast<int32_t>(width);
    o.detail_end = 3500;  // the last rows are left out
    auto build = [&](bool expect, const int32_t** first_slot) {
      TraceBuilder builder(c, o);
      if (expect) builder.expect_tokens(tokens);
      std::vector<NoteMade> notes(7);
      for (size_t i = 0; i < notes.size(); ++i) notes[i].note_id = static_cast<int64_t>(i);
      for (int32_t l = 0; l < c.n_layers; ++l) builder.notes_made(l, notes);
      for (int64_t c0 = 0; c0 < tokens; c0 += chunk) {
        AttentionRowsIn in;
        std::vector<int32_t> column, bank;
        std::vector<float> weight;
        for (int64_t t = c0; t < c0 + chunk; ++t) {
          in.positions.push_back(t);
          for (int64_t e = 0; e < width; ++e) {
            column.push_back(static_cast<int32_t>((t + e) % c.pool_slots));
            bank.push_back(static_cast<int32_t>((t * 3 + e) % 9));
            weight.push_back(static_cast<float>(e) / 4.f);
          }
        }
        in.width = width;
        in.column = column.data();
        in.bank = bank.data();
        in.weight = weight.data();
        in.bank_note = {0, 1, 2, 3, -1, 4, 5, 6, -1};
        for (int32_t j = 0; j < c.pool_slots; ++j) {
          in.column_layer.push_back(0);
          in.column_slot.push_back(j);
        }
        builder.attention_rows(0, false, in);
        if (c0 == 0) *first_slot = builder.trace().layers[0].token_attention.slot.data();
      }
      return builder.finish();
    };
    const int32_t *grown_first = nullptr, *expected_first = nullptr;
    const Trace grown = build(false, &grown_first), expected = build(true, &expected_first);
    const AttentionRows& a = grown.layers[0].token_attention;
    const AttentionRows& b = expected.layers[0].token_attention;
    QCOMPARE(b.rows(), size_t{3500});
    QVERIFY(b.slot.size() > 3500 * 2);
    QVERIFY(a.token == b.token && a.offset == b.offset && a.slot == b.slot && a.note == b.note && a.weight == b.weight);
    QVERIFY(expected_first == b.slot.data());  // never moved
    QCOMPARE(expected.loss.size(), size_t{tokens});
    // A row keeps no more entries than it has columns: a wide top-k reserves no more than that.
    TraceOptions wide;
    wide.attention_topk = 1000;
    TraceBuilder reserving(c, wide);
    reserving.expect_tokens(tokens);
    const size_t reserved = reserving.trace().layers[0].token_attention.slot.owned().capacity();
    QVERIFY(reserved >= size_t{tokens} * static_cast<size_t>(c.pool_slots));
    QVERIFY(reserved < size_t{tokens} * static_cast<size_t>(c.pool_slots) + (size_t{1} << 20));
  }

  void plainThreadsRunEveryPartOnce() {
    // The builder's shared threads: every part once per fan-out, fan-outs back to back and
    // from two callers at once, and a part's error reaches the caller.
    const size_t parts = plain_thread_count();
    QVERIFY(parts >= 1 && parts <= 8);
    auto fan_out = [parts](std::vector<std::atomic<int>>& hits, int rounds) {
      for (int r = 0; r < rounds; ++r) run_on_plain_threads(parts, [&](size_t part) { hits[part] += 1; });
    };
    std::vector<std::atomic<int>> a(parts), b(parts);
    std::thread other([&] { fan_out(b, 300); });
    fan_out(a, 300);
    other.join();
    for (size_t p = 0; p < parts; ++p) {
      QCOMPARE(a[p].load(), 300);
      QCOMPARE(b[p].load(), 300);
    }
    std::vector<int> sum(100000, 0);
    in_plain_threads(sum.size(), size_t{1} << 20, [&](size_t begin, size_t end) {
      for (size_t i = begin; i < end; ++i) sum[i] += static_cast<int>(i % 7);
    });
    for (size_t i = 0; i < sum.size(); ++i) QCOMPARE(sum[i], static_cast<int>(i % 7));
    if (parts > 1) {
      QVERIFY_THROWS_EXCEPTION(std::runtime_error, run_on_plain_threads(parts, [](size_t part) {
                                 if (part == 0) throw std::runtime_error("part 0 fails");
                               }));
      std::atomic<int> after{0};
      run_on_plain_threads(parts, [&](size_t) { after += 1; });  // the threads still work
      QCOMPARE(after.load(), static_cast<int>(parts));
    }
  }

  void queuedObserverPassesOnTheBuildersErrors() {
    // A report the builder refuses on the worker thread surfaces at drain(), and later ones are dropped.
    TraceBuilder builder(testing::tiny_config(), TraceOptions{});
    QueuedObserver queue(builder);
    std::vector<NoteMade> notes(2);
    notes[0].note_id = 0;
    notes[1].note_id = 5;  // out of order
    queue.notes_made(0, notes);
    queue.notes_made(1, {NoteMade{}});
    QVERIFY_THROWS_EXCEPTION(std::logic_error, queue.drain());
    QCOMPARE(builder.trace().notes.size(), size_t{1});  // the first note went in, the refused and later ones not
    queue.drain();  // the error was handed over once
  }

  void initTestCase() { configure_cpu_runtime(); }

  // How common the noted tokens are against the text: medians of each position's token count.
  void noteRarityComparesTheNotedTokensWithTheText() {
    Trace trace;
    trace.tokens = {1, 1, 1, 1, 1, 2, 3, 1, 1, 4};  // token 1 occurs 7 times, the others once
    trace.layers.resize(2);
    for (LayerTrace& l : trace.layers) l.flags.assign(trace.tokens.size(), 0);
    for (size_t t : {5, 6, 9}) trace.layers[0].flags[t] |= kNoted;  // the rare tokens
    for (size_t t : {0, 5}) trace.layers[1].flags[t] |= kNoted;     // one common, one rare
    const NoteRarity rare = note_rarity(trace, 0);
    QCOMPARE(rare.noted, int64_t{3});
    QCOMPARE(rare.noted_median, 1.0);
    QCOMPARE(rare.text_median, 7.0);
    QCOMPARE(note_rarity(trace, 1).noted_median, 4.0);  // the mean of the middle two, 1 and 7
    const NoteRarity none = note_rarity(trace, 5);      // a layer the trace does not have
    QCOMPARE(none.noted, int64_t{0});
    QCOMPARE(none.text_median, 0.0);
  }

  void savesAndLoadsBitExactly() {
    MemMambaModel m = MemMambaModel::random(testing::tiny_config(), 4);
    Trace t = make_trace(m, 120, 1, 32, {}, {3, 50});
    QVERIFY(!t.notes.empty() && !t.events.empty() && !t.retention.empty());
    QVERIFY(t.layers[1].token_attention.rows() > 0 && t.layers[1].layer_attention.rows() > 0);
    const std::string path = dir_.filePath("t.trace").toStdString();
    t.save(path);
    Trace u = [&] {
      // Rows and note sources view the loaded file in place; they keep it alive after the
      // loader and every other copy are gone.
      Trace first = Trace::load(path);
      return Trace(first);
    }();
    QVERIFY(u.layers[1].token_attention.weight.is_mapped() && u.notes.front().sources.is_mapped());
    QCOMPARE(u.config.dump(), t.config.dump());
    QCOMPARE(u.run_info.dump(), t.run_info.dump());
    QCOMPARE(u.text, t.text);
    QVERIFY(same_bits(u.tokens, t.tokens) && same_bits(u.char_begin, t.char_begin) && same_bits(u.loss, t.loss));
    QVERIFY(std::isnan(u.loss.back()));  // the last token has no next token
    QCOMPARE(u.layers.size(), t.layers.size());
    for (size_t l = 0; l < t.layers.size(); ++l) {
      const LayerTrace &a = t.layers[l], &b = u.layers[l];
      QVERIFY(same_bits(a.importance, b.importance) && same_bits(a.istate, b.istate) && same_bits(a.flags, b.flags));
      QVERIFY(same_bits(a.fusion_token_norm, b.fusion_token_norm) && same_bits(a.log_decay, b.log_decay));
      QVERIFY(same_bits(a.fusion_layer_norm, b.fusion_layer_norm));
      QVERIFY(same_rows(a.token_attention, b.token_attention) && same_rows(a.layer_attention, b.layer_attention));
    }
    QCOMPARE(u.notes.size(), t.notes.size());
    for (size_t i = 0; i < t.notes.size(); ++i) QVERIFY(u.notes[i].sources == t.notes[i].sources);
    QCOMPARE(u.events.size(), t.events.size());
    QCOMPARE(u.retention.size(), t.retention.size());
    for (size_t i = 0; i < t.retention.size(); ++i) QVERIFY(same_bits(u.retention[i].values, t.retention[i].values));
  }

  void chunkingDoesNotChangeTheTrace() {
    MemMambaModel m = MemMambaModel::random(testing::tiny_config(), 4);
    Trace a = make_trace(m, 100, 2, 1000, {}, {10}), b = make_trace(m, 100, 2, 7, {}, {10});
    QCOMPARE(a.events.size(), b.events.size());
    for (size_t l = 0; l < a.layers.size(); ++l) {
      QVERIFY(a.layers[l].flags == b.layers[l].flags);
      QCOMPARE(a.layers[l].token_attention.token, b.layers[l].token_attention.token);
    }
    QCOMPARE(a.retention.size(), b.retention.size());
    for (size_t i = 0; i < a.retention.size(); ++i) {
      QCOMPARE(a.retention[i].values.size(), size_t(41));
      for (size_t k = 0; k < a.retention[i].values.size(); ++k)
        QVERIFY(std::fabs(a.retention[i].values[k] - b.retention[i].values[k]) < 1e-5f);
    }
  }

  void replayAgreesWithTheRunAndIsCausal() {
    ModelConfig c = testing::tiny_config();
    c.note_window = 3;
    MemMambaModel m = MemMambaModel::random(c, 7);
    const int64_t T = 150;
    Trace t = make_trace(m, T, 3, 40);
    PoolReplay replay(t, 4);
    for (int32_t l = 0; l < static_cast<int32_t>(c.n_layers); ++l)
      for (int64_t pos = 0; pos <= T; pos += 1) QVERIFY(replay.pool_at(l, pos) == t.pool_at(l, pos));
    // The final pool equals the one the model carried (compared by layer-local note ids).
    torch::manual_seed(3);
    auto tokens = torch::randint(0, c.vocab_size, {1, T}, torch::kInt64);
    RunState s = m.new_state(1);
    {
      torch::NoGradGuard ng;
      m.forward(tokens, s, m.default_options());
    }
    for (int32_t l = 0; l < static_cast<int32_t>(c.n_layers); ++l) {
      auto slots = t.pool_at(l, T);
      const std::vector<int64_t> carried = s.pools[l]->slot_note_ids(0);
      for (int64_t j = 0; j < c.pool_slots; ++j) {
        const int64_t expected = carried[j];
        QCOMPARE(slots[j] < 0 ? int64_t(-1) : t.notes[slots[j]].local_id, expected);
      }
    }
    // Causality: every note a token attends to closed its window before the token's window began,
    // and sits in the slot the replay says it occupies.
    int64_t rows_checked = 0;
    for (int32_t l = 0; l < static_cast<int32_t>(c.n_layers); ++l) {
      const AttentionRows& r = t.layers[l].token_attention;
      for (size_t i = 0; i < r.rows(); ++i) {
        const int64_t pos = r.token[i];
        QVERIFY(t.layers[l].flags[pos] & kTriggered);
        auto pool = replay.pool_at(l, pos);
        for (int64_t e = r.offset[i]; e < r.offset[i + 1]; ++e) {
          const NoteInfo& n = t.notes[r.note[e]];
          QVERIFY(n.window < pos / c.note_window);
          for (int64_t src : n.sources) QVERIFY(src < pos);
          QCOMPARE(pool[r.slot[e]], r.note[e]);
        }
        ++rows_checked;
      }
    }
    QVERIFY(rows_checked > 50);
  }

  void boundedModeKeepsTopSlotsAndARange() {
    ModelConfig c = testing::tiny_config();
    c.pool_slots = 6;
    MemMambaModel m = MemMambaModel::random(c, 5);
    TraceOptions o;
    o.attention_topk = 2;
    o.detail_begin = 30;
    o.detail_end = 60;
    Trace t = make_trace(m, 100, 4, 25, o);
    Trace full = make_trace(m, 100, 4, 25);
    for (const LayerTrace& l : t.layers) {
      for (size_t i = 0; i < l.token_attention.rows(); ++i) {
        QVERIFY(l.token_attention.token[i] >= 30 && l.token_attention.token[i] < 60);
        QVERIFY(l.token_attention.offset[i + 1] - l.token_attention.offset[i] <= 2);
      }
    }
    QVERIFY(t.memory_bytes() < full.memory_bytes());
    // The kept entries are the largest weights of the full row.
    const AttentionRows& a = t.layers[1].token_attention;
    const AttentionRows& b = full.layers[1].token_attention;
    QVERIFY(a.rows() > 0);
    const int64_t rb = b.find(a.token[0]);
    QVERIFY(rb >= 0);
    std::vector<float> weights(b.weight.begin() + b.offset[rb], b.weight.begin() + b.offset[rb + 1]);
    std::sort(weights.rbegin(), weights.rend());
    QCOMPARE(a.weight[a.offset[0]], weights[0]);
  }

  void budgetNarrowsTheTraceAndBoundsItsSize() {
    ModelConfig c = testing::tiny_config();
    c.pool_slots = 6;
    MemMambaModel m = MemMambaModel::random(c, 5);
    const int64_t T = 300;
    TraceOptions wide;
    wide.attention_topk = 6;
    Trace full = make_trace(m, T, 4, 64, wide);
    const uint64_t full_estimate = estimate_trace_bytes(c, T, wide);
    QVERIFY2(full.memory_bytes() <= full_estimate, qPrintable(QString("%1 > %2").arg(full.memory_bytes()).arg(full_estimate)));
    TraceOptions narrowed = wide;
    QVERIFY(fit_trace_to_budget(c, T, full_estimate, narrowed).empty());  // fits: unchanged
    const uint64_t budget = full_estimate * 3 / 4;
    const std::string message = fit_trace_to_budget(c, T, budget, narrowed);
    QVERIFY(!message.empty());
    QVERIFY(narrowed.attention_topk < wide.attention_topk || narrowed.detail_begin > 0);
    QVERIFY(estimate_trace_bytes(c, T, narrowed) <= budget);
    Trace bounded = make_trace(m, T, 4, 64, narrowed);
    QVERIFY(bounded.memory_bytes() <= budget);
    QVERIFY(bounded.memory_bytes() < full.memory_bytes());
  }

  void retentionCurveMatchesADirectComputation() {
    ModelConfig c = testing::tiny_config();
    c.n_layers = 1;
    c.cross_layer_groups = 1;
    c.memory = false;
    MemMambaModel m = MemMambaModel::random(c, 9);
    const int64_t T = 60, source = 12;
    Trace t = make_trace(m, T, 5, 16, {}, {source});
    QCOMPARE(t.retention.size(), size_t(1));
    const auto& curve = t.retention[0].values;
    QCOMPARE(curve.size(), size_t(41));
    // Direct: dt from the layer's own weights, then mean over channels and states of exp(A * sum dt).
    torch::NoGradGuard ng;
    torch::manual_seed(5);
    auto tokens = torch::randint(0, c.vocab_size, {T}, torch::kInt64);
    const Weights& w = m.weights();
    const int64_t Di = c.inner(), R = c.rank();
    auto x = w["embedding.weight"].index_select(0, tokens);
    auto h = x * torch::rsqrt(x.pow(2).mean(-1, true) + c.norm_eps) * w["layers.0.mixer.norm.weight"];
    auto a = torch::matmul(h, w["layers.0.mixer.in_proj.weight"].t()).narrow(1, 0, Di);  // [T, Di]
    auto padded = torch::cat({torch::zeros({c.conv_kernel - 1, Di}), a}, 0);
    auto conv = w["layers.0.mixer.conv.bias"].expand({T, Di}).clone();
    for (int64_t k = 0; k < c.conv_kernel; ++k) conv += padded.narrow(0, k, T) * w["layers.0.mixer.conv.weight"].select(1, k);
    auto u = torch::silu(conv);
    auto dt_raw = torch::matmul(u, w["layers.0.mixer.x_proj.weight"].t()).narrow(1, 0, R);
    auto dt = torch::nn::functional::softplus(torch::matmul(dt_raw, w["layers.0.mixer.dt_proj.weight"].t()) +
                                              w["layers.0.mixer.dt_proj.bias"]);
    auto A = -torch::exp(w["layers.0.mixer.A_log"]);
    for (int64_t k = 0; k <= 40; ++k) {
      auto summed = k == 0 ? torch::zeros({Di}) : dt.narrow(0, source + 1, k).sum(0);
      const float expected = torch::exp(summed.unsqueeze(1) * A).mean().item<float>();
      QVERIFY2(std::fabs(curve[k] - expected) < 1e-5f, qPrintable(QString("k=%1: %2 vs %3").arg(k).arg(curve[k]).arg(expected)));
    }
    QCOMPARE(curve[0], 1.f);
  }

  void refusesBadTraceFiles() {
    MemMambaModel m = MemMambaModel::random(testing::tiny_config(), 4);
    Trace t = make_trace(m, 40, 1, 64);
    const std::string path = dir_.filePath("ok.trace").toStdString();
    t.save(path);
    const std::string bytes = read_file(path);
    auto write = [&](const char* name, const std::string& data) {
      const std::string p = dir_.filePath(name).toStdString();
      write_file_atomic(p, data);
      return p;
    };
    QVERIFY_THROWS_EXCEPTION(FormatError, Trace::load(write("cut.trace", bytes.substr(0, bytes.size() - 100))));
    QVERIFY_THROWS_EXCEPTION(FormatError, Trace::load(write("tiny.trace", bytes.substr(0, 4))));
    // A checkpoint is not a trace.
    const std::string ck = dir_.filePath("m.safetensors").toStdString();
    save_checkpoint(ck, m.config(), m.weights());
    try {
      Trace::load(ck);
      QFAIL("a checkpoint loaded as a trace");
    } catch (const FormatError& e) {
      QVERIFY(std::string(e.what()).find("not a MemMamba trace") != std::string::npos);
    }
    // Another format version.
    std::string other = bytes;
    const size_t at = other.find("\"version\":\"1\"");
    QVERIFY(at != std::string::npos);
    other[at + 11] = '9';
    try {
      Trace::load(write("v9.trace", other));
      QFAIL("version 9 accepted");
    } catch (const FormatError& e) {
      QVERIFY(std::string(e.what()).find("version 9") != std::string::npos);
    }
  }
};

QTEST_APPLESS_MAIN(TestTrace)
#include "test_trace.moc"
