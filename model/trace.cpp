#include "model/trace.h"

#include <algorithm>
#include <exception>
#include <future>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "model/safetensors.h"

namespace memmamba {

int64_t AttentionRows::find(int64_t position) const {
  auto it = std::lower_bound(token.begin(), token.end(), position);
  if (it == token.end() || *it != position) return -1;
  return it - token.begin();
}

std::vector<int64_t> Trace::pool_at(int32_t layer, int64_t position) const {
  std::vector<int64_t> slots(static_cast<size_t>(pool_slots), -1);
  for (const PoolEvent& e : events) {
    if (e.position >= position) break;
    if (e.layer != layer || e.slot < 0) continue;
    if (e.kind == 0) slots[e.slot] = e.note;
    else if (e.kind == 1 && slots[e.slot] == e.note) slots[e.slot] = -1;
  }
  return slots;
}

std::optional<std::string_view> Trace::token_bytes(int64_t t) const {
  if (t < 0 || t >= static_cast<int64_t>(char_begin.size()) || char_begin[t] < 0 || text.empty()) return std::nullopt;
  const auto size = static_cast<int64_t>(text.size());
  const int64_t b = std::min(char_begin[t], size);
  const int64_t e = std::clamp<int64_t>(t < static_cast<int64_t>(char_end.size()) ? char_end[t] : b, b, size);
  return std::string_view(text).substr(static_cast<size_t>(b), static_cast<size_t>(e - b));
}

NoteLife note_life(const Trace& trace, int64_t note) {
  NoteLife life;
  for (const PoolEvent& e : trace.events) {
    if (e.note != note) continue;
    if (e.kind == 0) {
      life.inserted = e.position;
      life.slot = e.slot;
    } else if (e.kind == 1) {
      life.evicted = e.position;
    } else {
      life.dropped = true;
    }
  }
  return life;
}

PoolReplay::PoolReplay(const Trace& trace, int64_t stride) : trace_(trace) {
  const size_t L = trace.layers.size();
  layer_events_.resize(L);
  snapshots_.resize(L);
  for (size_t i = 0; i < trace.events.size(); ++i) {
    const auto layer = trace.events[i].layer;
    if (layer >= 0 && static_cast<size_t>(layer) < L) layer_events_[layer].push_back(i);
  }
  for (size_t l = 0; l < L; ++l) {
    std::vector<int64_t> slots(static_cast<size_t>(trace.pool_slots), -1);
    snapshots_[l].push_back({std::numeric_limits<int64_t>::min(), 0, slots});
    const auto& idx = layer_events_[l];
    int64_t since_snapshot = 0;
    for (size_t k = 0; k < idx.size(); ++k) {
      const PoolEvent& e = trace.events[idx[k]];
      if (e.kind == 0) slots[e.slot] = e.note;
      else if (e.kind == 1 && slots[e.slot] == e.note) slots[e.slot] = -1;
      // Snapshots sit between positions, never between two events of one position.
      const bool boundary = k + 1 == idx.size() || trace.events[idx[k + 1]].position != e.position;
      if (++since_snapshot >= stride && boundary) {
        snapshots_[l].push_back({e.position + 1, k + 1, slots});
        since_snapshot = 0;
      }
    }
  }
}

std::vector<int64_t> PoolReplay::pool_at(int32_t layer, int64_t position) const {
  if (layer < 0 || static_cast<size_t>(layer) >= snapshots_.size()) return {};
  const auto& snaps = snapshots_[layer];
  auto it = std::upper_bound(snaps.begin(), snaps.end(), position,
                             [](int64_t p, const Snapshot& s) { return p < s.position; });
  const Snapshot& snap = *(it - 1);
  std::vector<int64_t> slots = snap.slot_notes;
  const auto& idx = layer_events_[layer];
  for (size_t k = snap.next_event; k < idx.size(); ++k) {
    const PoolEvent& e = trace_.events[idx[k]];
    if (e.position >= position) break;
    if (e.kind == 0) slots[e.slot] = e.note;
    else if (e.kind == 1 && slots[e.slot] == e.note) slots[e.slot] = -1;
  }
  return slots;
}

namespace {

// A typed, read-only view of a tensor in the file (no copy: large traces are mapped).
// `keep` owns the memory `data` points into, so columns can view slices of it.
template <typename T>
struct ArrayView {
  const T* data = nullptr;
  size_t n = 0;
  std::shared_ptr<const void> keep;
  size_t size() const { return n; }
  const T& operator[](size_t i) const { return data[i]; }
  const T& front() const { return data[0]; }
  const T& back() const { return data[n - 1]; }
  const T* begin() const { return data; }
  Column<T> slice(size_t first, size_t count) const { return Column<T>::mapped(data + first, count, keep); }
  Column<T> column() const { return slice(0, n); }
};

template <typename T>
ArrayView<T> view_of(const SafetensorsFile& f, const std::string& name, DType dtype) {
  const TensorView& v = f.get(name, dtype);
  if (dtype_size(dtype) != sizeof(T)) throw FormatError("internal: element size mismatch for " + name);
  ArrayView<T> out;
  out.n = static_cast<size_t>(v.nbytes / sizeof(T));
  // Files written by this build keep every array aligned for its type; others are copied.
  if (reinterpret_cast<uintptr_t>(v.data) % alignof(T) == 0) {
    out.data = reinterpret_cast<const T*>(v.data);
    out.keep = f.storage();
  } else {
    auto copy = std::make_shared<std::vector<T>>(out.n);
    if (v.nbytes) std::memcpy(copy->data(), v.data, v.nbytes);
    out.data = copy->data();
    out.keep = std::move(copy);
  }
  return out;
}

template <typename Container>
uint64_t bytes_of(const Container& v) { return v.size() * sizeof(typename Container::value_type); }

uint64_t rows_bytes(const AttentionRows& r) {
  return bytes_of(r.token) + bytes_of(r.offset) + bytes_of(r.slot) + bytes_of(r.layer) + bytes_of(r.note) +
         bytes_of(r.weight);
}

void add_rows(SafetensorsWriter& w, const std::string& prefix, const AttentionRows& r) {
  w.add_vector_view(prefix + ".token", DType::I64, r.token);
  w.add_vector_view(prefix + ".offset", DType::I64, r.offset);
  w.add_vector_view(prefix + ".slot", DType::I32, r.slot);
  w.add_vector_view(prefix + ".layer", DType::I32, r.layer);
  w.add_vector_view(prefix + ".note", DType::I64, r.note);
  w.add_vector_view(prefix + ".weight", DType::F32, r.weight);
}

[[noreturn]] void bad(const SafetensorsFile& f, const std::string& msg) {
  throw FormatError(f.origin() + ": not a valid trace: " + msg);
}

AttentionRows read_rows(const SafetensorsFile& f, const std::string& prefix, size_t n_notes, int64_t length) {
  AttentionRows r;
  r.token = view_of<int64_t>(f, prefix + ".token", DType::I64).column();
  r.offset = view_of<int64_t>(f, prefix + ".offset", DType::I64).column();
  r.slot = view_of<int32_t>(f, prefix + ".slot", DType::I32).column();
  r.layer = view_of<int32_t>(f, prefix + ".layer", DType::I32).column();
  r.note = view_of<int64_t>(f, prefix + ".note", DType::I64).column();
  r.weight = view_of<float>(f, prefix + ".weight", DType::F32).column();
  const size_t entries = r.slot.size();
  if (r.offset.size() != r.token.size() + 1 || r.offset.front() != 0 || static_cast<size_t>(r.offset.back()) != entries)
    bad(f, prefix + " offsets do not match its rows and entries");
  if (r.layer.size() != entries || r.note.size() != entries || r.weight.size() != entries)
    bad(f, prefix + " entry arrays differ in length");
  for (size_t i = 0; i < r.token.size(); ++i) {
    if (r.offset[i + 1] < r.offset[i]) bad(f, prefix + " offsets decrease");
    if (r.token[i] < 0 || r.token[i] >= length || (i > 0 && r.token[i] <= r.token[i - 1]))
      bad(f, prefix + " row tokens out of range or unordered");
  }
  for (int64_t n : r.note)
    if (n < 0 || static_cast<size_t>(n) >= n_notes) bad(f, prefix + " refers to a note that does not exist");
  return r;
}
}  // namespace

uint64_t Trace::memory_bytes() const {
  uint64_t b = text.size() + bytes_of(tokens) + bytes_of(char_begin) + bytes_of(char_end) + bytes_of(loss);
  for (const auto& l : layers)
    b += bytes_of(l.importance) + bytes_of(l.istate) + bytes_of(l.flags) + bytes_of(l.fusion_token_norm) +
         bytes_of(l.fusion_layer_norm) + bytes_of(l.log_decay) + rows_bytes(l.token_attention) +
         rows_bytes(l.layer_attention);
  for (const auto& n : notes) b += sizeof(NoteInfo) + bytes_of(n.sources);
  b += bytes_of(events);
  for (const auto& r : retention) b += sizeof(RetentionCurve) + bytes_of(r.values);
  return b;
}

void Trace::save(const std::string& path) const {
  SafetensorsWriter w;
  w.set_metadata("format", "memmamba-trace");
  w.set_metadata("version", std::to_string(kTraceFormatVersion));
  w.set_metadata("config", config.dump());
  w.set_metadata("run_info", run_info.dump());
  Json opts = Json::object();
  opts["attention_topk"] = static_cast<int64_t>(options.attention_topk);
  opts["detail_begin"] = options.detail_begin;
  opts["detail_end"] = options.detail_end;
  opts["record_attention"] = options.record_attention;
  w.set_metadata("options", opts.dump());
  w.set_metadata("pool_slots", std::to_string(pool_slots));
  w.set_metadata("layers", std::to_string(layers.size()));
  w.add_view("text", DType::U8, {static_cast<int64_t>(text.size())}, text.data(), text.size());
  w.add_vector_view("tokens", DType::I32, tokens);
  w.add_vector_view("char_begin", DType::I64, char_begin);
  w.add_vector_view("char_end", DType::I64, char_end);
  w.add_vector_view("loss", DType::F32, loss);
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerTrace& lt = layers[l];
    const std::string p = "layers." + std::to_string(l);
    w.add_vector_view(p + ".importance", DType::F32, lt.importance);
    w.add_vector_view(p + ".istate", DType::F32, lt.istate);
    w.add_vector_view(p + ".flags", DType::U8, lt.flags);
    w.add_vector_view(p + ".fusion_token_norm", DType::F32, lt.fusion_token_norm);
    w.add_vector_view(p + ".fusion_layer_norm", DType::F32, lt.fusion_layer_norm);
    w.add_vector_view(p + ".log_decay", DType::F32, lt.log_decay);
    add_rows(w, p + ".token_attention", lt.token_attention);
    add_rows(w, p + ".layer_attention", lt.layer_attention);
  }
  std::vector<int32_t> n_layer;
  std::vector<int64_t> n_local, n_window, n_src_off{0}, n_src;
  std::vector<float> n_prio;
  for (const NoteInfo& n : notes) {
    n_layer.push_back(n.layer);
    n_local.push_back(n.local_id);
    n_window.push_back(n.window);
    n_prio.push_back(n.priority);
    n_src.insert(n_src.end(), n.sources.begin(), n.sources.end());
    n_src_off.push_back(static_cast<int64_t>(n_src.size()));
  }
  w.add_vector_view("notes.layer", DType::I32, n_layer);
  w.add_vector_view("notes.local_id", DType::I64, n_local);
  w.add_vector_view("notes.window", DType::I64, n_window);
  w.add_vector_view("notes.priority", DType::F32, n_prio);
  w.add_vector_view("notes.sources_offset", DType::I64, n_src_off);
  w.add_vector_view("notes.sources", DType::I64, n_src);
  std::vector<int64_t> e_pos, e_note;
  std::vector<int32_t> e_layer, e_slot;
  std::vector<uint8_t> e_kind;
  std::vector<float> e_prio;
  for (const PoolEvent& e : events) {
    e_pos.push_back(e.position);
    e_layer.push_back(e.layer);
    e_kind.push_back(e.kind);
    e_slot.push_back(e.slot);
    e_note.push_back(e.note);
    e_prio.push_back(e.priority);
  }
  w.add_vector_view("events.position", DType::I64, e_pos);
  w.add_vector_view("events.layer", DType::I32, e_layer);
  w.add_vector_view("events.kind", DType::U8, e_kind);
  w.add_vector_view("events.slot", DType::I32, e_slot);
  w.add_vector_view("events.note", DType::I64, e_note);
  w.add_vector_view("events.priority", DType::F32, e_prio);
  std::vector<int32_t> r_layer;
  std::vector<int64_t> r_source, r_off{0};
  std::vector<float> r_values;
  for (const RetentionCurve& r : retention) {
    r_layer.push_back(r.layer);
    r_source.push_back(r.source);
    r_values.insert(r_values.end(), r.values.begin(), r.values.end());
    r_off.push_back(static_cast<int64_t>(r_values.size()));
  }
  w.add_vector_view("retention.layer", DType::I32, r_layer);
  w.add_vector_view("retention.source", DType::I64, r_source);
  w.add_vector_view("retention.offset", DType::I64, r_off);
  w.add_vector_view("retention.values", DType::F32, r_values);
  w.write(path);
}

Trace Trace::load(const std::string& path) { return from_safetensors(SafetensorsFile::load(path)); }

Trace Trace::parse(std::string bytes, const std::string& origin) {
  return from_safetensors(SafetensorsFile::parse(std::move(bytes), origin));
}

Trace Trace::from_safetensors(const SafetensorsFile& f) {
  const auto& meta = f.metadata();
  auto meta_get = [&](const std::string& key) -> const std::string& {
    auto it = meta.find(key);
    if (it == meta.end()) bad(f, "metadata \"" + key + "\" is missing");
    return it->second;
  };
  if (!meta.count("format") || meta.at("format") != "memmamba-trace")
    bad(f, "it is not a MemMamba trace (a checkpoint or another safetensors file?)");
  if (meta_get("version") != std::to_string(kTraceFormatVersion))
    bad(f, "trace format version " + meta_get("version") + " is not supported (this build reads version " +
               std::to_string(kTraceFormatVersion) + ")");
  Trace t;
  try {
    t.config = Json::parse(meta_get("config"));
    t.run_info = Json::parse(meta_get("run_info"));
    Json opts = Json::parse(meta_get("options"));
    t.options.attention_topk = static_cast<int32_t>(opts.at("attention_topk").as_int());
    t.options.detail_begin = opts.at("detail_begin").as_int();
    t.options.detail_end = opts.at("detail_end").as_int();
    t.options.record_attention = opts.at("record_attention").as_bool();
    t.pool_slots = std::stoll(meta_get("pool_slots"));
  } catch (const FormatError&) {
    throw;
  } catch (const std::exception& e) {
    bad(f, std::string("bad metadata: ") + e.what());
  }
  int64_t n_layers = 0;
  try {
    n_layers = std::stoll(meta_get("layers"));
  } catch (const std::exception&) {
    bad(f, "bad layer count");
  }
  if (n_layers < 0 || n_layers > 4096) bad(f, "bad layer count");
  if (t.pool_slots < 0 || t.pool_slots > 1 << 20) bad(f, "bad pool size");
  const TensorView& text = f.get("text", DType::U8);
  t.text.assign(reinterpret_cast<const char*>(text.data), text.nbytes);
  t.tokens = f.read_vector<int32_t>("tokens", DType::I32);
  t.char_begin = f.read_vector<int64_t>("char_begin", DType::I64);
  t.char_end = f.read_vector<int64_t>("char_end", DType::I64);
  t.loss = f.read_vector<float>("loss", DType::F32);
  const size_t T = t.tokens.size();
  if (t.char_begin.size() != T || t.char_end.size() != T || t.loss.size() != T)
    bad(f, "per-token arrays differ in length");
  for (size_t i = 0; i < T; ++i)
    if (t.char_begin[i] < -1 || t.char_end[i] < t.char_begin[i] || t.char_end[i] > static_cast<int64_t>(t.text.size()))
      bad(f, "token offsets point outside the text");

  const ArrayView<int32_t> n_layer = view_of<int32_t>(f, "notes.layer", DType::I32);
  const ArrayView<int64_t> n_local = view_of<int64_t>(f, "notes.local_id", DType::I64);
  const ArrayView<int64_t> n_window = view_of<int64_t>(f, "notes.window", DType::I64);
  const ArrayView<float> n_prio = view_of<float>(f, "notes.priority", DType::F32);
  const ArrayView<int64_t> n_off = view_of<int64_t>(f, "notes.sources_offset", DType::I64);
  const ArrayView<int64_t> n_src = view_of<int64_t>(f, "notes.sources", DType::I64);
  const size_t n_notes = n_layer.size();
  if (n_local.size() != n_notes || n_window.size() != n_notes || n_prio.size() != n_notes ||
      n_off.size() != n_notes + 1 || n_off.front() != 0 || static_cast<size_t>(n_off.back()) != n_src.size())
    bad(f, "note arrays are inconsistent");
  const ArrayView<int64_t> e_pos = view_of<int64_t>(f, "events.position", DType::I64);
  const ArrayView<int32_t> e_layer = view_of<int32_t>(f, "events.layer", DType::I32);
  const ArrayView<uint8_t> e_kind = view_of<uint8_t>(f, "events.kind", DType::U8);
  const ArrayView<int32_t> e_slot = view_of<int32_t>(f, "events.slot", DType::I32);
  const ArrayView<int64_t> e_note = view_of<int64_t>(f, "events.note", DType::I64);
  const ArrayView<float> e_prio = view_of<float>(f, "events.priority", DType::F32);
  const size_t n_events = e_pos.size();
  if (e_layer.size() != n_events || e_kind.size() != n_events || e_slot.size() != n_events ||
      e_note.size() != n_events || e_prio.size() != n_events)
    bad(f, "event arrays differ in length");
  // Notes, events and each layer are independent: read them on parallel threads (a 1M-token
  // trace holds millions of notes and events and gigabytes of rows).
  t.layers.resize(static_cast<size_t>(n_layers));
  std::vector<std::future<void>> parts;
  parts.push_back(std::async(std::launch::async, [&] {
    t.notes.reserve(n_notes);
    for (size_t i = 0; i < n_notes; ++i) {
      if (n_off[i + 1] < n_off[i] || static_cast<size_t>(n_off[i + 1]) > n_src.size())
        bad(f, "note sources offsets decrease or run past the sources");
      if (n_layer[i] < 0 || n_layer[i] >= n_layers) bad(f, "a note belongs to a layer that does not exist");
      if (n_local[i] < 0 || n_window[i] < 0 || static_cast<uint64_t>(n_window[i]) > T)
        bad(f, "a note's id or window is out of range");
      NoteInfo n{n_layer[i], n_local[i], n_window[i], n_prio[i],
                 n_src.slice(static_cast<size_t>(n_off[i]), static_cast<size_t>(n_off[i + 1] - n_off[i]))};
      for (int64_t s : n.sources)
        if (s < 0 || static_cast<size_t>(s) >= T) bad(f, "a note's source lies outside the text");
      t.notes.push_back(std::move(n));
    }
  }));
  parts.push_back(std::async(std::launch::async, [&] {
    t.events.reserve(n_events);
    for (size_t i = 0; i < n_events; ++i) {
      if (i > 0 && e_pos[i] < e_pos[i - 1]) bad(f, "events are not ordered by position");
      if (e_layer[i] < 0 || e_layer[i] >= n_layers || e_kind[i] > 2 || e_slot[i] < -1 || e_slot[i] >= t.pool_slots ||
          (e_kind[i] != 2 && e_slot[i] < 0) || e_note[i] < 0 || static_cast<size_t>(e_note[i]) >= n_notes)
        bad(f, "event " + std::to_string(i) + " is out of range");
      t.events.push_back({e_pos[i], e_layer[i], e_kind[i], e_slot[i], e_note[i], e_prio[i]});
    }
  }));
  for (int64_t l = 0; l < n_layers; ++l) {
    parts.push_back(std::async(std::launch::async, [&, l] {
      LayerTrace& lt = t.layers[l];
      const std::string p = "layers." + std::to_string(l);
      lt.importance = f.read_vector<float>(p + ".importance", DType::F32);
      lt.istate = f.read_vector<float>(p + ".istate", DType::F32);
      lt.flags = f.read_vector<uint8_t>(p + ".flags", DType::U8);
      lt.fusion_token_norm = f.read_vector<float>(p + ".fusion_token_norm", DType::F32);
      lt.fusion_layer_norm = f.read_vector<float>(p + ".fusion_layer_norm", DType::F32);
      lt.log_decay = f.read_vector<float>(p + ".log_decay", DType::F32);
      if (lt.importance.size() != T || lt.istate.size() != T || lt.flags.size() != T ||
          lt.fusion_token_norm.size() != T || lt.fusion_layer_norm.size() != T || lt.log_decay.size() != T)
        bad(f, "layer " + std::to_string(l) + " arrays do not match the token count");
      lt.token_attention = read_rows(f, p + ".token_attention", n_notes, static_cast<int64_t>(T));
      lt.layer_attention = read_rows(f, p + ".layer_attention", n_notes, static_cast<int64_t>(T));
      for (int32_t s : lt.token_attention.slot)
        if (s < 0 || s >= t.pool_slots) bad(f, "attention slot out of range");
    }));
  }
  // Wait for all of them before rethrowing the first failure: they use this frame's views.
  std::exception_ptr failure;
  for (auto& part : parts) {
    try {
      part.get();
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);

  std::vector<int32_t> r_layer = f.read_vector<int32_t>("retention.layer", DType::I32);
  std::vector<int64_t> r_source = f.read_vector<int64_t>("retention.source", DType::I64);
  std::vector<int64_t> r_off = f.read_vector<int64_t>("retention.offset", DType::I64);
  std::vector<float> r_values = f.read_vector<float>("retention.values", DType::F32);
  if (r_source.size() != r_layer.size() || r_off.size() != r_layer.size() + 1 || r_off.front() != 0 ||
      static_cast<size_t>(r_off.back()) != r_values.size())
    bad(f, "retention arrays are inconsistent");
  for (size_t i = 0; i < r_layer.size(); ++i) {
    if (r_off[i + 1] < r_off[i] || r_layer[i] < 0 || r_layer[i] >= n_layers) bad(f, "retention curve out of range");
    t.retention.push_back({r_layer[i], r_source[i],
                           std::vector<float>(r_values.begin() + r_off[i], r_values.begin() + r_off[i + 1])});
  }
  return t;
}

}  // namespace memmamba
