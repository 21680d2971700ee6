// The model's named tensors: the one place where parameter names and shapes are
// defined (checkpoints are checked against it) and where they are initialised.
#pragma once
#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

#include "model/config.h"

namespace memmamba {

struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
};

std::vector<ParamSpec> parameter_specs(const ModelConfig& config);

// Whether a parameter name ends with `suffix` (names are dotted paths: "layers.3.mixer.A_log").
inline bool name_ends_with(const std::string& name, const std::string& suffix) {
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}
int64_t parameter_count(const ModelConfig& config);

class Weights {
 public:
  Weights() = default;
  // Mamba-style initialisation (dt bias from [1e-3, 1e-1], A = 1..N), seeded.
  static Weights random(const ModelConfig& config, uint64_t seed);

  const torch::Tensor& operator[](const std::string& name) const;
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  void set(const std::string& name, torch::Tensor t) { tensors_[name] = std::move(t); }
  const std::map<std::string, torch::Tensor>& all() const { return tensors_; }
  std::vector<torch::Tensor> parameters() const;
  void to(const torch::Device& device);
  void set_requires_grad(bool on);

 private:
  std::map<std::string, torch::Tensor> tensors_;
};

std::string layer_prefix(int64_t layer);

// Sets every layer's context-mix taps (ModelConfig::memory_context > 1) to 1 on the token and
// `earlier` on each token before it: a start from which the memory's keys and queries already
// hold the words before a note (docs/model.md, "C1").
void set_earlier_context_taps(Weights& weights, const ModelConfig& config, double earlier);

}  // namespace memmamba
