// Memory-fidelity metrics of the paper's appendix A.2:
// - ETMF: mean cosine between E[x_j] and the expected embedding under the model's
//   prediction (softmax, temperature 1, over the tied embedding) from the last layer at j;
//   ETMF_delta pairs E[x_i] with the reconstruction at i + delta; etmf_per_layer reads
//   each layer's output through the final norm and the tied head.
// - ECLMF_G: ridge regression (lambda 1e-4) from layer l's states to layer l+G's,
//   score 1 - ||Y - XW||_F / (||X||_F + 1e-6), mean over the layers l that have an l+G.
#pragma once
#include <torch/types.h>

#include <vector>

#include "model/json.h"
#include "model/memmamba.h"

namespace memmamba::eval {

struct FidelityOptions {
  std::vector<int64_t> deltas{8, 16, 32};
  std::vector<int64_t> gaps{2, 5, 10};
  double ridge = 1e-4;
  RunOptions run;
  Json meta = Json::object();
};

Json memory_fidelity(const MemMambaModel& model, const std::vector<int32_t>& tokens, const FidelityOptions& options);

// The pieces, exposed for tests: reconstruction cosines and the ridge score.
double etmf(const torch::Tensor& embeddings /*[V, D]*/, const torch::Tensor& final_hidden /*[T, D]*/,
            const std::vector<int32_t>& tokens, int64_t delta);
double ridge_reconstruction_score(const torch::Tensor& X /*[N, D]*/, const torch::Tensor& Y /*[N, D]*/, double lambda);

}  // namespace memmamba::eval
