// Edits of the memory while a run reads (interventions): what would have happened if a
// note had not been made or had not been evicted, if a note had been planted, if the
// thresholds of one layer were others, or if some tokens could not read the memory.
// Read from a JSON list (`--edit FILE`), recorded in the trace's run info, and applied the
// same way in parallel and step mode, on the CPU and the GPU (a layer whose pool is edited
// walks it on the host; see docs/model.md). Torch-free.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/json.h"

namespace memmamba {

struct Trace;

class EditError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MemoryEdit {
  enum class Kind { Drop, DropFrom, Pin, Plant, Thresholds, MaskRead };
  Kind kind = Kind::Drop;
  int64_t layer = -1;     // Drop, Pin, Plant: the layer; DropFrom, Thresholds, MaskRead: -1 for every layer
  int64_t note = -1;      // Drop, Pin: the layer-local note id (the trace's notes[i].local_id)
  int64_t position = -1;  // Drop: removed after this token (-1: never inserted); Plant: inserted after it
  int64_t source = -1;    // Plant: the token whose candidate summary becomes the note (<= position)
  double tau_note = std::numeric_limits<double>::quiet_NaN();      // Thresholds (NaN: unchanged)
  double tau_retrieve = std::numeric_limits<double>::quiet_NaN();
  // MaskRead: the tokens [begin, end) that may not read; DropFrom: notes with a source
  // token in [begin, end) are made but never kept (the rule "drop the key's notes").
  int64_t begin = 0, end = std::numeric_limits<int64_t>::max();
  bool mask_token = true, mask_layer = true;                         // MaskRead: which reads

  Json to_json() const;
  std::string describe() const;  // one line for a list of edits
};

// One layer's pool edits, as the host walk (NoteTaker) applies them.
struct PoolEdits {
  std::set<int64_t> never_inserted;             // note ids
  std::vector<std::pair<int64_t, int64_t>> never_from;  // source ranges [begin, end)
  std::map<int64_t, std::vector<int64_t>> remove_after;  // position -> note ids
  std::set<int64_t> pinned;                     // note ids
  std::map<int64_t, std::vector<int64_t>> plant_after;   // position -> source tokens
  std::set<int64_t> plant_sources;
  bool empty() const {
    return never_inserted.empty() && never_from.empty() && remove_after.empty() && pinned.empty() && plant_after.empty();
  }
  // Whether a note made of these source tokens is never kept.
  bool drops(int64_t note_id, const std::vector<int64_t>& sources) const;
};

class MemoryEdits {
 public:
  MemoryEdits() = default;
  // Checks every edit against the model (layers, thresholds' ranges, token order) and,
  // where known, the run's length (positions past it are errors); throws EditError.
  MemoryEdits(std::vector<MemoryEdit> edits, const ModelConfig& config, int64_t length = -1);
  static MemoryEdits parse(const Json& list, const ModelConfig& config, int64_t length = -1);
  static MemoryEdits load(const std::string& path, const ModelConfig& config, int64_t length = -1);

  bool empty() const { return edits_.empty(); }
  const std::vector<MemoryEdit>& edits() const { return edits_; }
  Json to_json() const;
  const PoolEdits& pool(int64_t layer) const;
  // The thresholds of `layer` with the edits applied to `tau_note` and `tau_retrieve`.
  void thresholds(int64_t layer, double& tau_note, double& tau_retrieve) const;
  // Whether token `position` of `layer` may read: its own pool (token) or the union (cross-layer).
  bool read_masked(int64_t layer, bool cross_layer, int64_t position) const;
  bool masks_reads(int64_t layer) const;
  // Checks the note ids against what a run made (after it): an id never made is an error.
  void check_note_ids(const std::vector<int64_t>& notes_made_per_layer) const;
  // The same against the notes a traced run recorded.
  void check_note_ids(const Trace& run) const;

 private:
  std::vector<MemoryEdit> edits_;
  std::vector<PoolEdits> pools_;
};

}  // namespace memmamba
