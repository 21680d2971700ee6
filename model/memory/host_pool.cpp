#include "model/memory/host_pool.h"

#include <torch/torch.h>

#include <cmath>
#include <map>

#include "model/mamba_mixer.h"
#include "model/trace.h"

namespace memmamba {

namespace {
torch::Tensor floats_to_tensor(const std::vector<float>& v, int64_t rows, int64_t cols, const torch::Device& device) {
  return torch::from_blob(const_cast<float*>(v.data()), {rows, cols}, torch::kFloat32).clone().to(device);
}
}  // namespace

HostPool::HostPool(const ModelConfig& config, int64_t batch, const torch::Device& device, const PoolEdits* edits)
    : slots_(config.pool_slots), width_(config.summary_dim) {
  const auto fopts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  for (int64_t b = 0; b < batch; ++b) {
    takers_.emplace_back(slots_, width_, config.note_window);
    takers_.back().set_edits(edits);
    vectors_.push_back(torch::zeros({slots_, width_}, fopts));
    priority_.push_back(torch::ones({slots_}, fopts));
  }
}

std::vector<int64_t> HostPool::slot_note_ids(int64_t sequence) const {
  std::vector<int64_t> ids(static_cast<size_t>(slots_));
  for (int64_t j = 0; j < slots_; ++j) ids[j] = takers_.at(sequence).pool().note_id(j);
  return ids;
}

std::vector<torch::Tensor*> HostPool::carried_tensors() {
  std::vector<torch::Tensor*> out;
  for (auto& t : vectors_) out.push_back(&t);
  for (auto& t : priority_) out.push_back(&t);
  return out;
}

PoolWalkResult HostPool::walk(const NoteInputs& in, const MemorySettings& settings, const WalkRequest& request) {
  const int64_t B = in.summaries.size(0), T = in.summaries.size(1);
  if (B != static_cast<int64_t>(takers_.size())) throw std::invalid_argument("pool walk: batch does not match the pool");
  auto summaries_cpu = in.summaries.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  torch::Tensor learned_cpu;
  if (settings.importance == ImportanceRule::Learned)
    learned_cpu = in.learned.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  PoolWalkResult result;
  result.bank.valid = true;
  if (request.records) {
    result.records->importance.assign(static_cast<size_t>(T), 0.f);
    result.records->istate.assign(static_cast<size_t>(T), 0.f);
    result.records->flags.assign(static_cast<size_t>(T), 0);
  }
  std::vector<SequenceBank> banks;
  std::vector<torch::Tensor> importance, triggered;
  for (int64_t b = 0; b < B; ++b)
    banks.push_back(walk_sequence(b, in, summaries_cpu, learned_cpu, settings, request, result, importance, triggered));
  result.bank.batch = batch_bank(std::move(banks));
  result.importance = torch::stack(importance, 0);
  result.triggered = torch::stack(triggered, 0);
  return result;
}

SequenceBank HostPool::walk_sequence(int64_t b, const NoteInputs& in, const torch::Tensor& summaries_cpu,
                                     const torch::Tensor& learned_cpu, const MemorySettings& settings,
                                     const WalkRequest& request, PoolWalkResult& result,
                                     std::vector<torch::Tensor>& importance_out, std::vector<torch::Tensor>& triggered_out) {
  const int64_t T = in.summaries.size(1), K = slots_, S = width_, pos0 = request.pos0;
  const auto dev = in.summaries.device();
  const bool learned_rule = settings.importance == ImportanceRule::Learned;
  const bool observed = request.records && b == 0;
  NoteTaker& taker = takers_[b];

  // Constants carried in from a window left open by the previous chunk: its running max
  // (row T of the extended summaries) and the raw summaries of its tokens.
  std::vector<float> ext_values(taker.open_max());
  std::vector<float> ext_importance{std::isfinite(taker.open_priority()) ? taker.open_priority() : 0.f};
  std::map<int64_t, int64_t> carried_row;
  for (size_t i = 0; i < taker.open_positions().size(); ++i) {
    carried_row[taker.open_positions()[i]] = T + 1 + static_cast<int64_t>(i);
    ext_values.insert(ext_values.end(), taker.open_summaries()[i].begin(), taker.open_summaries()[i].end());
    ext_importance.push_back(0.f);
  }
  auto row_of = [&](int64_t position, bool for_max) -> int64_t {
    if (position >= pos0) return position - pos0;
    if (for_max) return T;
    return carried_row.at(position);
  };

  // The walk: every decision in order, on plain floats.
  std::vector<int64_t> slot_bank(K, -1), note_ids(K, -1);
  std::map<int64_t, int64_t> bank_of_note;  // note id -> bank index, for the events' replay
  for (int64_t j = 0; j < K; ++j)
    if (taker.pool().note_id(j) >= 0) {
      slot_bank[j] = j;
      note_ids[j] = taker.pool().note_id(j);
      bank_of_note[note_ids[j]] = j;
    }
  auto visible = torch::empty({T, K}, torch::kInt64);
  auto triggered = torch::zeros({T}, torch::kBool);
  int64_t* vis = visible.data_ptr<int64_t>();
  bool* trig = triggered.data_ptr<bool>();
  std::vector<int64_t> ref_token, ref_bank, ref_row;  // novelty references: bank index or extended row
  std::vector<int64_t> channel_rows, priority_rows, note_source;
  std::vector<PoolEventRecord> events;
  std::vector<NoteMade> notes;
  std::vector<float> walked_importance(static_cast<size_t>(T));
  const float* sp = summaries_cpu[b].data_ptr<float>();
  const float* lp = learned_rule ? learned_cpu[b].data_ptr<float>() : nullptr;
  for (int64_t t = 0; t < T; ++t) {
    std::copy(slot_bank.begin(), slot_bank.end(), vis + t * K);
    const size_t made_before = notes.size(), events_before = events.size();
    const TokenDecision d = taker.observe(sp + t * S, lp ? lp[t] : 0.f, settings, events, notes);
    trig[t] = d.trigger;
    walked_importance[t] = d.importance;
    if (observed) {
      result.records->importance[t] = d.importance;
      result.records->istate[t] = d.istate;
      result.records->flags[t] = static_cast<uint8_t>((d.noted ? kNoted : 0) | (d.trigger ? kTriggered : 0));
    }
    if (d.reference.kind == ImportanceReference::Kind::Slot) {
      ref_token.push_back(t); ref_bank.push_back(slot_bank[d.reference.index]); ref_row.push_back(-1);
    } else if (d.reference.kind == ImportanceReference::Kind::Token) {
      ref_token.push_back(t); ref_bank.push_back(-1); ref_row.push_back(row_of(d.reference.index, false));
    }
    for (size_t i = made_before; i < notes.size(); ++i) {
      const NoteMade& n = notes[i];
      const int64_t bank_index = static_cast<int64_t>(note_ids.size());
      note_ids.push_back(n.note_id);
      for (int64_t ch = 0; ch < S; ++ch) channel_rows.push_back(row_of(n.channel_source[ch], true));
      priority_rows.push_back(row_of(n.priority_source, true));
      note_source.push_back(n.priority_source);
      bank_of_note[n.note_id] = bank_index;
    }
    // The pool as the next token sees it: this token's events replayed on the slots (an
    // insert, an eviction, and with edits a removal without an insert).
    for (size_t i = events_before; i < events.size(); ++i) {
      const PoolEventRecord& e = events[i];
      if (e.kind == PoolEventKind::Insert) slot_bank[e.slot] = bank_of_note.at(e.note_id);
      else if (e.kind == PoolEventKind::Evict) slot_bank[e.slot] = -1;
    }
  }

  const int64_t n_new = static_cast<int64_t>(notes.size());
  auto s_b = in.summaries[b];
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor new_vectors, bank_vectors, importance, new_priority;
  // The bank: the carried slots, then the chunk's notes.
  auto bank_of = [&](const torch::Tensor& fresh) {
    return n_new > 0 ? torch::cat({vectors_[b].to(s_b.dtype()), fresh}, 0) : vectors_[b].to(s_b.dtype());
  };
  if (!needs_autograd({in.summaries, in.learned})) {
    // Nothing to differentiate: the notes and the importance as the walk decided them.
    std::vector<float> vectors_host, priority_host;
    vectors_host.reserve(static_cast<size_t>(n_new * S));
    for (const NoteMade& n : notes) {
      vectors_host.insert(vectors_host.end(), n.vector.begin(), n.vector.end());
      priority_host.push_back(n.priority);
    }
    new_vectors = floats_to_tensor(vectors_host, n_new, S, dev).to(s_b.dtype());
    bank_vectors = bank_of(new_vectors);
    new_priority = floats_to_tensor(priority_host, 1, n_new, dev).view({n_new}).to(s_b.dtype());
    importance = learned_rule ? in.learned[b] : floats_to_tensor(walked_importance, 1, T, dev).view({T}).to(s_b.dtype());
  } else {
    // The notes gathered from the summaries and the importance rebuilt, differentiably.
    const int64_t n_ext = static_cast<int64_t>(ext_importance.size());
    auto s_ext = torch::cat({s_b, floats_to_tensor(ext_values, n_ext, S, dev).to(s_b.dtype())}, 0);
    new_vectors = n_new > 0 ? s_ext.gather(0, torch::tensor(channel_rows, long_opts).view({n_new, S}).to(dev))
                            : torch::zeros({0, S}, s_b.options());
    bank_vectors = bank_of(new_vectors);
    auto ext_imp = torch::tensor(ext_importance, torch::kFloat32).to(dev).to(s_b.dtype());
    if (learned_rule) {
      importance = in.learned[b];
    } else {
      importance = torch::ones({T}, s_b.options());
      if (!ref_token.empty()) {
        const int64_t nb = bank_vectors.size(0);
        std::vector<int64_t> ref_index(ref_token.size());
        for (size_t i = 0; i < ref_token.size(); ++i) ref_index[i] = ref_bank[i] >= 0 ? ref_bank[i] : nb + ref_row[i];
        auto references = torch::cat({bank_vectors, s_ext}, 0)
                              .index_select(0, torch::tensor(ref_index, long_opts).to(dev));
        auto tok = torch::tensor(ref_token, long_opts).to(dev);
        auto cos = torch::cosine_similarity(s_b.index_select(0, tok), references, 1, 1e-12);
        importance = importance.index_put({tok}, 1 - cos);
      }
    }
    auto importance_ext = torch::cat({importance, ext_imp}, 0);
    new_priority = n_new > 0 ? importance_ext.index_select(0, torch::tensor(priority_rows, long_opts).to(dev))
                             : torch::zeros({0}, s_b.options());
  }
  auto bank_priority = n_new > 0 ? torch::cat({priority_[b].to(s_b.dtype()), new_priority}, 0) : priority_[b].to(s_b.dtype());

  const bool pool_changed = n_new > 0 || !events.empty();
  SequenceBank bank;
  bank.vectors = bank_vectors;
  bank.priority = bank_priority;
  bank.visible = visible.to(dev);
  if (request.sources) {
    std::vector<int64_t> source(static_cast<size_t>(K), -1);
    source.insert(source.end(), note_source.begin(), note_source.end());
    bank.source = torch::tensor(source, long_opts).to(dev);
  }
  if (observed) {
    *bank.note_ids = std::move(note_ids);
    result.records->notes = std::move(notes);
    result.records->events = std::move(events);
  }
  importance_out.push_back(importance);
  triggered_out.push_back(triggered.to(dev));

  // The pool carried to the next chunk (unchanged when the chunk made no note and no edit
  // removed one).
  if (!pool_changed) return bank;
  auto final_slots = torch::tensor(slot_bank, long_opts).to(dev);
  auto occupied = final_slots.ge(0);
  auto safe = final_slots.clamp_min(0);
  vectors_[b] = bank_vectors.index_select(0, safe) * occupied.unsqueeze(1).to(bank_vectors.dtype());
  priority_[b] = torch::where(occupied, bank_priority.index_select(0, safe), torch::ones_like(bank_priority.index_select(0, safe)));
  return bank;
}

}  // namespace memmamba
