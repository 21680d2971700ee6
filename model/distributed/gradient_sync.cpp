#include "model/distributed/gradient_sync.h"

#include <torch/torch.h>

#include <stdexcept>

namespace memmamba {

GradientSync::GradientSync(std::shared_ptr<World> world, std::vector<torch::Tensor> parameters, int64_t bucket_bytes)
    : world_(std::move(world)), parameters_(std::move(parameters)) {
  if (!world_) throw std::invalid_argument("gradient sync needs a world");
  const size_t n = parameters_.size();
  slots_.resize(n);
  bucket_of_.resize(n);
  arrived_.assign(n, false);
  // Reverse order: the first bucket holds the parameters whose gradients come first.
  std::vector<std::vector<size_t>> groups;
  int64_t bytes = 0;
  for (size_t k = n; k-- > 0;) {
    const torch::Tensor& p = parameters_[k];
    if (!p.requires_grad()) throw std::invalid_argument("gradient sync: a parameter does not require a gradient");
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    const bool same_kind = !groups.empty() && parameters_[groups.back().front()].dtype() == p.dtype() &&
                           parameters_[groups.back().front()].device() == p.device();
    if (groups.empty() || !same_kind || bytes + size > bucket_bytes) {
      groups.emplace_back();
      bytes = 0;
    }
    groups.back().push_back(k);
    bytes += size;
  }
  for (const std::vector<size_t>& members : groups) {
    Bucket bucket;
    int64_t numel = 0;
    for (size_t k : members) numel += parameters_[k].numel();
    bucket.flat = torch::zeros({numel}, parameters_[members.front()].options().requires_grad(false));
    int64_t offset = 0;
    for (size_t k : members) {
      const torch::Tensor& p = parameters_[k];
      slots_[k] = bucket.flat.narrow(0, offset, p.numel()).view(p.sizes());
      offset += p.numel();
      bucket_of_[k] = buckets_.size();
    }
    bucket.parameters = members.size();
    buckets_.push_back(std::move(bucket));
  }
  for (size_t k = 0; k < n; ++k)
    hooks_.push_back(parameters_[k].register_hook([this, k](torch::Tensor gradient) { on_gradient(k, gradient); }));
}

GradientSync::~GradientSync() {
  for (size_t k = 0; k < hooks_.size(); ++k) parameters_[k].remove_hook(hooks_[k]);
}

void GradientSync::arm() {
  std::lock_guard<std::mutex> lock(mutex_);
  armed_ = true;
  next_to_start_ = 0;
  pending_.clear();
  arrived_.assign(arrived_.size(), false);
  for (Bucket& b : buckets_) b.ready = 0;
}

// Called by the autograd engine with a parameter's whole gradient of this backward pass, before
// it is added to .grad (which holds the earlier micro-batches' sum, if any).
void GradientSync::on_gradient(size_t k, const torch::Tensor& gradient) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!armed_ || arrived_[k]) return;
  fill(k, gradient);
  start_ready_buckets();
}

void GradientSync::fill(size_t k, const torch::Tensor& gradient) {
  torch::NoGradGuard no_grad;
  const torch::Tensor& earlier = parameters_[k].grad();
  if (earlier.defined() && gradient.defined())
    torch::add_out(slots_[k], earlier, gradient);
  else if (earlier.defined() || gradient.defined())
    slots_[k].copy_(earlier.defined() ? earlier : gradient);
  else
    slots_[k].zero_();
  arrived_[k] = true;
  ++buckets_[bucket_of_[k]].ready;
}

void GradientSync::start_ready_buckets() {
  while (next_to_start_ < buckets_.size() && buckets_[next_to_start_].ready == buckets_[next_to_start_].parameters)
    start(buckets_[next_to_start_++]);
}

void GradientSync::start(Bucket& bucket) {
  // Divided first, as DDP does: the sum of the ranks' means is the mean over the whole batch.
  bucket.flat.div_(static_cast<double>(world_->size()));
  pending_.push_back(world_->all_reduce_sum_async(bucket.flat));
}

void GradientSync::finish() {
  std::vector<std::function<void()>> waits;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!armed_) throw std::logic_error("gradient sync: finish() without arm()");
    // No gradient in the last pass: the earlier micro-batches' sum, or zero.
    for (size_t k = 0; k < parameters_.size(); ++k)
      if (!arrived_[k]) fill(k, torch::Tensor());
    start_ready_buckets();
    waits.swap(pending_);
    armed_ = false;
  }
  for (const auto& wait : waits) wait();
  for (size_t k = 0; k < parameters_.size(); ++k) parameters_[k].mutable_grad() = slots_[k];
}

}  // namespace memmamba
