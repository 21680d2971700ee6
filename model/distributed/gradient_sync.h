// Averages the gradients of a data-parallel step over the ranks while the backward pass still
// runs, as PyTorch's DistributedDataParallel does: the parameters are packed into buckets of
// about 25 MB in reverse order (the backward pass reaches the last layers first), and a bucket
// is summed over the ranks as soon as all its gradients are in, so that the transfers overlap
// the rest of the backward pass. Every rank starts the buckets in the same order (bucket 0,
// 1, 2 ...), whatever order its gradients come in: collectives must match across ranks.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "model/distributed/world.h"

namespace memmamba {

class GradientSync {
 public:
  GradientSync(std::shared_ptr<World> world, std::vector<torch::Tensor> parameters, int64_t bucket_bytes = 25 << 20);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Call before the step's last backward pass (with gradient accumulation, the earlier ones
  // only accumulate locally): its gradients are summed as they come.
  void arm();
  // Call after that backward pass: sums what is left (parameters that got no gradient count as
  // zero), waits, and leaves every parameter's .grad the mean over the ranks.
  void finish();
  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Bucket {
    torch::Tensor flat;
    size_t parameters = 0;  // how many parameters it holds
    size_t ready = 0;       // how many of them are in for this step
  };
  void on_gradient(size_t parameter, const torch::Tensor& gradient);
  // Puts parameter k's gradient for the step into its bucket: the earlier micro-batches' sum in
  // .grad plus `gradient` (undefined: none in this pass). With mutex_ held.
  void fill(size_t k, const torch::Tensor& gradient);
  void start_ready_buckets();  // with mutex_ held
  void start(Bucket& bucket);

  std::shared_ptr<World> world_;
  std::vector<torch::Tensor> parameters_;
  std::vector<torch::Tensor> slots_;      // each parameter's view into its bucket
  std::vector<size_t> bucket_of_;
  std::vector<bool> arrived_;
  std::vector<unsigned> hooks_;
  std::vector<Bucket> buckets_;
  std::vector<std::function<void()>> pending_;
  size_t next_to_start_ = 0;
  bool armed_ = false;
  std::mutex mutex_;
};

}  // namespace memmamba
