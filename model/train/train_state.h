// How a training run starts and what it leaves: fresh weights, a checkpoint to fine-tune
// (with another model's backbone and new thresholds where asked), or a resume, bit for bit,
// from OUT's last checkpoint and optimizer state; the checkpoints and the metrics log.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "model/memmamba.h"
#include "model/train/optimizer.h"
#include "model/train/train_options.h"

namespace memmamba {

struct TrainState {
  std::optional<MemMambaModel> model;  // its weights are the optimizer's parameters
  AdamW optimizer;                     // optimizer.step: the steps done
  int64_t tokens = 0;                  // tokens trained on so far
};

// Starts the run as the options say, on `device`. `shard_vocab_size`: the largest vocabulary
// the training shards need.
TrainState start_training(const TrainOptions& o, const torch::Device& device, int64_t shard_vocab_size);

// Writes the optimizer state, then the model (a model file is never older than its state).
void save_training_state(const TrainOptions& o, const TrainState& state);

// OUT/metrics.csv, ready for appending: a resumed run keeps the rows up to its step (a line cut
// by a crash is dropped), a fresh run starts the file with its header. Returns the path.
std::string start_metrics_log(const TrainOptions& o, int64_t start_step);
// One step's row of that log, flushed.
void append_metrics_row(std::ostream& log, const TrainProgress& progress, int passkey_rows);

}  // namespace memmamba
