#include "model/memory/gpu_pool.h"

#include <torch/torch.h>

#include "model/mamba_mixer.h"
#include "model/trace.h"

namespace memmamba {

GpuPool::GpuPool(const ModelConfig& config, int64_t batch, const torch::Device& device, torch::Tensor position)
    : slots_(config.pool_slots), width_(config.summary_dim),
      pool_(cuda_ops::new_device_pool(batch, config.pool_slots, config.summary_dim, device)), position_(std::move(position)) {
  const auto fopts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  vectors_ = torch::zeros({batch, slots_, width_}, fopts);
  priority_ = torch::ones({batch, slots_}, fopts);
}

std::vector<int64_t> GpuPool::slot_note_ids(int64_t sequence) const {
  auto ids = pool_.slot_note_id[sequence].to(torch::kCPU).contiguous();
  return std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
}

namespace {
// The observed sequence's decisions as the host walk reports them: notes in id order,
// each with its eviction (if any) before its insert, or its drop.
WalkRecords records_of(const cuda_ops::DevicePoolDecisions& d, const torch::Tensor& summaries, int64_t pos0,
                       const torch::Tensor& ids_before_device, const torch::Tensor& made_before_device,
                       std::vector<int64_t>& note_ids) {
  const int64_t T = summaries.size(1), K = d.final_bank.size(1), S = summaries.size(2);
  const auto ids_before = ids_before_device.to(torch::kCPU).contiguous();
  const int64_t made_before = made_before_device.item<int64_t>();
  auto imp = d.importance[0].to(torch::kCPU).contiguous();
  auto ist = d.istate[0].to(torch::kCPU).contiguous();
  auto flags = d.flags[0].to(torch::kCPU).contiguous();
  auto taken = d.slot_taken[0].to(torch::kCPU).contiguous();
  auto evicted = d.evicted_note[0].to(torch::kCPU).contiguous();
  auto evicted_priority = d.evicted_priority[0].to(torch::kCPU).contiguous();
  const float* ip = imp.data_ptr<float>();
  const uint8_t* fp = flags.data_ptr<uint8_t>();
  // Only the noted tokens' summaries come to the host (their notes' vectors).
  std::vector<int64_t> noted;
  for (int64_t t = 0; t < T; ++t)
    if (fp[t] & 1) noted.push_back(t);
  const int64_t n_noted = static_cast<int64_t>(noted.size());
  auto noted_rows = torch::from_blob(noted.data(), {n_noted}, torch::kInt64).to(summaries.device());
  auto s_host = summaries[0].detach().index_select(0, noted_rows).to(torch::kCPU, torch::kFloat32).contiguous();
  WalkRecords rec;
  rec.importance.assign(ip, ip + T);
  rec.istate.assign(ist.data_ptr<float>(), ist.data_ptr<float>() + T);
  rec.flags.resize(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t)
    rec.flags[t] = static_cast<uint8_t>(((fp[t] & 1) ? kNoted : 0) | ((fp[t] & 2) ? kTriggered : 0));
  note_ids.assign(static_cast<size_t>(K + T), -1);
  for (int64_t j = 0; j < K; ++j) note_ids[j] = ids_before.data_ptr<int64_t>()[j];
  int64_t next_id = made_before;
  for (int64_t i = 0; i < n_noted; ++i) {
    const int64_t t = noted[i];
    const int64_t pos = pos0 + t;
    NoteMade n;
    n.note_id = next_id++;
    n.window = pos;
    n.priority = ip[t];
    n.priority_source = pos;
    n.sources = {pos};
    n.channel_source.assign(static_cast<size_t>(S), pos);
    n.vector.assign(s_host.data_ptr<float>() + i * S, s_host.data_ptr<float>() + (i + 1) * S);
    n.slot = taken.data_ptr<int32_t>()[t];
    if (n.slot >= 0) {
      note_ids[K + t] = n.note_id;
      const int64_t gone = evicted.data_ptr<int64_t>()[t];
      if (gone >= 0)
        rec.events.push_back({pos, PoolEventKind::Evict, n.slot, gone, evicted_priority.data_ptr<float>()[t]});
      rec.events.push_back({pos, PoolEventKind::Insert, n.slot, n.note_id, n.priority});
    } else {
      rec.events.push_back({pos, PoolEventKind::Drop, -1, n.note_id, n.priority});
    }
    rec.notes.push_back(std::move(n));
  }
  return rec;
}

}  // namespace

PoolWalkResult GpuPool::walk(const NoteInputs& in, const MemorySettings& settings, const WalkRequest& request) {
  const torch::Tensor& s = in.summaries;  // [B, T, S]
  const int64_t B = s.size(0), T = s.size(1), K = slots_, S = width_;
  const bool learned_rule = settings.importance == ImportanceRule::Learned;
  // The pool before the walk, for the records: copies on the device (the walk updates it in place).
  torch::Tensor ids_before, made_before;
  if (request.records) {
    ids_before = pool_.slot_note_id[0].clone();
    made_before = pool_.notes_made[0].clone();
  }
  const cuda_ops::DevicePoolDecisions d = cuda_ops::note_pool(s, learned_rule ? in.learned : torch::Tensor(), settings,
                                                              pool_, position_);
  auto bank_vectors = torch::cat({vectors_.to(s.dtype()), s}, 1);  // [B, K + T, S]
  torch::Tensor importance;
  if (learned_rule) {
    importance = in.learned;
  } else if (!needs_autograd({s})) {
    importance = d.importance;  // the walk's own 1 - cos: nothing to differentiate
  } else {  // novelty, rebuilt differentiably from the reference the kernel chose
    auto safe = d.reference.clamp_min(0);
    auto refs = bank_vectors.gather(1, safe.unsqueeze(-1).expand({B, T, S}));
    auto cos = torch::cosine_similarity(s, refs, -1, 1e-12);
    importance = torch::where(d.reference.ge(0), 1 - cos, torch::ones_like(cos));
  }
  auto bank_priority = torch::cat({priority_.to(s.dtype()), importance.to(s.dtype())}, 1);  // [B, K + T]

  PoolWalkResult result;
  result.bank.valid = true;
  result.triggered = d.flags.bitwise_and(2).ne(0);  // [B, T]
  result.importance = importance;
  // The batch's banks one after another: sequence b's entries start at b * (K + T).
  SequenceBank& bank = result.bank.batch;
  bank.vectors = bank_vectors.reshape({B * (K + T), S});
  bank.priority = bank_priority.reshape({B * (K + T)});
  if (B == 1) {
    bank.visible = d.visible[0];
  } else {
    auto offsets = (torch::arange(B, d.visible.options()) * (K + T)).view({B, 1, 1});
    bank.visible = torch::where(d.visible.ge(0), d.visible + offsets, d.visible).reshape({B * T, K});
  }
  if (request.sources) {
    auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(s.device());
    bank.source = torch::cat({torch::full({K}, -1, long_opts), request.pos0 + torch::arange(T, long_opts)}, 0).repeat({B});
  }
  if (request.records) {
    // Deferred: the copies to the host wait for the GPU, which an observer's thread can do.
    result.finish_records = [d, summaries = s.detach(), pos0 = request.pos0, ids_before, made_before,
                             records = result.records, note_ids = bank.note_ids] {
      *records = records_of(d, summaries, pos0, ids_before, made_before, *note_ids);
    };
  }

  // The pool carried to the next chunk.
  auto occupied = d.final_bank.ge(0);
  auto safe_final = d.final_bank.clamp_min(0);
  vectors_ = bank_vectors.gather(1, safe_final.unsqueeze(-1).expand({B, K, S})) *
             occupied.unsqueeze(-1).to(bank_vectors.dtype());
  priority_ = torch::where(occupied, bank_priority.gather(1, safe_final), torch::ones({}, bank_priority.options()));
  return result;
}

}  // namespace memmamba
