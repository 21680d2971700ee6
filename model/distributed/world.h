// One process's place in a data-parallel job (PyTorch's distributed engine, c10d): its rank,
// the world size, the TCP store every rank meets at, and, for training, a process group that
// sums tensors over the ranks (NCCL on CUDA, gloo on the CPU). The c10d headers stay in
// world.cpp: nothing else in the model library compiles them.
#pragma once
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace memmamba {

// A rank that failed, timed out or could not join: the job cannot go on.
class DistributedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct WorldOptions {
  int rank = 0;
  int size = 1;
  int local_rank = 0;                    // the GPU of this host (what CUDA_VISIBLE_DEVICES picked)
  std::string master_addr = "127.0.0.1";  // where rank 0 serves the store
  int master_port = 29500;
  // How long a collective, a rendezvous or a wait for another rank's result may take before
  // the job ends with an error (NCCL's watchdog, gloo's timeout, the store's wait).
  std::chrono::seconds timeout{600};
};

// The torchrun convention: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT. Returns
// false when WORLD_SIZE is not set (a single process). Throws DistributedError on bad values.
bool world_from_environment(WorldOptions& out);

class World {
 public:
  enum class Backend { StoreOnly, Gloo, Nccl };
  // Meets the other ranks at the store (rank 0 serves it). With a backend other than
  // StoreOnly it also starts a process group for the collectives.
  static std::shared_ptr<World> join(const WorldOptions& options, Backend backend);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return options_.rank; }
  int size() const { return options_.size; }
  bool leader() const { return options_.rank == 0; }
  const WorldOptions& options() const { return options_; }
  Backend backend() const { return backend_; }

  // Sums `tensor` over the ranks in place (dense, contiguous; on the group's device).
  void all_reduce_sum(torch::Tensor& tensor);
  // The same, started now; the returned function waits for it.
  std::function<void()> all_reduce_sum_async(torch::Tensor& tensor);
  // Every rank's `tensor` becomes rank 0's.
  void broadcast_from_leader(torch::Tensor& tensor);

  // Store-only work sharing, which needs no process group:
  // the next value of a counter shared by all ranks (0, 1, 2, ...).
  int64_t take_ticket(const std::string& counter);
  // The counter's current value (how many tickets were taken).
  int64_t peek_counter(const std::string& counter);
  void publish(const std::string& key, const std::string& value);
  std::string read(const std::string& key);

 private:
  World() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  WorldOptions options_;
  Backend backend_ = Backend::StoreOnly;
};

}  // namespace memmamba
