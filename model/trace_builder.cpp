#include "model/trace_builder.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <new>
#include <stdexcept>

#include "model/plain_threads.h"

namespace memmamba {

TraceBuilder::TraceBuilder(const ModelConfig& config, const TraceOptions& options) {
  trace_.config = config.to_json();
  trace_.options = options;
  trace_.options.attention_topk = std::max<int32_t>(1, options.attention_topk);
  trace_.pool_slots = config.pool_slots;
  trace_.layers.resize(static_cast<size_t>(config.n_layers));
  local_to_global_.resize(static_cast<size_t>(config.n_layers));
  for (int64_t l = 0; l < config.n_layers; ++l) cross_layer_reads_.push_back(config.memory && config.has_cross_layer(l));
  for (int cross = 0; cross < 2; ++cross)
    row_width_[cross] = attention_row_width(config, trace_.options.attention_topk, cross == 1);
}

TraceBuilder::~TraceBuilder() { join_pages(); }

void TraceBuilder::join_pages() {
  if (pages_.joinable()) pages_.join();
}

void TraceBuilder::expect_tokens(int64_t tokens) {
  if (tokens <= 0) return;
  join_pages();
  ensure_length(tokens);
  if (!trace_.options.record_attention) return;
  const int64_t first = std::max<int64_t>(0, trace_.options.detail_begin);
  const int64_t rows = std::min(tokens, std::max(first, trace_.options.detail_end)) - first;
  if (rows <= 0) return;
  std::vector<std::pair<void*, size_t>> ranges;
  auto reserve = [&ranges](auto& column, size_t n) {
    auto& owned = column.owned();
    owned.reserve(owned.size() + n);
    ranges.emplace_back(owned.data(), owned.capacity() * sizeof(owned[0]));
  };
  try {
    for (size_t l = 0; l < trace_.layers.size(); ++l) {
      for (int cross = 0; cross < 2; ++cross) {
        if (cross && !cross_layer_reads_[l]) continue;
        AttentionRows* r = cross ? &trace_.layers[l].layer_attention : &trace_.layers[l].token_attention;
        const size_t entries = static_cast<size_t>(rows) * static_cast<size_t>(row_width_[cross]);
        reserve(r->token, static_cast<size_t>(rows));
        reserve(r->offset, static_cast<size_t>(rows));
        reserve(r->slot, entries);
        reserve(r->layer, entries);
        reserve(r->note, entries);
        reserve(r->weight, entries);
      }
    }
  } catch (const std::bad_alloc&) {
    // A system that will not promise the memory up front: the rest grows as rows come.
  }
  // The builder may write these pages meanwhile: populating leaves their contents alone.
  pages_ = std::thread([ranges = std::move(ranges)] {
    for (const auto& [data, bytes] : ranges) populate_pages(data, bytes);
  });
}

void TraceBuilder::ensure_length(int64_t n) {
  if (static_cast<int64_t>(trace_.loss.size()) < n) trace_.loss.resize(n, std::nanf(""));
  for (LayerTrace& l : trace_.layers) {
    if (static_cast<int64_t>(l.importance.size()) >= n) continue;
    l.importance.resize(n, 0.f);
    l.istate.resize(n, 0.f);
    l.flags.resize(n, 0);
    l.fusion_token_norm.resize(n, 0.f);
    l.fusion_layer_norm.resize(n, 0.f);
    l.log_decay.resize(n, 0.f);
  }
}

void TraceBuilder::layer_tokens(int32_t layer, int64_t pos0, int64_t n, const float* importance, const float* istate,
                                const uint8_t* flags, const float* token_norm, const float* layer_norm,
                                const float* log_decay) {
  ensure_length(pos0 + n);
  LayerTrace& l = trace_.layers.at(layer);
  std::copy(importance, importance + n, l.importance.begin() + pos0);
  std::copy(istate, istate + n, l.istate.begin() + pos0);
  for (int64_t i = 0; i < n; ++i) l.flags[pos0 + i] = static_cast<uint8_t>(l.flags[pos0 + i] | flags[i]);
  std::copy(token_norm, token_norm + n, l.fusion_token_norm.begin() + pos0);
  std::copy(layer_norm, layer_norm + n, l.fusion_layer_norm.begin() + pos0);
  std::copy(log_decay, log_decay + n, l.log_decay.begin() + pos0);
}

void TraceBuilder::notes_made(int32_t layer, const std::vector<NoteMade>& notes) {
  auto& map = local_to_global_.at(layer);
  for (const NoteMade& n : notes) {
    if (n.note_id != static_cast<int64_t>(map.size())) throw std::logic_error("trace: notes reported out of order");
    map.push_back(static_cast<int64_t>(trace_.notes.size()));
    trace_.notes.push_back({layer, n.note_id, n.window, n.priority, n.sources});
  }
}

void TraceBuilder::pool_events(int32_t layer, const std::vector<PoolEventRecord>& events) {
  const auto& map = local_to_global_.at(layer);
  for (const PoolEventRecord& e : events)
    trace_.events.push_back({e.position, layer, static_cast<uint8_t>(e.kind), e.slot, map.at(e.note_id), e.priority});
}

void TraceBuilder::attention_rows(int32_t layer, bool cross_layer, const AttentionRowsIn& in) {
  const std::vector<int64_t>& positions = in.positions;
  if (positions.empty()) return;
  if (!in.rows_at.empty() && in.rows_at.size() != positions.size())
    throw std::logic_error("trace: attention rows and their entries do not match");
  ensure_length(positions.back() + 1);
  LayerTrace& l = trace_.layers.at(layer);
  AttentionRows& rows = cross_layer ? l.layer_attention : l.token_attention;
  auto& token = rows.token.owned();
  auto& offset = rows.offset.owned();
  auto& slot = rows.slot.owned();
  auto& pool_layer = rows.layer.owned();
  auto& note = rows.note.owned();
  auto& weight = rows.weight.owned();
  if (!token.empty() && token.back() >= positions.front()) throw std::logic_error("trace: attention rows out of order");
  for (size_t r = 1; r < positions.size(); ++r)
    if (positions[r] <= positions[r - 1]) throw std::logic_error("trace: attention rows out of order");
  const size_t n = positions.size(), w = static_cast<size_t>(in.width);
  const int64_t n_layers = static_cast<int64_t>(local_to_global_.size());

  // Two passes over blocks of rows, in parallel where there are many (a traced GPU run hands
  // over millions of entries per chunk): count each row's kept entries and check them, then
  // write them at their prefix-sum offsets.
  // Kept between calls: fresh arrays of a chunk's rows took page faults every read.
  std::vector<uint32_t>& kept = row_entries_;
  kept.assign(n, 0);
  std::atomic<int> bad{0};  // 1 column, 2 layer, 3 note
  auto count = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      if (!wants_attention(positions[r])) continue;
      uint32_t k = 0;
      const size_t first = in.first_entry(r);
      for (size_t e = first; e < first + w; ++e) {
        const int64_t local = in.note_of(e);
        if (local < 0) continue;
        const int32_t col = in.column[e];
        if (static_cast<size_t>(col) >= in.column_layer.size()) { bad = 1; return; }
        const int32_t pool = in.column_layer[static_cast<size_t>(col)];
        if (pool < 0 || pool >= n_layers) { bad = 2; return; }
        if (local >= static_cast<int64_t>(local_to_global_[static_cast<size_t>(pool)].size())) { bad = 3; return; }
        ++k;
      }
      kept[r] = k;
    }
  };
  in_plain_threads(n, n * w, count);
  if (bad == 1) throw std::logic_error("trace: attention entry names no column");
  if (bad == 2) throw std::logic_error("trace: attention entry names no layer");
  if (bad == 3) throw std::logic_error("trace: attention entry names no note");

  const size_t base = slot.size();
  std::vector<size_t>& start = row_starts_;
  start.assign(n + 1, 0);
  for (size_t r = 0; r < n; ++r) start[r + 1] = start[r] + kept[r];
  const size_t total = start[n];
  slot.resize(base + total);
  pool_layer.resize(base + total);
  note.resize(base + total);
  weight.resize(base + total);
  int32_t* slot_out = slot.data() + base;
  int32_t* layer_out = pool_layer.data() + base;
  int64_t* note_out = note.data() + base;
  float* weight_out = weight.data() + base;
  auto fill = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      if (kept[r] == 0) continue;
      size_t at = start[r];
      const size_t first = in.first_entry(r);
      for (size_t e = first; e < first + w; ++e) {
        const int32_t local = in.note_of(e);
        if (local < 0) continue;
        const size_t col = static_cast<size_t>(in.column[e]);
        const int32_t pool = in.column_layer[col];
        slot_out[at] = in.column_slot[col];
        layer_out[at] = pool;
        note_out[at] = local_to_global_[static_cast<size_t>(pool)][static_cast<size_t>(local)];
        weight_out[at] = in.weight[e];
        ++at;
      }
    }
  };
  in_plain_threads(n, total, fill);
  token.reserve(token.size() + n);
  offset.reserve(offset.size() + n);
  for (size_t r = 0; r < n; ++r) {
    if (!wants_attention(positions[r])) continue;
    token.push_back(positions[r]);
    offset.push_back(static_cast<int64_t>(base + start[r + 1]));
    if (!cross_layer) l.flags[positions[r]] |= kAttentionRecorded;
  }
}

void TraceBuilder::losses(int64_t pos0, const std::vector<float>& loss) {
  ensure_length(pos0 + static_cast<int64_t>(loss.size()));
  std::copy(loss.begin(), loss.end(), trace_.loss.begin() + pos0);
}

void TraceBuilder::retention(int32_t layer, int64_t source, std::vector<float> values) {
  for (RetentionCurve& r : trace_.retention) {
    if (r.layer == layer && r.source == source) {
      r.values.insert(r.values.end(), values.begin(), values.end());
      return;
    }
  }
  trace_.retention.push_back({layer, source, std::move(values)});
}

Trace TraceBuilder::finish() {
  join_pages();
  std::stable_sort(trace_.events.begin(), trace_.events.end(),
                   [](const PoolEvent& a, const PoolEvent& b) { return a.position < b.position; });
  ensure_length(static_cast<int64_t>(trace_.tokens.size()));
  return std::move(trace_);
}

}  // namespace memmamba
