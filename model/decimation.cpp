#include "model/decimation.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace memmamba {

int64_t DecimationSettings::keep_count(int64_t length, int64_t stage) const {
  const double budget = static_cast<double>(base_length) * std::pow(beta, static_cast<double>(stage));
  const int64_t scaled = budget >= static_cast<double>(length) ? length : static_cast<int64_t>(std::floor(budget));
  return std::min(length, std::max(scaled, min_length));
}

void DecimationSettings::validate(const ModelConfig& config) const {
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || layers[i] >= config.n_layers)
      throw std::invalid_argument("decimation: layer " + std::to_string(layers[i]) + " is out of range (the model has " +
                                  std::to_string(config.n_layers) + " layers, 0-" + std::to_string(config.n_layers - 1) + ")");
    if (i > 0 && layers[i] <= layers[i - 1])
      throw std::invalid_argument("decimation: the layers must be given in ascending order, each once");
  }
  if (base_length < 1) throw std::invalid_argument("decimation: base must be at least 1 token");
  if (!(beta > 0 && beta <= 1)) throw std::invalid_argument("decimation: beta must lie in (0, 1]");
  if (min_length < 1) throw std::invalid_argument("decimation: min must be at least 1 token");
  if (protected_tail < 0) throw std::invalid_argument("decimation: tail must not be negative");
}

Json DecimationSettings::to_json() const {
  Json j = Json::object();
  Json l = Json::array();
  for (int64_t layer : layers) l.push_back(layer);
  j["layers"] = l;
  j["base_length"] = base_length;
  j["beta"] = beta;
  j["min_length"] = min_length;
  j["protected_tail"] = protected_tail;
  return j;
}

DecimationSettings DecimationSettings::defaults_for(const ModelConfig& config) {
  DecimationSettings d;
  // Three quarters of the way up: the sweep on a held-out book (docs/model.md) found the
  // deeper the decimating layer, the less the bundled Mamba-small loses.
  d.layers = {std::max<int64_t>(0, (3 * config.n_layers) / 4)};
  return d;
}

torch::Tensor decimation_keep(const torch::Tensor& scores, int64_t keep, int64_t protected_tail) {
  const int64_t B = scores.size(0), L = scores.size(1);
  const auto opts = torch::TensorOptions().dtype(torch::kInt64).device(scores.device());
  if (keep >= L) return torch::arange(L, opts).unsqueeze(0).expand({B, L}).contiguous();
  const int64_t tail = std::min(protected_tail, keep);
  const int64_t head = L - tail;  // positions the scores choose among
  std::vector<torch::Tensor> parts;
  if (keep > tail) {
    // Highest first; among equal scores the earlier position (a stable descending sort).
    auto order = std::get<1>(scores.narrow(1, 0, head).to(torch::kFloat32).sort(/*stable=*/true, /*dim=*/1, /*descending=*/true));
    parts.push_back(order.narrow(1, 0, keep - tail));
  }
  if (tail > 0) parts.push_back(torch::arange(head, L, opts).unsqueeze(0).expand({B, tail}));
  auto kept = parts.size() == 1 ? parts[0] : torch::cat(parts, 1);
  return std::get<0>(kept.sort(1)).contiguous();
}

}  // namespace memmamba
