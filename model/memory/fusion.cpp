#include "model/memory/fusion.h"

#include <torch/torch.h>

namespace memmamba {

torch::Tensor fusion_term(const ModelConfig& c, const Weights& w, const std::string& prefix, const torch::Tensor& x,
                          const torch::Tensor& context, double gain) {
  switch (c.fusion) {
    case FusionKind::Weighted: {  // the gain folded into the [D] scale: one pass over the rows
      const auto& scale = w[prefix + "fusion.scale"];
      return context * (gain == 1.0 ? scale : scale * gain);
    }
    case FusionKind::Residual: return gain == 1.0 ? context : context * gain;
    case FusionKind::Gated: {
      auto gated = torch::sigmoid(torch::matmul(torch::cat({x, context}, -1), w[prefix + "fusion.gate.weight"].t()) +
                                  w[prefix + "fusion.gate.bias"]) *
                   context;
      return gain == 1.0 ? gated : gated * gain;
    }
  }
  return context;
}

}  // namespace memmamba
