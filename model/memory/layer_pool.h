// One layer's state pools (one per sequence of the batch) behind one interface: a walk
// over a chunk of tokens decides the notes, evictions and retrieval triggers in order and
// returns the bank the attentions read. Two walks implement it with the same rules and
// the same decisions: on the host (host_pool.cpp, NoteTaker, any window) and on the GPU
// (device_pool.cpp, model/cuda/note_pool.cu, windows of one token). Parallel mode walks
// chunks, step mode walks chunks of one token.
#pragma once
#include <torch/types.h>

#include <functional>
#include <memory>
#include <vector>

#include "model/config.h"
#include "model/memory/note_block.h"

namespace memmamba {

// The note bank a chunk reads: per sequence, the K slots carried in, then the notes made
// in the chunk; for each token, the bank index each slot holds as the token sees it. A
// batch's sequences stand one after another in one bank, each sequence's visible indices
// shifted past the earlier sequences' entries, so that one read serves every row of the
// batch (a row only sees its own sequence's entries). Sequence 0 starts at index 0.
struct SequenceBank {
  torch::Tensor vectors;   // [nb, S] (differentiable when training)
  torch::Tensor priority;  // [nb]
  torch::Tensor visible;   // [B * T, K] int64 bank index, -1 where the slot is empty
  // [nb] int64: the position a chunk's note came from, -1 for carried slots (asked for only).
  torch::Tensor source;
  // Bank index -> layer-local note id of sequence 0's entries, when records are asked for;
  // filled by PoolWalkResult::finish_records where that is set (it may run on another thread).
  std::shared_ptr<std::vector<int64_t>> note_ids = std::make_shared<std::vector<int64_t>>();
};

// The batch's banks of sequences walked one by one, as one bank (above).
SequenceBank batch_bank(std::vector<SequenceBank> per_sequence);

// A layer's bank in the current chunk; a later layer's cross-layer attention reads it.
struct LayerBank {
  bool valid = false;
  SequenceBank batch;
};

// The Note Block's inputs for one chunk: candidate summaries s = W_N RMSNorm(x) [B, T, S],
// and the learned importance [B, T] (undefined unless the learned rule is on).
struct NoteInputs {
  torch::Tensor summaries, learned;
};

// What the observed sequence (0) decided, for the run's observer.
struct WalkRecords {
  std::vector<float> importance, istate;  // [T]
  std::vector<uint8_t> flags;             // TokenFlag bits: 1 noted, 2 triggered
  std::vector<NoteMade> notes;
  std::vector<PoolEventRecord> events;
};

struct PoolWalkResult {
  LayerBank bank;
  torch::Tensor importance;  // [B, T], what tau1 was compared with (differentiable)
  torch::Tensor triggered;   // [B, T] bool: the retrieval trigger fired
  // Filled when asked for: at once, or by `finish_records` (with the bank's note ids) where
  // the walk left it set. The GPU's walk leaves it so that its copies to the host can wait
  // for an observer's thread (RunObserver::later) instead of stopping the model's.
  std::shared_ptr<WalkRecords> records = std::make_shared<WalkRecords>();
  std::function<void()> finish_records;
};

struct WalkRequest {
  int64_t pos0 = 0;          // absolute position of the chunk's first token
  bool records = false;      // fill PoolWalkResult::records and the observed bank's note ids
  bool sources = false;      // fill SequenceBank::source
};

class LayerPool {
 public:
  virtual ~LayerPool() = default;
  // Walks one chunk [B, T] and carries the pools on to its end.
  virtual PoolWalkResult walk(const NoteInputs& in, const MemorySettings& settings, const WalkRequest& request) = 0;
  // Layer-local note id held by each slot of `sequence`'s pool now (-1 empty).
  virtual std::vector<int64_t> slot_note_ids(int64_t sequence) const = 0;
  // Notes `sequence` has made so far (dropped ones included: each took an id).
  virtual int64_t notes_made(int64_t sequence) const = 0;
  // True where a walk runs no host code, so that a captured CUDA graph can replay it.
  virtual bool capturable() const = 0;
  // The carried pool tensors that a walk replaces with new ones (a captured graph re-binds them).
  virtual std::vector<torch::Tensor*> carried_tensors() = 0;

  // The layer inputs of the last memory_context - 1 tokens [B, memory_context - 1, D], which the
  // next chunk's context mix reads (ModelConfig::memory_context; undefined until a chunk ran,
  // read as zeros).
  torch::Tensor context_tail;
};

// The GPU walk where it applies (a CUDA build, a GPU model, windows of one token, no pool
// edits), else the host walk. device_position: int64 [1] on a GPU, the run's absolute
// position; edits: this layer's pool edits or null (they must outlive the pool).
std::unique_ptr<LayerPool> new_layer_pool(const ModelConfig& config, int64_t batch, const torch::Device& device,
                                          const torch::Tensor& device_position, const PoolEdits* edits = nullptr);
// Whether new_layer_pool makes a GpuPool for these arguments.
bool gpu_pool_applies(const ModelConfig& config, const torch::Device& device, const PoolEdits* edits = nullptr);

}  // namespace memmamba
