// What a run records, as plain arrays (no torch, no Qt) so that views can link it
// alone: per-layer token signals, sparse attention rows, the notes and the pool
// events (replayable at any token), retention curves and per-token loss. Saved in
// the safetensors layout and loaded back bit-exactly.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/column.h"
#include "model/json.h"

namespace memmamba {

class SafetensorsFile;

constexpr int kTraceFormatVersion = 1;

// kDecimated: the token was not in this layer's scan (DeciMamba dropped it here or before).
enum TokenFlag : uint8_t { kNoted = 1, kTriggered = 2, kAttentionRecorded = 4, kDecimated = 8 };

// Sparse rows of attention weights: row r belongs to token `token[r]`, its entries
// are [offset[r], offset[r+1]).
struct AttentionRows {
  Column<int64_t> token;
  Column<int64_t> offset{0};
  Column<int32_t> slot;        // slot index in the pool (cross-layer: in the pool of `layer`)
  Column<int32_t> layer;       // pool's layer (cross-layer rows) or the row's own layer
  Column<int64_t> note;        // index into Trace::notes
  Column<float> weight;
  size_t rows() const { return token.size(); }
  // Row index of a token, or -1.
  int64_t find(int64_t position) const;
};

struct LayerTrace {
  std::vector<float> importance;
  std::vector<float> istate;
  std::vector<uint8_t> flags;             // TokenFlag bits
  std::vector<float> fusion_token_norm;   // |F_tok(c_tok)| per token
  std::vector<float> fusion_layer_norm;   // |F_lay(c_lay)| per token (0 where the layer has none)
  std::vector<float> log_decay;           // mean over channels and states of dt_t * A
  AttentionRows token_attention;
  AttentionRows layer_attention;
};

struct NoteInfo {
  int32_t layer;
  int64_t local_id;
  int64_t window;
  float priority;
  Column<int64_t> sources;  // noted token positions
};

struct PoolEvent {
  int64_t position;  // visible from position + 1
  int32_t layer;
  uint8_t kind;      // PoolEventKind: 0 insert, 1 evict, 2 drop
  int32_t slot;
  int64_t note;      // index into Trace::notes
  float priority;
};

struct RetentionCurve {
  int32_t layer;
  int64_t source;
  std::vector<float> values;  // values[k]: mean retention of the source's contribution k tokens later
};

struct TraceOptions {
  int32_t attention_topk = 8;          // slots kept per attention row
  int64_t detail_begin = 0;            // attention rows only for tokens in [begin, end)
  int64_t detail_end = std::numeric_limits<int64_t>::max();
  bool record_attention = true;
};

struct Trace {
  Json config;      // the model config
  Json run_info;    // settings of the run: thresholds, policy, memory switch, checkpoint, device...
  std::string text;                 // the UTF-8 text that was tokenized (may be empty)
  std::vector<int32_t> tokens;
  std::vector<int64_t> char_begin;  // byte offsets of each token in `text` (-1 unknown)
  std::vector<int64_t> char_end;
  std::vector<float> loss;          // -log p(tokens[t+1] | ..t); NaN where unknown
  std::vector<LayerTrace> layers;
  std::vector<NoteInfo> notes;
  std::vector<PoolEvent> events;    // ordered by position
  std::vector<RetentionCurve> retention;
  TraceOptions options;
  int64_t pool_slots = 0;

  int64_t length() const { return static_cast<int64_t>(tokens.size()); }
  // The bytes of token t in `text`; nullopt where the trace has no text or no offsets for it.
  std::optional<std::string_view> token_bytes(int64_t t) const;
  // The pool of `layer` as visible at `position`: note index per slot (-1 empty).
  std::vector<int64_t> pool_at(int32_t layer, int64_t position) const;
  uint64_t memory_bytes() const;

  void save(const std::string& path) const;
  static Trace load(const std::string& path);
  // The same from bytes in memory (`origin` names them in errors).
  static Trace parse(std::string bytes, const std::string& origin);

 private:
  static Trace from_safetensors(const SafetensorsFile& f);
};

// What became of note `note` in its layer's pool, from the trace's events: where it entered
// (and which slot), where it was evicted, or that it was dropped; -1 where none.
struct NoteLife {
  int64_t inserted = -1, evicted = -1;
  int32_t slot = -1;
  bool dropped = false;
};
NoteLife note_life(const Trace& trace, int64_t note);

// Speeds up pool_at for scrubbing: snapshots every `stride` events per layer.
class PoolReplay {
 public:
  explicit PoolReplay(const Trace& trace, int64_t stride = 256);
  std::vector<int64_t> pool_at(int32_t layer, int64_t position) const;

 private:
  struct Snapshot {
    int64_t position;   // state after all events with event.position < position
    size_t next_event;  // index into the layer's events
    std::vector<int64_t> slot_notes;  // not "slots": a Qt keyword where views include this
  };
  const Trace& trace_;
  std::vector<std::vector<size_t>> layer_events_;
  std::vector<std::vector<Snapshot>> snapshots_;
};

}  // namespace memmamba
