#include "model/memory/layer_pool.h"

#include <torch/torch.h>

#include "model/memory/gpu_pool.h"
#include "model/memory/host_pool.h"

namespace memmamba {

SequenceBank batch_bank(std::vector<SequenceBank> per_sequence) {
  if (per_sequence.size() == 1) return std::move(per_sequence[0]);
  std::vector<torch::Tensor> vectors, priority, visible, source;
  int64_t offset = 0;
  bool sources = true;
  for (const SequenceBank& bank : per_sequence) {
    vectors.push_back(bank.vectors);
    priority.push_back(bank.priority);
    visible.push_back(offset == 0 ? bank.visible : torch::where(bank.visible.ge(0), bank.visible + offset, bank.visible));
    sources = sources && bank.source.defined();
    if (sources) source.push_back(bank.source);
    offset += bank.vectors.size(0);
  }
  SequenceBank all = std::move(per_sequence[0]);
  all.vectors = torch::cat(vectors, 0);
  all.priority = torch::cat(priority, 0);
  all.visible = torch::cat(visible, 0);
  all.source = sources ? torch::cat(source, 0) : torch::Tensor();
  return all;
}

bool gpu_pool_applies(const ModelConfig& config, const torch::Device& device, const PoolEdits* edits) {
  // Edits act in the middle of the walk's decisions: the host walk applies them.
  return device.is_cuda() && config.note_window == 1 && cuda_ops::note_pool_available(config.pool_slots, config.summary_dim) &&
         (!edits || edits->empty());
}

std::unique_ptr<LayerPool> new_layer_pool(const ModelConfig& config, int64_t batch, const torch::Device& device,
                                          const torch::Tensor& device_position, const PoolEdits* edits) {
  if (gpu_pool_applies(config, device, edits)) return std::make_unique<GpuPool>(config, batch, device, device_position);
  return std::make_unique<HostPool>(config, batch, device, edits);
}

}  // namespace memmamba
