// Hyperparameters of a MemMamba model (docs/model.md) with JSON load/save and validation.
#pragma once
#include <cstdint>
#include <string>

#include "model/json.h"

namespace memmamba {

enum class ImportanceRule { Learned, Novelty };
enum class PoolPolicy { Priority, Fifo };
enum class FusionKind { Weighted, Residual, Gated };

const char* to_string(ImportanceRule r);
const char* to_string(PoolPolicy p);
const char* to_string(FusionKind f);
ImportanceRule importance_rule_from_string(const std::string& s);
PoolPolicy pool_policy_from_string(const std::string& s);
FusionKind fusion_kind_from_string(const std::string& s);

struct ModelConfig {
  int64_t vocab_size = 8192;      // V
  int64_t d_model = 256;          // D
  int64_t n_layers = 8;           // L
  int64_t d_inner = 0;            // Di; 0 means 2 * D
  int64_t d_state = 16;           // N
  int64_t dt_rank = 0;            // R; 0 means ceil(D / 16)
  int64_t conv_kernel = 4;        // Kc
  int64_t summary_dim = 64;       // S
  int64_t pool_slots = 50;        // K
  int64_t note_window = 1;        // w
  // Tokens the memory's inputs span (docs/model.md, "C1"): summaries and queries are
  // taken from a learned per-channel mix of the layer input over the last memory_context tokens.
  // 1: the token alone, as in the paper.
  int64_t memory_context = 1;
  int64_t cross_layer_period = 2; // p
  int64_t cross_layer_groups = 2; // g
  double tau_note = 0.3;          // tau1
  double tau_retrieve = 0.5;      // tau2
  ImportanceRule importance = ImportanceRule::Novelty;
  PoolPolicy pool_policy = PoolPolicy::Priority;
  FusionKind fusion = FusionKind::Weighted;
  bool memory = true;             // false: a Mamba-only model (no memory weights at all)
  double norm_eps = 1e-5;
  double fusion_init_scale = 0.1; // initial per-channel scale of the weighted fusion
  // Run-time loudness of the memory's read-out: every fusion term is multiplied by it (1 as
  // trained). Long contexts need a louder read-out than short training rows teach (docs/model.md).
  double fusion_gain = 1.0;

  int64_t inner() const { return d_inner > 0 ? d_inner : 2 * d_model; }
  int64_t rank() const { return dt_rank > 0 ? dt_rank : (d_model + 15) / 16; }
  bool has_cross_layer(int64_t layer) const {
    return memory && cross_layer_period > 0 && (layer + 1) % cross_layer_period == 0;
  }

  // Throws std::invalid_argument naming the first bad field.
  void validate() const;
  Json to_json() const;
  // Unknown keys are refused (a typo must not silently fall back to a default).
  static ModelConfig from_json(const Json& j);
  static ModelConfig load(const std::string& path);
  void save(const std::string& path) const;
  bool operator==(const ModelConfig& o) const { return to_json().dump() == o.to_json().dump(); }
};

}  // namespace memmamba
