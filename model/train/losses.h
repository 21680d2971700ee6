// What training minimises: next-token cross-entropy, and on passkey rows the memory's own
// losses. The retrieval loss teaches each answer piece of the key to attend to that piece's
// note; the answer loss weighs the key's pieces on their own; the selection loss teaches the
// key's tokens to clear the note threshold in every layer. The surprise selection loss, on
// every row, teaches the tokens the model itself found hardest to predict (names, numbers,
// rare words) to be noted and the easy ones not. The quiet loss keeps every other token under
// the note threshold, which bounds how many notes a learned note rule makes.
#pragma once
#include <torch/types.h>

#include <cmath>

#include "model/memmamba.h"
#include "model/train/training_rows.h"

namespace memmamba {

struct LossWeights {
  double retrieval = 0, answer = 0, note = 0;
  double note_margin = 0.05;   // how far above tau1 the selection loss lifts a key's importance
  double surprise_note = 0;    // weight of the surprise selection loss
  double surprise_share = 0;   // share of each row's tokens, the most surprising, that are its targets
  double surprise_band = 0.05;  // their importance is taught to lie between tau1 + 0.01 and tau1 + this
  // How much more the reads and answer pieces that choose a fact's value by its label
  // (RetrievalTargets::choice) count in the retrieval and answer losses' means than the others.
  double choice = 1;
  // Weight of the quiet loss: the tokens that no other loss asks to be noted (the needles'
  // values the selection loss lifts, the surprise loss's surprising tokens) stay under tau1.
  // Reference marks' numbers are quiet tokens even where surprising, and their own mean counts
  // with the same weight: a few dozen tokens in a row of thousands would barely move it.
  double quiet = 0;
  // How much each answer's end (the piece after the value, where the answer stops) counts in the
  // answer loss's mean against a key piece. Most fact misses run on past the value's end.
  double answer_end = 1;
};

struct SequenceLoss {
  torch::Tensor total;  // what backward() sees
  torch::Tensor lm;
  double retrieval = std::nan(""), key_attention = std::nan(""), coverage = std::nan(""), answer = std::nan("");
  double note = std::nan(""), key_noted = std::nan("");
  // Mean attention mass on the asked value's note at the reads that choose it by its label.
  double choice_attention = std::nan("");
  // Surprise selection loss; shares of surprising and of predictable tokens x layers noted.
  double surprise_note = std::nan(""), surprising_noted = std::nan(""), predictable_noted = std::nan("");
  // Quiet loss; the share of its tokens x layers noted anyway (the stray note rate).
  double quiet = std::nan(""), stray_noted = std::nan("");
  // The quiet loss over the reference marks' numbers alone (RetrievalTargets::mark_row), and the
  // share of those tokens x layers noted.
  double mark_quiet = std::nan(""), marks_noted = std::nan("");
};

// The losses of a batch [rows, T + 1] (inputs and next tokens); `targets` may be null (no
// passkey rows). `ssm_mask` [rows, T]: 0 where the SSM must not see a token (blind needles).
SequenceLoss sequence_loss(const MemMambaModel& model, const torch::Tensor& batch, const RetrievalTargets* targets = nullptr,
                           const LossWeights& weights = {}, const torch::Tensor& ssm_mask = {});

// Which input tokens of `nll` [rows, T] (nll[r][t]: the loss of predicting token t + 1) are
// surprising: per row, the `share` of tokens t >= `warmup` whose own surprise nll[r][t - 1] is
// largest (at least one). Returns bool [rows, T].
torch::Tensor surprising_tokens(const torch::Tensor& nll, double share, int64_t warmup);

}  // namespace memmamba
