#include "model/cuda/stream_mark.h"

#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace memmamba::cuda_ops {

namespace {
struct Mark {
  c10::DeviceIndex device;
  at::cuda::CUDAEvent event;
};
}  // namespace

std::shared_ptr<void> mark_stream(const torch::Device& device) {
  if (!device.is_cuda()) return nullptr;
  auto mark = std::make_shared<Mark>();
  mark->device = device.has_index() ? device.index() : c10::cuda::current_device();
  mark->event.record(c10::cuda::getCurrentCUDAStream(mark->device));
  return mark;
}

void run_after_mark(const std::shared_ptr<void>& mark_in, const std::function<void()>& work) {
  if (!mark_in) return work();
  auto* mark = static_cast<Mark*>(mark_in.get());
  const c10::cuda::CUDAGuard device(mark->device);
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, mark->device);
  const c10::cuda::CUDAStreamGuard stream(side);
  mark->event.block(side);
  work();
  // The work's copies to the host have waited for their results; anything else it queued
  // finishes before the tensors it used may go back to the model's stream.
  side.synchronize();
}

void wait_for_mark(const std::shared_ptr<void>& mark) {
  if (mark) static_cast<Mark*>(mark.get())->event.synchronize();
}

}  // namespace memmamba::cuda_ops
