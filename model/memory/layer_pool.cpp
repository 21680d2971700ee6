#include "model/memory/layer_pool.h"

#include "model/memory/gpu_pool.h"
#include "model/memory/host_pool.h"

namespace memmamba {

std::unique_ptr<LayerPool> new_layer_pool(const ModelConfig& config, int64_t batch, const torch::Device& device,
                                          const torch::Tensor& device_position, const PoolEdits* edits) {
  // Edits act in the middle of the walk's decisions: the host walk applies them.
  if (device.is_cuda() && config.note_window == 1 && cuda_ops::note_pool_available(config.pool_slots, config.summary_dim) &&
      (!edits || edits->empty()))
    return std::make_unique<GpuPool>(config, batch, device, device_position);
  return std::make_unique<HostPool>(config, batch, device, edits);
}

}  // namespace memmamba
