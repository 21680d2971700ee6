#include "model/trace_builder.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
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

void TraceBuilder::attention_rows(int32_t layer, bool cross_layer, const std::vector<int64_t>& positions,
                                  int64_t width, const int32_t* column, const int32_t* local_note, const float* weight_in,
                                  const std::vector<int32_t>& column_layer, const std::vector<int32_t>& column_slot) {
  if (positions.empty()) return;
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
  const size_t n = positions.size(), w = static_cast<size_t>(width);
  const int64_t n_layers = static_cast<int64_t>(local_to_global_.size());

  // Two passes over blocks of rows, in parallel where there are many (a traced GPU run hands
  // over millions of entries per chunk): count each row's kept entries and check them, then
  // write them at their prefix-sum offsets.
  std::vector<uint32_t> kept(n, 0);
  std::atomic<int> bad{0};  // 1 column, 2 layer, 3 note
  auto count = [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
      if (!wants_attention(positions[r])) continue;
      uint32_t k = 0;
      for (size_t i = 0; i < w; ++i) {
        const size_t e = r * w + i;
        const int32_t col = column[e];
        if (col < 0) continue;
        if (static_cast<size_t>(col) >= column_layer.size()) { bad = 1; return; }
        const int32_t pool = column_layer[static_cast<size_t>(col)];
        if (pool < 0 || pool >= n_layers) { bad = 2; return; }
        const int64_t local = local_note[e];
        if (local < 0 || local >= static_cast<int64_t>(local_to_global_[static_cast<size_t>(pool)].size())) { bad = 3; return; }
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
  std::vector<size_t> start(n + 1, 0);
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
      size_t at = start[r];
      if (!wants_attention(positions[r])) continue;
      for (size_t i = 0; i < w; ++i) {
        const size_t e = r * w + i;
        const int32_t col = column[e];
        if (col < 0) continue;
        const int32_t pool = column_layer[static_cast<size_t>(col)];
        slot_out[at] = column_slot[static_cast<size_t>(col)];
        layer_out[at] = pool;
        note_out[at] = local_to_global_[static_cast<size_t>(pool)][static_cast<size_t>(local_note[e])];
        weight_out[at] = weight_in[e];
        ++at;
      }
    }
  };
  in_plain_threads(n, n * w, fill);
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
  std::stable_sort(trace_.events.begin(), trace_.events.end(),
                   [](const PoolEvent& a, const PoolEvent& b) { return a.position < b.position; });
  ensure_length(static_cast<int64_t>(trace_.tokens.size()));
  return std::move(trace_);
}

}  // namespace memmamba
