// Work that reads a GPU result on another thread, without waiting behind the GPU's later
// work: the model marks its stream where the result is made (an event), and the reader runs
// its own operators on a side stream that starts at that mark. An observer's thread uses it
// to bring a layer's records to the host while the model's next layers run. Without CUDA
// (or for CPU tensors) the mark is empty and the work runs as it is.
#pragma once
#include <torch/types.h>

#include <functional>
#include <memory>

namespace memmamba::cuda_ops {

#ifdef MEMMAMBA_WITH_CUDA
// An event recorded on `device`'s current stream; empty for a CPU device.
std::shared_ptr<void> mark_stream(const torch::Device& device);
// Runs `work` with a side stream of the mark's device as the current stream, the side
// stream waiting for the mark first; without a mark, runs `work` as it is.
void run_after_mark(const std::shared_ptr<void>& mark, const std::function<void()>& work);
// Waits on the host until the GPU has passed the mark (nothing to wait for without one).
void wait_for_mark(const std::shared_ptr<void>& mark);
#else
inline std::shared_ptr<void> mark_stream(const torch::Device&) { return nullptr; }
inline void run_after_mark(const std::shared_ptr<void>&, const std::function<void()>& work) { work(); }
inline void wait_for_mark(const std::shared_ptr<void>&) {}
#endif

}  // namespace memmamba::cuda_ops
