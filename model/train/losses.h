// What training minimises: next-token cross-entropy, and on passkey rows the memory's own
// losses. The retrieval loss teaches each answer piece of the key to attend to that piece's
// note; the answer loss weighs the key's pieces on their own; the selection loss teaches the
// key's tokens to clear the note threshold in every layer.
#pragma once
#include <torch/types.h>

#include <cmath>

#include "model/memmamba.h"
#include "model/train/training_rows.h"

namespace memmamba {

struct SequenceLoss {
  torch::Tensor total;  // what backward() sees
  torch::Tensor lm;
  double retrieval = std::nan(""), key_attention = std::nan(""), coverage = std::nan(""), answer = std::nan("");
  double note = std::nan(""), key_noted = std::nan("");
};

// The losses of a batch [rows, T + 1] (inputs and next tokens); `targets` may be null (no
// passkey rows). `ssm_mask` [rows, T]: 0 where the SSM must not see a token (blind needles).
SequenceLoss sequence_loss(const MemMambaModel& model, const torch::Tensor& batch, const RetrievalTargets* targets = nullptr,
                           double retrieval_weight = 0, double answer_weight = 0, double note_weight = 0,
                           const torch::Tensor& ssm_mask = {});

}  // namespace memmamba
