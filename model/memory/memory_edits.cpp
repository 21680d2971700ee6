#include "model/memory/memory_edits.h"

#include <algorithm>
#include <cmath>

#include "model/file_io.h"
#include "model/trace.h"

namespace memmamba {

namespace {

const char* kind_name(MemoryEdit::Kind k) {
  switch (k) {
    case MemoryEdit::Kind::Drop: return "drop";
    case MemoryEdit::Kind::DropFrom: return "drop_from";
    case MemoryEdit::Kind::Pin: return "pin";
    case MemoryEdit::Kind::Plant: return "plant";
    case MemoryEdit::Kind::Thresholds: return "thresholds";
    case MemoryEdit::Kind::MaskRead: return "mask_read";
  }
  return "?";
}

int64_t get_int(const Json& j, const char* key, int64_t fallback, const std::string& where) {
  if (!j.contains(key)) return fallback;
  const Json& v = j.at(key);
  if (!v.is_integer()) throw EditError(where + ": \"" + key + "\" must be an integer");
  return v.as_int();
}

double get_double(const Json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) return std::numeric_limits<double>::quiet_NaN();
  const Json& v = j.at(key);
  if (!v.is_number()) throw EditError(where + ": \"" + key + "\" must be a number");
  return v.as_double();
}

}  // namespace

Json MemoryEdit::to_json() const {
  Json j = Json::object();
  j["kind"] = kind_name(kind);
  if (layer >= 0) j["layer"] = layer;
  switch (kind) {
    case Kind::Drop:
      j["note"] = note;
      if (position >= 0) j["position"] = position;
      break;
    case Kind::DropFrom:
      j["begin"] = begin;
      j["end"] = end;
      break;
    case Kind::Pin: j["note"] = note; break;
    case Kind::Plant:
      j["source"] = source;
      j["position"] = position;
      break;
    case Kind::Thresholds:
      if (!std::isnan(tau_note)) j["tau_note"] = tau_note;
      if (!std::isnan(tau_retrieve)) j["tau_retrieve"] = tau_retrieve;
      break;
    case Kind::MaskRead:
      j["begin"] = begin;
      if (end != std::numeric_limits<int64_t>::max()) j["end"] = end;
      j["reads"] = mask_token && mask_layer ? "both" : mask_token ? "token" : "layer";
      break;
  }
  return j;
}

std::string MemoryEdit::describe() const {
  const std::string in_layer = layer >= 0 ? " in layer " + std::to_string(layer) : " in every layer";
  switch (kind) {
    case Kind::Drop:
      return "drop note " + std::to_string(note) + in_layer +
             (position >= 0 ? " after token " + std::to_string(position) : " (never inserted)");
    case Kind::DropFrom:
      return "drop the notes made of tokens " + std::to_string(begin) + "-" + std::to_string(end - 1) + in_layer;
    case Kind::Pin: return "pin note " + std::to_string(note) + in_layer + " (never evicted)";
    case Kind::Plant:
      return "plant token " + std::to_string(source) + "'s summary as a note" + in_layer + " after token " + std::to_string(position);
    case Kind::Thresholds: {
      std::string s = "thresholds" + in_layer + ":";
      if (!std::isnan(tau_note)) s += " tau1 " + std::to_string(tau_note);
      if (!std::isnan(tau_retrieve)) s += " tau2 " + std::to_string(tau_retrieve);
      return s;
    }
    case Kind::MaskRead:
      return std::string("mask ") + (mask_token && mask_layer ? "every read" : mask_token ? "cross-token reads" : "cross-layer reads") +
             in_layer + " for tokens " + std::to_string(begin) + "-" +
             (end == std::numeric_limits<int64_t>::max() ? std::string("end") : std::to_string(end - 1));
  }
  return "";
}

MemoryEdits::MemoryEdits(std::vector<MemoryEdit> edits, const ModelConfig& config, int64_t length)
    : edits_(std::move(edits)), pools_(static_cast<size_t>(config.n_layers)) {
  if (!edits_.empty() && !config.memory) throw EditError("a Mamba-only model has no memory to edit");
  for (size_t i = 0; i < edits_.size(); ++i) {
    const MemoryEdit& e = edits_[i];
    const std::string where = "edit " + std::to_string(i + 1) + " (" + kind_name(e.kind) + ")";
    const bool needs_layer = e.kind == MemoryEdit::Kind::Drop || e.kind == MemoryEdit::Kind::Pin || e.kind == MemoryEdit::Kind::Plant;
    if ((needs_layer && e.layer < 0) || e.layer >= config.n_layers || e.layer < -1)
      throw EditError(where + ": layer " + std::to_string(e.layer) + " is out of range (the model has " +
                      std::to_string(config.n_layers) + " layers, 0-" + std::to_string(config.n_layers - 1) + ")");
    auto check_position = [&](int64_t p, const char* what) {
      if (p < 0) throw EditError(where + ": " + what + " " + std::to_string(p) + " is negative");
      if (length >= 0 && p >= length)
        throw EditError(where + ": " + what + " " + std::to_string(p) + " is past the text's " + std::to_string(length) + " tokens");
    };
    PoolEdits* pool = e.layer >= 0 ? &pools_[static_cast<size_t>(e.layer)] : nullptr;
    if (e.kind == MemoryEdit::Kind::DropFrom) {
      check_position(e.begin, "begin");
      if (e.end <= e.begin || e.end == std::numeric_limits<int64_t>::max())
        throw EditError(where + ": give \"begin\" and an \"end\" after it");
      for (int64_t l = 0; l < config.n_layers; ++l)
        if (e.layer < 0 || e.layer == l) pools_[static_cast<size_t>(l)].never_from.emplace_back(e.begin, e.end);
      continue;
    }
    switch (e.kind) {
      case MemoryEdit::Kind::DropFrom: break;  // handled above
      case MemoryEdit::Kind::Drop:
        if (e.note < 0) throw EditError(where + ": \"note\" (a layer-local note id, 0 or more) is missing");
        if (e.position >= 0) {
          check_position(e.position, "position");
          pool->remove_after[e.position].push_back(e.note);
        } else {
          pool->never_inserted.insert(e.note);
        }
        break;
      case MemoryEdit::Kind::Pin:
        if (e.note < 0) throw EditError(where + ": \"note\" (a layer-local note id, 0 or more) is missing");
        pool->pinned.insert(e.note);
        break;
      case MemoryEdit::Kind::Plant:
        check_position(e.source, "source");
        check_position(e.position, "position");
        if (e.source > e.position)
          throw EditError(where + ": the source token " + std::to_string(e.source) + " comes after position " +
                          std::to_string(e.position) + " (a note can only be made of a token already read)");
        pool->plant_after[e.position].push_back(e.source);
        pool->plant_sources.insert(e.source);
        break;
      case MemoryEdit::Kind::Thresholds:
        if (std::isnan(e.tau_note) && std::isnan(e.tau_retrieve)) throw EditError(where + ": give tau_note, tau_retrieve or both");
        for (double t : {e.tau_note, e.tau_retrieve})
          if (!std::isnan(t) && !(t >= -1 && t <= 3)) throw EditError(where + ": a threshold must lie in [-1, 3]");
        break;
      case MemoryEdit::Kind::MaskRead:
        check_position(e.begin, "begin");
        if (e.end <= e.begin) throw EditError(where + ": end must come after begin");
        if (!e.mask_token && !e.mask_layer) throw EditError(where + ": mask at least one read");
        break;
    }
  }
}

MemoryEdits MemoryEdits::parse(const Json& list, const ModelConfig& config, int64_t length) {
  if (!list.is_array()) throw EditError("an edit file holds a JSON list of edits, e.g. [{\"kind\": \"drop\", \"layer\": 0, \"note\": 3}]");
  std::vector<MemoryEdit> edits;
  size_t i = 0;
  for (const Json& j : list.as_array()) {
    const std::string where = "edit " + std::to_string(++i);
    if (!j.is_object() || !j.contains("kind") || !j.at("kind").is_string())
      throw EditError(where + ": an object with a \"kind\" (drop, drop_from, pin, plant, thresholds, mask_read)");
    static const std::set<std::string> kKnown = {"kind", "layer", "note", "position", "source", "tau_note",
                                                 "tau_retrieve", "begin", "end", "reads"};
    for (const auto& [key, value] : j.as_object())
      if (!kKnown.count(key)) throw EditError(where + ": unknown field \"" + key + "\"");
    MemoryEdit e;
    const std::string kind = j.at("kind").as_string();
    if (kind == "drop") e.kind = MemoryEdit::Kind::Drop;
    else if (kind == "drop_from") e.kind = MemoryEdit::Kind::DropFrom;
    else if (kind == "pin") e.kind = MemoryEdit::Kind::Pin;
    else if (kind == "plant") e.kind = MemoryEdit::Kind::Plant;
    else if (kind == "thresholds") e.kind = MemoryEdit::Kind::Thresholds;
    else if (kind == "mask_read") e.kind = MemoryEdit::Kind::MaskRead;
    else throw EditError(where + ": unknown kind \"" + kind + "\" (drop, drop_from, pin, plant, thresholds, mask_read)");
    e.layer = get_int(j, "layer", -1, where);
    e.note = get_int(j, "note", -1, where);
    e.position = get_int(j, "position", -1, where);
    e.source = get_int(j, "source", -1, where);
    e.tau_note = get_double(j, "tau_note", where);
    e.tau_retrieve = get_double(j, "tau_retrieve", where);
    e.begin = get_int(j, "begin", 0, where);
    e.end = get_int(j, "end", std::numeric_limits<int64_t>::max(), where);
    if (j.contains("reads")) {
      if (!j.at("reads").is_string()) throw EditError(where + ": \"reads\" is token, layer or both");
      const std::string reads = j.at("reads").as_string();
      if (reads == "token") e.mask_layer = false;
      else if (reads == "layer") e.mask_token = false;
      else if (reads != "both") throw EditError(where + ": \"reads\" is token, layer or both");
    }
    if (e.kind == MemoryEdit::Kind::Plant && (e.source < 0 || e.position < 0))
      throw EditError(where + ": a plant needs \"source\" and \"position\"");
    edits.push_back(e);
  }
  return MemoryEdits(std::move(edits), config, length);
}

MemoryEdits MemoryEdits::load(const std::string& path, const ModelConfig& config, int64_t length) {
  std::string text;
  try {
    text = read_file(path, 16 << 20);
  } catch (const FileError& e) {
    throw EditError(e.what());
  }
  Json j;
  try {
    j = Json::parse(text);
  } catch (const std::exception& e) {
    throw EditError(path + " is not JSON: " + e.what());
  }
  try {
    return parse(j, config, length);
  } catch (const EditError& e) {
    throw EditError(path + ": " + e.what());
  }
}

bool PoolEdits::drops(int64_t note_id, const std::vector<int64_t>& sources) const {
  if (never_inserted.count(note_id)) return true;
  for (const auto& [begin, end] : never_from)
    for (int64_t s : sources)
      if (s >= begin && s < end) return true;
  return false;
}

Json MemoryEdits::to_json() const {
  Json list = Json::array();
  for (const MemoryEdit& e : edits_) list.push_back(e.to_json());
  return list;
}

const PoolEdits& MemoryEdits::pool(int64_t layer) const {
  static const PoolEdits kNone;
  return layer >= 0 && layer < static_cast<int64_t>(pools_.size()) ? pools_[static_cast<size_t>(layer)] : kNone;
}

void MemoryEdits::thresholds(int64_t layer, double& tau_note, double& tau_retrieve) const {
  for (const MemoryEdit& e : edits_) {
    if (e.kind != MemoryEdit::Kind::Thresholds || (e.layer >= 0 && e.layer != layer)) continue;
    if (!std::isnan(e.tau_note)) tau_note = e.tau_note;
    if (!std::isnan(e.tau_retrieve)) tau_retrieve = e.tau_retrieve;
  }
}

bool MemoryEdits::masks_reads(int64_t layer) const {
  for (const MemoryEdit& e : edits_)
    if (e.kind == MemoryEdit::Kind::MaskRead && (e.layer < 0 || e.layer == layer)) return true;
  return false;
}

bool MemoryEdits::read_masked(int64_t layer, bool cross_layer, int64_t position) const {
  for (const MemoryEdit& e : edits_) {
    if (e.kind != MemoryEdit::Kind::MaskRead || (e.layer >= 0 && e.layer != layer)) continue;
    if ((cross_layer ? e.mask_layer : e.mask_token) && position >= e.begin && position < e.end) return true;
  }
  return false;
}

void MemoryEdits::check_note_ids(const std::vector<int64_t>& made) const {
  for (const MemoryEdit& e : edits_) {
    if (e.kind != MemoryEdit::Kind::Drop && e.kind != MemoryEdit::Kind::Pin) continue;
    const int64_t n = e.layer < static_cast<int64_t>(made.size()) ? made[static_cast<size_t>(e.layer)] : 0;
    if (e.note >= n)
      throw EditError("note " + std::to_string(e.note) + " of layer " + std::to_string(e.layer) +
                      " was never made in this run (layer " + std::to_string(e.layer) + " made " + std::to_string(n) +
                      " notes, ids 0-" + std::to_string(n - 1) + ")");
  }
}

}  // namespace memmamba

namespace memmamba {

void MemoryEdits::check_note_ids(const Trace& run) const {
  std::vector<int64_t> made(run.layers.size(), 0);
  for (const NoteInfo& n : run.notes)
    if (n.layer >= 0 && static_cast<size_t>(n.layer) < made.size())
      made[static_cast<size_t>(n.layer)] = std::max(made[static_cast<size_t>(n.layer)], n.local_id + 1);
  check_note_ids(made);
}

}  // namespace memmamba
