#include "model/config.h"

#include <cmath>
#include <set>
#include <stdexcept>

#include "model/file_io.h"

namespace memmamba {

const char* to_string(ImportanceRule r) { return r == ImportanceRule::Learned ? "learned" : "novelty"; }
const char* to_string(PoolPolicy p) { return p == PoolPolicy::Priority ? "priority" : "fifo"; }
const char* to_string(FusionKind f) {
  switch (f) {
    case FusionKind::Weighted: return "weighted";
    case FusionKind::Residual: return "residual";
    case FusionKind::Gated: return "gated";
  }
  return "?";
}
ImportanceRule importance_rule_from_string(const std::string& s) {
  if (s == "learned") return ImportanceRule::Learned;
  if (s == "novelty") return ImportanceRule::Novelty;
  throw std::invalid_argument("importance must be \"learned\" or \"novelty\", not \"" + s + "\"");
}
PoolPolicy pool_policy_from_string(const std::string& s) {
  if (s == "priority") return PoolPolicy::Priority;
  if (s == "fifo") return PoolPolicy::Fifo;
  throw std::invalid_argument("pool_policy must be \"priority\" or \"fifo\", not \"" + s + "\"");
}
FusionKind fusion_kind_from_string(const std::string& s) {
  if (s == "weighted") return FusionKind::Weighted;
  if (s == "residual") return FusionKind::Residual;
  if (s == "gated") return FusionKind::Gated;
  throw std::invalid_argument("fusion must be \"weighted\", \"residual\" or \"gated\", not \"" + s + "\"");
}

namespace {
void check_range(const char* name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    throw std::invalid_argument(std::string(name) + " = " + std::to_string(v) + " is outside [" + std::to_string(lo) +
                                ", " + std::to_string(hi) + "]");
}
void check_real(const char* name, double v, double lo, double hi) {
  if (!std::isfinite(v) || v < lo || v > hi)
    throw std::invalid_argument(std::string(name) + " = " + std::to_string(v) + " is outside [" + std::to_string(lo) +
                                ", " + std::to_string(hi) + "]");
}
}  // namespace

void ModelConfig::validate() const {
  check_range("vocab_size", vocab_size, 2, 1 << 20);
  check_range("d_model", d_model, 1, 16384);
  check_range("n_layers", n_layers, 1, 256);
  check_range("d_inner", d_inner, 0, 65536);
  check_range("d_state", d_state, 1, 256);
  check_range("dt_rank", dt_rank, 0, 4096);
  check_range("conv_kernel", conv_kernel, 1, 64);
  check_range("summary_dim", summary_dim, 1, 4096);
  check_range("pool_slots", pool_slots, 1, 4096);
  check_range("note_window", note_window, 1, 65536);
  check_range("memory_context", memory_context, 1, 64);
  check_range("cross_layer_period", cross_layer_period, 0, 256);
  check_range("cross_layer_groups", cross_layer_groups, 1, 256);
  if (cross_layer_groups > n_layers)
    throw std::invalid_argument("cross_layer_groups = " + std::to_string(cross_layer_groups) + " exceeds n_layers = " +
                                std::to_string(n_layers));
  check_real("tau_note", tau_note, -1.0, 2.0);
  check_real("tau_retrieve", tau_retrieve, -1.0, 2.0);
  check_real("norm_eps", norm_eps, 1e-12, 1.0);
  check_real("fusion_init_scale", fusion_init_scale, -10.0, 10.0);
  check_real("fusion_gain", fusion_gain, 0.0, 100.0);
}

Json ModelConfig::to_json() const {
  Json j = Json::object();
  j["vocab_size"] = vocab_size;
  j["d_model"] = d_model;
  j["n_layers"] = n_layers;
  j["d_inner"] = d_inner;
  j["d_state"] = d_state;
  j["dt_rank"] = dt_rank;
  j["conv_kernel"] = conv_kernel;
  j["summary_dim"] = summary_dim;
  j["pool_slots"] = pool_slots;
  j["note_window"] = note_window;
  if (memory_context != 1) j["memory_context"] = memory_context;  // written where used: older readers load the rest
  j["cross_layer_period"] = cross_layer_period;
  j["cross_layer_groups"] = cross_layer_groups;
  j["tau_note"] = tau_note;
  j["tau_retrieve"] = tau_retrieve;
  j["importance"] = to_string(importance);
  j["pool_policy"] = to_string(pool_policy);
  j["fusion"] = to_string(fusion);
  j["memory"] = memory;
  j["norm_eps"] = norm_eps;
  j["fusion_init_scale"] = fusion_init_scale;
  j["fusion_gain"] = fusion_gain;
  return j;
}

ModelConfig ModelConfig::from_json(const Json& j) {
  static const std::set<std::string> known = {
      "vocab_size", "d_model", "n_layers", "d_inner", "d_state", "dt_rank", "conv_kernel",
      "summary_dim", "pool_slots", "note_window", "memory_context", "cross_layer_period", "cross_layer_groups",
      "tau_note", "tau_retrieve", "importance", "pool_policy", "fusion", "memory", "norm_eps",
      "fusion_init_scale", "fusion_gain"};
  ModelConfig c;
  if (!j.is_object()) throw std::invalid_argument("a model config must be a JSON object");
  for (const auto& [key, value] : j.as_object("model config")) {
    if (!known.count(key)) throw std::invalid_argument("unknown config key \"" + key + "\"");
    try {
      if (key == "vocab_size") c.vocab_size = value.as_int(key);
      else if (key == "d_model") c.d_model = value.as_int(key);
      else if (key == "n_layers") c.n_layers = value.as_int(key);
      else if (key == "d_inner") c.d_inner = value.as_int(key);
      else if (key == "d_state") c.d_state = value.as_int(key);
      else if (key == "dt_rank") c.dt_rank = value.as_int(key);
      else if (key == "conv_kernel") c.conv_kernel = value.as_int(key);
      else if (key == "summary_dim") c.summary_dim = value.as_int(key);
      else if (key == "pool_slots") c.pool_slots = value.as_int(key);
      else if (key == "note_window") c.note_window = value.as_int(key);
      else if (key == "memory_context") c.memory_context = value.as_int(key);
      else if (key == "cross_layer_period") c.cross_layer_period = value.as_int(key);
      else if (key == "cross_layer_groups") c.cross_layer_groups = value.as_int(key);
      else if (key == "tau_note") c.tau_note = value.as_double(key);
      else if (key == "tau_retrieve") c.tau_retrieve = value.as_double(key);
      else if (key == "importance") c.importance = importance_rule_from_string(value.as_string(key));
      else if (key == "pool_policy") c.pool_policy = pool_policy_from_string(value.as_string(key));
      else if (key == "fusion") c.fusion = fusion_kind_from_string(value.as_string(key));
      else if (key == "memory") c.memory = value.as_bool(key);
      else if (key == "norm_eps") c.norm_eps = value.as_double(key);
      else if (key == "fusion_init_scale") c.fusion_init_scale = value.as_double(key);
      else if (key == "fusion_gain") c.fusion_gain = value.as_double(key);
    } catch (const JsonError& e) {
      throw std::invalid_argument(std::string("config: ") + e.what());
    }
  }
  c.validate();
  return c;
}

ModelConfig ModelConfig::load(const std::string& path) {
  std::string text = read_file(path, 1 << 20);
  try {
    return from_json(Json::parse(text));
  } catch (const std::exception& e) {
    throw std::invalid_argument(path + ": " + e.what());
  }
}

void ModelConfig::save(const std::string& path) const { write_file_atomic(path, to_json().dump(2) + "\n"); }

}  // namespace memmamba
