// Training MemMamba (or its Mamba-only twin) with the model library's own forward pass:
// AdamW with decoupled weight decay, warm-up then cosine or constant learning rate,
// gradient clipping, accumulation, bf16 autocast on CUDA (fp32 master weights, fp32 scan
// state), held-out evaluation, passkey examples mixed into the batches, checkpoints with
// a training state that resumes bit for bit (every batch is a function of seed and step).
// The pieces: train_options.h, training_rows.h, losses.h, optimizer.h, train_state.h.
#pragma once
#include <cstdint>
#include <functional>

#include "model/train/train_options.h"
#include "model/train/training_rows.h"

namespace memmamba {

// Runs to options.steps; `on_step` returning false stops after saving a checkpoint.
// Returns the last step done.
int64_t train_model(const TrainOptions& options, const std::function<bool(const TrainProgress&)>& on_step = {});

}  // namespace memmamba
