#include "model/eval/fidelity.h"

#include <torch/torch.h>

#include <cmath>
#include <stdexcept>

#include "model/eval/result.h"
#include "model/mamba_mixer.h"

namespace memmamba::eval {

double etmf(const torch::Tensor& E, const torch::Tensor& hidden, const std::vector<int32_t>& tokens, int64_t delta) {
  const int64_t T = hidden.size(0);
  if (delta < 0 || delta >= T) return std::nan("");
  torch::NoGradGuard no_grad;
  double total = 0;
  int64_t count = 0;
  for (int64_t r0 = 0; r0 + delta < T; r0 += 1024) {
    const int64_t n = std::min<int64_t>(1024, T - delta - r0);
    auto p = torch::softmax(project(hidden.narrow(0, r0 + delta, n), E), -1);  // predictions at i + delta
    auto reconstructed = torch::matmul(p, E);                                   // [n, D]
    std::vector<int64_t> ids(tokens.begin() + r0, tokens.begin() + r0 + n);
    auto original = E.index_select(0, torch::tensor(ids, torch::kInt64).to(E.device()));
    total += torch::cosine_similarity(original, reconstructed, 1, 1e-8).sum().item<double>();
    count += n;
  }
  return total / static_cast<double>(count);
}

double ridge_reconstruction_score(const torch::Tensor& X_in, const torch::Tensor& Y_in, double lambda) {
  torch::NoGradGuard no_grad;
  auto X = X_in.to(torch::kFloat64), Y = Y_in.to(torch::kFloat64);
  const int64_t D = X.size(1);
  auto gram = torch::matmul(X.t(), X) + lambda * torch::eye(D, X.options());
  auto W = at::linalg_solve(gram, torch::matmul(X.t(), Y));
  const double residual = (Y - torch::matmul(X, W)).norm().item<double>();
  return 1.0 - residual / (X.norm().item<double>() + 1e-6);
}

Json memory_fidelity(const MemMambaModel& model, const std::vector<int32_t>& tokens, const FidelityOptions& options) {
  torch::NoGradGuard no_grad;
  const int64_t T = static_cast<int64_t>(tokens.size()), L = model.config().n_layers;
  if (T < 2) throw std::invalid_argument("fidelity: the text needs at least 2 tokens");
  if (options.run.decimation.enabled())
    throw std::invalid_argument("fidelity: a decimated (DeciMamba) run drops tokens between layers; fidelity needs every token");
  std::vector<std::vector<torch::Tensor>> layer_states(static_cast<size_t>(L));
  RunOptions run = options.run;
  run.keep_hidden = true;
  run.on_layer_output = [&](int64_t l, int64_t, const torch::Tensor& x) { layer_states[l].push_back(x[0]); };
  RunState state = model.new_state(1);
  std::vector<int64_t> ids(tokens.begin(), tokens.end());
  auto hidden = model.forward(torch::tensor(ids, torch::kInt64).view({1, T}), state, run)[0];
  const auto& E = model.weights()["embedding.weight"];

  Json out = result_header("memory_fidelity", model, options.meta, options.run.memory);
  out["tokens"] = T;
  out["etmf"] = etmf(E, hidden, tokens, 0);
  Json shifted = Json::object();
  for (int64_t d : options.deltas) shifted[std::to_string(d)] = etmf(E, hidden, tokens, d);
  out["etmf_delta"] = shifted;
  std::vector<torch::Tensor> states;
  for (auto& chunks : layer_states) states.push_back(torch::cat(chunks, 0));
  // ETMF of each layer's output read through the final norm and the tied head (a logit
  // lens): how much of the current token each layer's state still identifies.
  Json etmf_layers = Json::array();
  for (int64_t l = 0; l < L; ++l)
    etmf_layers.push_back(etmf(E, rms_norm(states[l], model.weights()["norm_f.weight"], model.config().norm_eps),
                               tokens, 0));
  out["etmf_per_layer"] = etmf_layers;
  Json eclmf = Json::object();
  for (int64_t G : options.gaps) {
    if (G >= L) {
      eclmf[std::to_string(G)] = nullptr;  // the model has too few layers for this gap
      continue;
    }
    Json per_layer = Json::array();
    double sum = 0;
    for (int64_t l = 0; l + G < L; ++l) {
      const double score = ridge_reconstruction_score(states[l], states[l + G], options.ridge);
      per_layer.push_back(score);
      sum += score;
    }
    Json g = Json::object();
    g["mean"] = sum / static_cast<double>(L - G);
    g["per_layer"] = per_layer;
    eclmf[std::to_string(G)] = g;
  }
  out["eclmf"] = eclmf;
  return out;
}

}  // namespace memmamba::eval
