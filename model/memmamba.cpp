#include "model/memmamba.h"

#include <torch/torch.h>

#include <cmath>
#include <optional>
#include <stdexcept>

#include "model/cuda/step_graph.h"
#include "model/memory_attention.h"
#include "model/profile.h"
#include "model/trace_builder.h"

namespace memmamba {

// One layer's notes as one chunk (or one step) sees them, per sequence of the batch:
// the bank of note vectors (pool slots carried in, then the notes made in the chunk),
// and for each token the bank index held by each slot (-1 empty). The cross-layer
// attention of a later layer reads the banks of the layers below it.
struct ChunkBank {
  bool valid = false;
  std::vector<torch::Tensor> vectors;             // [nb, S]
  std::vector<torch::Tensor> priority;            // [nb]
  std::vector<torch::Tensor> visible;             // [T, K] int64
  std::vector<std::vector<int64_t>> note_ids;     // bank index -> layer-local note id
  // [nb] int64: the position a note made in this chunk came from, -1 for carried slots.
  // Filled only when a run taps its attention (RunOptions::on_attention).
  std::vector<torch::Tensor> source;
};

namespace {

torch::Tensor floats_to_tensor(const std::vector<float>& v, int64_t rows, int64_t cols, const torch::Device& device) {
  return torch::from_blob(const_cast<float*>(v.data()), {rows, cols}, torch::kFloat32).clone().to(device);
}

std::vector<float> to_floats(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// Sends attention rows of one layer to the trace: weights [n, M] over `visible` [n, M].
// What one token attention row or a cross-layer union looks at: for each column, the
// pool's layer and slot, and where the bank's note ids live.
struct SlotColumns {
  std::vector<int32_t> layer, slot;
  std::vector<const std::vector<int64_t>*> note_ids;
  std::vector<int64_t> bank_offsets;
};

SlotColumns own_pool_columns(int64_t layer, int64_t K, const std::vector<int64_t>* note_ids) {
  SlotColumns cols;
  cols.layer.assign(static_cast<size_t>(K), static_cast<int32_t>(layer));
  for (int64_t j = 0; j < K; ++j) cols.slot.push_back(static_cast<int32_t>(j));
  cols.note_ids = {note_ids};
  cols.bank_offsets = {0};
  return cols;
}

// The union of the pools of layers [first, layer] for sequence b, as one bank: vectors,
// priorities, visible bank indices (offset per layer) and the columns' identities.
struct PoolUnion {
  torch::Tensor vectors, priority, visible;
  torch::Tensor source;  // [nb] when every bank has sources, else undefined
  SlotColumns columns;
};

PoolUnion pool_union(const std::vector<ChunkBank>& banks, int64_t first, int64_t layer, int64_t b, int64_t K) {
  std::vector<torch::Tensor> vecs, pris, viss, srcs;
  PoolUnion u;
  int64_t offset = 0;
  for (int64_t l = first; l <= layer; ++l) {
    const ChunkBank& bl = banks[l];
    if (!bl.valid) continue;
    vecs.push_back(bl.vectors[b]);
    pris.push_back(bl.priority[b]);
    viss.push_back(torch::where(bl.visible[b].ge(0), bl.visible[b] + offset, bl.visible[b]));
    if (b < static_cast<int64_t>(bl.source.size())) srcs.push_back(bl.source[b]);
    u.columns.note_ids.push_back(&bl.note_ids[b]);
    u.columns.bank_offsets.push_back(offset);
    for (int64_t j = 0; j < K; ++j) {
      u.columns.layer.push_back(static_cast<int32_t>(l));
      u.columns.slot.push_back(static_cast<int32_t>(j));
    }
    offset += bl.vectors[b].size(0);
  }
  u.vectors = torch::cat(vecs, 0);
  u.priority = torch::cat(pris, 0);
  u.visible = torch::cat(viss, 1);
  if (!srcs.empty() && srcs.size() == vecs.size()) u.source = torch::cat(srcs, 0);
  return u;
}

// Hands one attention to RunOptions::on_attention, with each visible slot's source position.
void tap_attention(const RunOptions& options, int64_t layer, bool cross_layer, int64_t b, int64_t pos0,
                   const torch::Tensor& rows, const torch::Tensor& weights, const torch::Tensor& visible,
                   const torch::Tensor& bank_source, const torch::Tensor& applied) {
  AttentionTap tap;
  tap.layer = layer;
  tap.cross_layer = cross_layer;
  tap.sequence = b;
  tap.pos0 = pos0;
  tap.rows = rows;
  tap.weights = weights;
  tap.source = bank_source.defined()
                   ? torch::where(visible.ge(0), bank_source.index_select(0, visible.clamp_min(0).reshape({-1})).view_as(visible),
                                  torch::full({}, -1, visible.options()))
                   : torch::full_like(visible, -1);
  tap.applied = applied;
  options.on_attention(tap);
}

// Sends attention rows to the trace: weights [n, M] over `visible` [n, M] bank indices.
// The trace keeps the top `attention_topk` weights of a row. They are chosen where the weights
// are (on the GPU for a GPU run), with each column's pool layer, slot and note found there
// too, so only k entries per row come to the host and are appended in bulk. Visible columns
// go before empty ones, whatever their weight.
void trace_attention(TraceBuilder& trace, int32_t layer, bool cross_layer, const std::vector<int64_t>& positions,
                     const torch::Tensor& weights, const torch::Tensor& visible, const SlotColumns& columns) {
  if (!trace.options().record_attention || positions.empty()) return;
  const auto dev = weights.device();
  const int64_t M = weights.size(1), k = std::min<int64_t>(M, trace.options().attention_topk);
  auto w = weights.detach().to(torch::kFloat32);
  auto [top_weight, top_column] = torch::where(visible.ge(0), w, torch::full({}, -1.f, w.options())).topk(k, 1);
  auto bank = visible.gather(1, top_column);  // [n, k] bank index, -1 where nothing is visible
  // The note id of every bank index of the pools these columns read, in bank order.
  int64_t bank_size = 0;
  for (size_t g = 0; g < columns.note_ids.size(); ++g)
    bank_size = std::max<int64_t>(bank_size, columns.bank_offsets[g] + static_cast<int64_t>(columns.note_ids[g]->size()));
  std::vector<int64_t> ids(static_cast<size_t>(bank_size), -1);
  for (size_t g = 0; g < columns.note_ids.size(); ++g)
    std::copy(columns.note_ids[g]->begin(), columns.note_ids[g]->end(), ids.begin() + columns.bank_offsets[g]);
  auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
  auto int_opts = torch::TensorOptions().dtype(torch::kInt32);
  auto ids_t = torch::from_blob(ids.data(), {bank_size}, long_opts).to(dev);
  auto local = torch::where(bank.ge(0), ids_t.index_select(0, bank.clamp_min(0).reshape({-1})).view_as(bank),
                            torch::full({}, -1, bank.options()));
  auto column_layer = torch::from_blob(const_cast<int32_t*>(columns.layer.data()), {M}, int_opts).to(dev);
  auto column_slot = torch::from_blob(const_cast<int32_t*>(columns.slot.data()), {M}, int_opts).to(dev);
  auto flat_columns = top_column.reshape({-1});
  auto layer_cpu = column_layer.index_select(0, flat_columns).to(torch::kCPU).contiguous();
  auto slot_cpu = column_slot.index_select(0, flat_columns).to(torch::kCPU).contiguous();
  auto local_cpu = local.to(torch::kCPU).contiguous();
  auto weight_cpu = top_weight.to(torch::kCPU).contiguous();
  trace.attention_rows(layer, cross_layer, positions, k, slot_cpu.data_ptr<int32_t>(), layer_cpu.data_ptr<int32_t>(),
                       local_cpu.data_ptr<int64_t>(), weight_cpu.data_ptr<float>());
}

// Absolute positions of row indices (a 1-D int64 tensor) of a chunk starting at pos0.
std::vector<int64_t> positions_of(const torch::Tensor& rows, int64_t pos0) {
  auto rows_cpu = rows.to(torch::kCPU).contiguous();
  std::vector<int64_t> positions(rows_cpu.data_ptr<int64_t>(), rows_cpu.data_ptr<int64_t>() + rows_cpu.numel());
  for (auto& pos : positions) pos += pos0;
  return positions;
}

// The Note Block's inputs: candidate summaries s = W_N RMSNorm(x), and the learned
// importance (undefined unless the learned rule is on).
struct NoteInputs {
  torch::Tensor s, learned;
};
NoteInputs note_inputs(const ModelConfig& c, const Weights& w, const std::string& p, const torch::Tensor& x,
                       bool learned_rule) {
  auto u = rms_norm(x, w[p + "note.norm.weight"], c.norm_eps);
  NoteInputs in{project(u, w[p + "note.summary.weight"]), {}};
  if (learned_rule)
    in.learned = torch::sigmoid(torch::matmul(u, w[p + "note.importance.weight"]) + w[p + "note.importance.bias"]);
  return in;
}

}  // namespace

MemMambaModel::MemMambaModel(ModelConfig config, Weights weights) : config_(std::move(config)), weights_(std::move(weights)) {
  config_.validate();
  for (const ParamSpec& spec : parameter_specs(config_)) {
    if (!weights_.has(spec.name)) throw std::invalid_argument("weights lack \"" + spec.name + "\"");
    if (weights_[spec.name].sizes() != torch::IntArrayRef(spec.shape))
      throw std::invalid_argument("weight \"" + spec.name + "\" has the wrong shape");
  }
}

MemMambaModel MemMambaModel::random(const ModelConfig& config, uint64_t seed) {
  return MemMambaModel(config, Weights::random(config, seed));
}

torch::Tensor MemMambaModel::note_summaries(int64_t layer, const torch::Tensor& x) const {
  if (!config_.memory) throw std::invalid_argument("a Mamba-only model has no Note Block");
  if (layer < 0 || layer >= config_.n_layers) throw std::invalid_argument("layer out of range");
  return note_inputs(config_, weights_, layer_prefix(layer), x, false).s;
}

torch::Device MemMambaModel::device() const { return weights_["embedding.weight"].device(); }

RunOptions MemMambaModel::default_options() const {
  RunOptions o;
  o.memory = MemorySettings::from(config_);
  // A GPU needs long chunks to be busy; its memory holds them.
  if (device().is_cuda()) o.chunk_tokens = 65536;
  return o;
}

RunState MemMambaModel::new_state(int64_t batch) const {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1");
  RunState s;
  s.batch = batch;
  const auto dev = device();
  const auto fopts = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  s.retention_sums.resize(static_cast<size_t>(config_.n_layers));
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    s.mixers.push_back(new_mixer_state(config_, batch, dev));
    LayerMemoryState m;
    if (config_.memory) {
      for (int64_t b = 0; b < batch; ++b) {
        m.takers.emplace_back(config_.pool_slots, config_.summary_dim, config_.note_window);
        m.pool_vectors.push_back(torch::zeros({config_.pool_slots, config_.summary_dim}, fopts));
        m.pool_priority.push_back(torch::ones({config_.pool_slots}, fopts));
        m.slot_keys.emplace_back(config_.pool_slots * config_.summary_dim, 0.f);
        m.slot_values.emplace_back(config_.pool_slots * config_.summary_dim, 0.f);
        m.slot_cache_valid.push_back(0);
      }
      if (dev.is_cuda() && config_.note_window == 1 &&
          cuda_ops::note_pool_available(config_.pool_slots, config_.summary_dim))
        m.device_pool = cuda_ops::new_device_pool(batch, config_.pool_slots, config_.summary_dim, dev);
    }
    s.memory.push_back(std::move(m));
  }
  if (dev.is_cuda()) s.device_position = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  return s;
}

torch::Tensor MemMambaModel::logits(const torch::Tensor& hidden) const {
  return project(hidden, weights_["embedding.weight"]);
}

void MemMambaModel::record_retention(int64_t layer, int64_t pos0, const torch::Tensor& dt, RunState& state,
                                     const RunOptions& options) const {
  if (!options.trace || options.retention_sources.empty()) return;
  torch::NoGradGuard no_grad;
  auto dt0 = dt.select(0, 0).detach().to(torch::kFloat32);  // [T, Di]
  const int64_t T = dt0.size(0);
  auto A = mixer_decay_rates(weights_, layer).detach().to(torch::kFloat32).unsqueeze(0);  // [1, Di, N]
  auto& sums = state.retention_sums[layer];
  for (int64_t source : options.retention_sources) {
    if (source < 0 || source >= pos0 + T) continue;
    const int64_t last = source + options.retention_horizon;
    if (last < pos0) continue;
    std::vector<float> values;
    torch::Tensor carried;
    if (source >= pos0) {
      values.push_back(1.f);
      carried = torch::zeros({dt0.size(1)}, dt0.options());
    } else {
      auto it = sums.find(source);
      if (it == sums.end()) continue;  // the source was before this run began
      carried = it->second;
    }
    const int64_t t_begin = std::max(source + 1, pos0), t_end = std::min(last, pos0 + T - 1);
    for (int64_t b0 = t_begin; b0 <= t_end; b0 += 256) {
      const int64_t n = std::min<int64_t>(256, t_end - b0 + 1);
      auto cum = dt0.narrow(0, b0 - pos0, n).cumsum(0) + carried;  // [n, Di]
      auto r = torch::exp(cum.unsqueeze(-1) * A).mean({1, 2});
      auto rv = to_floats(r);
      values.insert(values.end(), rv.begin(), rv.end());
      carried = cum.select(0, n - 1);
    }
    sums[source] = carried;
    if (!values.empty()) options.trace->retention(static_cast<int32_t>(layer), source, std::move(values));
  }
}

// Per-token figures one layer sends to the trace.
struct LayerRecords {
  explicit LayerRecords(int64_t T)
      : importance(T, 0.f), istate(T, 0.f), tok_norm(T, 0.f), lay_norm(T, 0.f), flags(T, 0) {}
  std::vector<float> importance, istate, tok_norm, lay_norm;
  std::vector<uint8_t> flags;
};

// The Note Block, retrieval trigger and cross-token attention with the bookkeeping on the
// GPU (model/cuda/note_pool.cu). With windows of one token every token is a candidate
// note, so the chunk's bank is simply the K carried slots followed by the T summaries:
// bank index K + t is token t's note, and no host round trip is needed to build it.
torch::Tensor MemMambaModel::memory_on_device(int64_t layer, const torch::Tensor& x, RunState& state,
                                              const RunOptions& options, std::vector<ChunkBank>& banks,
                                              LayerRecords& rec) const {
  const ModelConfig& c = config_;
  const Weights& w = weights_;
  const std::string p = layer_prefix(layer);
  const int64_t B = x.size(0), T = x.size(1), K = c.pool_slots, S = c.summary_dim;
  LayerMemoryState& mem = state.memory[layer];
  TraceBuilder* trace = options.trace;
  const int64_t pos0 = state.position;

  const bool learned_rule = options.memory.importance == ImportanceRule::Learned;
  std::optional<profile::Section> section(std::in_place, "memory: note summaries", x.device());
  const NoteInputs in = note_inputs(c, w, p, x, learned_rule);
  const torch::Tensor& s = in.s;  // [B, T, S]
  const torch::Tensor& learned = in.learned;
  torch::Tensor ids_before, made_before;
  if (trace) {
    ids_before = mem.device_pool.slot_note_id[0].to(torch::kCPU);
    made_before = mem.device_pool.notes_made.to(torch::kCPU);
  }
  section.emplace("memory: pool walk", x.device());
  const cuda_ops::DevicePoolDecisions d = cuda_ops::note_pool(s, learned, options.memory, mem.device_pool,
                                                              state.device_position);
  section.emplace("memory: bank and importance", x.device());

  auto pool_vectors = torch::stack(mem.pool_vectors, 0).to(s.dtype());    // [B, K, S]
  auto pool_priority = torch::stack(mem.pool_priority, 0).to(s.dtype());  // [B, K]
  auto bank_vectors = torch::cat({pool_vectors, s}, 1);                   // [B, K + T, S]
  torch::Tensor importance;
  if (learned_rule) {
    importance = learned;
  } else if (!needs_autograd({s})) {
    importance = d.importance;  // the walk's own 1 - cos: nothing to differentiate
  } else {  // novelty, rebuilt differentiably from the reference the kernel chose
    auto safe = d.reference.clamp_min(0);
    auto refs = bank_vectors.gather(1, safe.unsqueeze(-1).expand({B, T, S}));
    auto cos = torch::cosine_similarity(s, refs, -1, 1e-12);
    importance = torch::where(d.reference.ge(0), 1 - cos, torch::ones_like(cos));
  }
  auto bank_priority = torch::cat({pool_priority, importance.to(s.dtype())}, 1);  // [B, K + T]
  if (options.on_importance)
    for (int64_t b = 0; b < B; ++b) options.on_importance(layer, b, pos0, importance[b]);

  // The pool carried to the next chunk.
  auto occupied = d.final_bank.ge(0);
  auto safe_final = d.final_bank.clamp_min(0);
  auto next_vectors = bank_vectors.gather(1, safe_final.unsqueeze(-1).expand({B, K, S})) *
                      occupied.unsqueeze(-1).to(bank_vectors.dtype());
  auto next_priority = torch::where(occupied, bank_priority.gather(1, safe_final), torch::ones({}, bank_priority.options()));

  section.emplace("memory: token attention", x.device());
  ChunkBank& bank = banks[layer];
  bank = ChunkBank{};
  bank.valid = true;
  auto triggered = d.flags.bitwise_and(2).ne(0);  // [B, T]
  std::vector<torch::Tensor> contexts;
  torch::Tensor weights0;
  for (int64_t b = 0; b < B; ++b) {
    bank.vectors.push_back(bank_vectors[b]);
    bank.priority.push_back(bank_priority[b]);
    bank.visible.push_back(d.visible[b]);
    bank.note_ids.emplace_back();
    auto out = slot_attention(c, w, p + "token_attention.", x[b], bank_vectors[b], bank_priority[b], d.visible[b]);
    contexts.push_back(out.context * triggered[b].unsqueeze(-1).to(out.context.dtype()));
    if (options.on_attention) {
      auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(x.device());
      bank.source.push_back(torch::cat({torch::full({K}, -1, long_opts), pos0 + torch::arange(T, long_opts)}, 0));
      tap_attention(options, layer, false, b, pos0, torch::arange(T, long_opts), out.weights, d.visible[b],
                    bank.source.back(), triggered[b]);
    }
    if (b == 0) weights0 = out.weights;
    mem.pool_vectors[b] = next_vectors[b];
    mem.pool_priority[b] = next_priority[b];
    mem.slot_cache_valid[b] = 0;
  }
  auto token_term = fusion_term(c, w, p + "token_attention.", x, B == 1 ? contexts[0].unsqueeze(0) : torch::stack(contexts, 0),
                                options.memory.fusion_gain);
  section.emplace("trace (host)", x.device());

  if (trace) {
    auto imp = d.importance[0].to(torch::kCPU).contiguous();
    auto ist = d.istate[0].to(torch::kCPU).contiguous();
    auto flags = d.flags[0].to(torch::kCPU).contiguous();
    auto taken = d.slot_taken[0].to(torch::kCPU).contiguous();
    auto evicted = d.evicted_note[0].to(torch::kCPU).contiguous();
    auto evicted_priority = d.evicted_priority[0].to(torch::kCPU).contiguous();
    auto s_host = s[0].detach().to(torch::kCPU, torch::kFloat32).contiguous();
    const float* ip = imp.data_ptr<float>();
    const uint8_t* fp = flags.data_ptr<uint8_t>();
    std::copy(ip, ip + T, rec.importance.begin());
    std::copy(ist.data_ptr<float>(), ist.data_ptr<float>() + T, rec.istate.begin());
    for (int64_t t = 0; t < T; ++t)
      rec.flags[t] = static_cast<uint8_t>(((fp[t] & 1) ? kNoted : 0) | ((fp[t] & 2) ? kTriggered : 0));
    std::vector<int64_t>& note_ids = bank.note_ids[0];
    note_ids.assign(static_cast<size_t>(K + T), -1);
    for (int64_t j = 0; j < K; ++j) note_ids[j] = ids_before.data_ptr<int64_t>()[j];
    int64_t next_id = made_before.data_ptr<int64_t>()[0];
    std::vector<NoteMade> notes;
    std::vector<PoolEventRecord> events;
    for (int64_t t = 0; t < T; ++t) {
      if (!(fp[t] & 1)) continue;
      const int64_t pos = pos0 + t;
      NoteMade n;
      n.note_id = next_id++;
      n.window = pos;
      n.priority = ip[t];
      n.priority_source = pos;
      n.sources = {pos};
      n.channel_source.assign(static_cast<size_t>(S), pos);
      n.vector.assign(s_host.data_ptr<float>() + t * S, s_host.data_ptr<float>() + (t + 1) * S);
      n.slot = taken.data_ptr<int32_t>()[t];
      if (n.slot >= 0) {
        note_ids[K + t] = n.note_id;
        const int64_t gone = evicted.data_ptr<int64_t>()[t];
        if (gone >= 0)
          events.push_back({pos, PoolEventKind::Evict, n.slot, gone, evicted_priority.data_ptr<float>()[t]});
        events.push_back({pos, PoolEventKind::Insert, n.slot, n.note_id, n.priority});
      } else {
        events.push_back({pos, PoolEventKind::Drop, -1, n.note_id, n.priority});
      }
      notes.push_back(std::move(n));
    }
    trace->notes_made(static_cast<int32_t>(layer), notes);
    trace->pool_events(static_cast<int32_t>(layer), events);
    auto rows = (triggered[0] & d.visible[0].ge(0).any(1)).nonzero().squeeze(1);
    const std::vector<int64_t> positions = positions_of(rows, pos0);
    trace_attention(*trace, static_cast<int32_t>(layer), false, positions, weights0.index_select(0, rows),
                    d.visible[0].index_select(0, rows), own_pool_columns(layer, K, &note_ids));
    auto norms = to_floats(token_term[0].norm(2, -1));
    std::copy(norms.begin(), norms.end(), rec.tok_norm.begin());
  }
  return x + token_term;
}

torch::Tensor MemMambaModel::layer_forward(int64_t layer, const torch::Tensor& x, RunState& state,
                                           const RunOptions& options, const torch::Tensor& ssm_input_mask,
                                           std::vector<ChunkBank>& banks) const {
  const ModelConfig& c = config_;
  const Weights& w = weights_;
  const std::string p = layer_prefix(layer);
  const int64_t B = x.size(0), T = x.size(1), K = c.pool_slots, S = c.summary_dim, D = c.d_model;
  const auto dev = x.device();
  const bool memory_on = c.memory && options.memory.enabled;
  TraceBuilder* trace = options.trace;
  const int64_t pos0 = state.position;

  LayerRecords records(T);
  std::vector<float>& rec_importance = records.importance;
  std::vector<float>& rec_istate = records.istate;
  std::vector<float>& rec_tok_norm = records.tok_norm;
  std::vector<float>& rec_lay_norm = records.lay_norm;
  std::vector<uint8_t>& rec_flags = records.flags;
  torch::Tensor xf = x;

  if (memory_on && state.memory[layer].device_pool.defined()) {
    xf = memory_on_device(layer, x, state, options, banks, records);
  } else if (memory_on) {
    LayerMemoryState& mem = state.memory[layer];
    const bool learned_rule = options.memory.importance == ImportanceRule::Learned;
    const NoteInputs in = note_inputs(c, w, p, x, learned_rule);
    const torch::Tensor& s = in.s;  // [B, T, S]
    const torch::Tensor& learned = in.learned;
    auto s_cpu = s.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    torch::Tensor learned_cpu = learned_rule ? learned.detach().to(torch::kCPU, torch::kFloat32).contiguous() : torch::Tensor();

    ChunkBank& bank = banks[layer];
    bank = ChunkBank{};
    bank.valid = true;
    std::vector<torch::Tensor> token_terms;
    for (int64_t b = 0; b < B; ++b) {
      NoteTaker& taker = mem.takers[b];
      // Constants carried in from a window left open by the previous call: its running
      // max (row T of the extended summaries) and the raw summaries of its tokens.
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

      std::vector<int64_t> slot_bank(K, -1), note_ids(K, -1);
      for (int64_t j = 0; j < K; ++j)
        if (taker.pool().note_id(j) >= 0) { slot_bank[j] = j; note_ids[j] = taker.pool().note_id(j); }
      auto visible = torch::empty({T, K}, torch::kInt64);
      int64_t* vis = visible.data_ptr<int64_t>();
      std::vector<int64_t> ref_token, ref_bank, ref_row;  // novelty references: bank index or extended row
      std::vector<int64_t> channel_rows, priority_rows, triggered, note_source;
      std::vector<PoolEventRecord> events;
      std::vector<NoteMade> notes;
      const float* sp = s_cpu[b].data_ptr<float>();
      const float* lp = learned_rule ? learned_cpu[b].data_ptr<float>() : nullptr;
      for (int64_t t = 0; t < T; ++t) {
        std::copy(slot_bank.begin(), slot_bank.end(), vis + t * K);
        const size_t made_before = notes.size();
        const TokenDecision d = taker.observe(sp + t * S, lp ? lp[t] : 0.f, options.memory, events, notes);
        if (b == 0) {
          rec_importance[t] = d.importance;
          rec_istate[t] = d.istate;
          rec_flags[t] = static_cast<uint8_t>((d.noted ? kNoted : 0) | (d.trigger ? kTriggered : 0));
        }
        if (d.reference.kind == ImportanceReference::Kind::Slot) {
          ref_token.push_back(t); ref_bank.push_back(slot_bank[d.reference.index]); ref_row.push_back(-1);
        } else if (d.reference.kind == ImportanceReference::Kind::Token) {
          ref_token.push_back(t); ref_bank.push_back(-1); ref_row.push_back(row_of(d.reference.index, false));
        }
        if (d.trigger) {
          for (int64_t j = 0; j < K; ++j)
            if (vis[t * K + j] >= 0) { triggered.push_back(t); break; }
        }
        for (size_t i = made_before; i < notes.size(); ++i) {
          const NoteMade& n = notes[i];
          const int64_t bank_index = static_cast<int64_t>(note_ids.size());
          note_ids.push_back(n.note_id);
          for (int64_t ch = 0; ch < S; ++ch) channel_rows.push_back(row_of(n.channel_source[ch], true));
          priority_rows.push_back(row_of(n.priority_source, true));
          note_source.push_back(n.priority_source);
          if (n.slot >= 0) slot_bank[n.slot] = bank_index;
        }
      }
      if (trace && b == 0) {
        trace->notes_made(static_cast<int32_t>(layer), notes);
        trace->pool_events(static_cast<int32_t>(layer), events);
      }

      // The differentiable half: notes gathered from the summaries, importance rebuilt.
      const int64_t n_new = static_cast<int64_t>(notes.size());
      const int64_t n_ext = static_cast<int64_t>(ext_importance.size());
      auto s_b = s[b];
      auto s_ext = torch::cat({s_b, floats_to_tensor(ext_values, n_ext, S, dev).to(s_b.dtype())}, 0);
      auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
      auto new_vectors = n_new > 0 ? s_ext.gather(0, torch::tensor(channel_rows, long_opts).view({n_new, S}).to(dev))
                                   : torch::zeros({0, S}, s_b.options());
      auto bank_vectors = torch::cat({mem.pool_vectors[b].to(s_b.dtype()), new_vectors}, 0);
      auto ext_imp = torch::tensor(ext_importance, torch::kFloat32).to(dev).to(s_b.dtype());
      torch::Tensor importance;
      if (learned_rule) {
        importance = learned[b];
      } else {
        importance = torch::ones({T}, s_b.options());
        if (!ref_token.empty()) {
          const int64_t nb = bank_vectors.size(0);
          std::vector<int64_t> ref_index(ref_token.size());
          for (size_t i = 0; i < ref_token.size(); ++i) ref_index[i] = ref_bank[i] >= 0 ? ref_bank[i] : nb + ref_row[i];
          auto references = torch::cat({bank_vectors, s_ext}, 0).index_select(0, torch::tensor(ref_index, long_opts).to(dev));
          auto tok = torch::tensor(ref_token, long_opts).to(dev);
          auto cos = torch::cosine_similarity(s_b.index_select(0, tok), references, 1, 1e-12);
          importance = importance.index_put({tok}, 1 - cos);
        }
      }
      if (options.on_importance) options.on_importance(layer, b, pos0, importance);
      auto importance_ext = torch::cat({importance, ext_imp}, 0);
      auto new_priority = n_new > 0 ? importance_ext.index_select(0, torch::tensor(priority_rows, long_opts).to(dev))
                                    : torch::zeros({0}, s_b.options());
      auto bank_priority = torch::cat({mem.pool_priority[b].to(s_b.dtype()), new_priority}, 0);
      auto visible_dev = visible.to(dev);
      bank.vectors.push_back(bank_vectors);
      bank.priority.push_back(bank_priority);
      bank.visible.push_back(visible_dev);
      bank.note_ids.push_back(note_ids);
      if (options.on_attention) {
        std::vector<int64_t> source(static_cast<size_t>(K), -1);
        source.insert(source.end(), note_source.begin(), note_source.end());
        bank.source.push_back(torch::tensor(source, long_opts).to(dev));
      }

      // The pool carried to the next chunk.
      auto final_slots = torch::tensor(slot_bank, long_opts).to(dev);
      auto occupied = final_slots.ge(0);
      auto safe = final_slots.clamp_min(0);
      mem.pool_vectors[b] = bank_vectors.index_select(0, safe) * occupied.unsqueeze(1).to(bank_vectors.dtype());
      mem.pool_priority[b] = torch::where(occupied, bank_priority.index_select(0, safe), torch::ones_like(bank_priority.index_select(0, safe)));
      mem.slot_cache_valid[b] = 0;

      // Cross-token attention for the triggered tokens.
      auto context = torch::zeros({T, D}, x.options());
      if (!triggered.empty()) {
        auto rows = torch::tensor(triggered, long_opts).to(dev);
        auto out = slot_attention(c, w, p + "token_attention.", x[b].index_select(0, rows), bank_vectors, bank_priority,
                                  visible_dev.index_select(0, rows));
        context = context.index_put({rows}, out.context);
        if (options.on_attention)
          tap_attention(options, layer, false, b, pos0, rows, out.weights, visible_dev.index_select(0, rows),
                        bank.source.back(), torch::ones({rows.size(0)}, torch::TensorOptions().dtype(torch::kBool).device(dev)));
        if (trace && b == 0) {
          std::vector<int64_t> positions(triggered.size());
          for (size_t i = 0; i < triggered.size(); ++i) positions[i] = pos0 + triggered[i];
          trace_attention(*trace, static_cast<int32_t>(layer), false, positions, out.weights,
                          visible.index_select(0, torch::tensor(triggered, long_opts)),
                          own_pool_columns(layer, K, &bank.note_ids.back()));
        }
      }
      token_terms.push_back(fusion_term(c, w, p + "token_attention.", x[b], context, options.memory.fusion_gain));
    }
    auto token_term = torch::stack(token_terms, 0);
    xf = x + token_term;
    if (trace) {
      auto norms = to_floats(token_term[0].norm(2, -1));
      std::copy(norms.begin(), norms.end(), rec_tok_norm.begin());
    }
  }

  if (memory_on && c.has_cross_layer(layer)) {
    {
      const profile::Section section("memory: cross-layer attention", x.device());
      const int64_t first = std::max<int64_t>(0, layer - c.cross_layer_groups + 1);
      std::vector<torch::Tensor> layer_terms;
      for (int64_t b = 0; b < B; ++b) {
        const PoolUnion pools = pool_union(banks, first, layer, b, K);  // visible: [T, g*K]
        auto context = torch::zeros({T, D}, x.options());
        if (x.is_cuda()) {
          // No host round trip: every row attends; rows that see nothing get exactly 0.
          auto out = slot_attention(c, w, p + "layer_attention.", x[b], pools.vectors, pools.priority, pools.visible);
          context = out.context;
          if (options.on_attention)
            tap_attention(options, layer, true, b, pos0, torch::arange(T, pools.visible.options()), out.weights,
                          pools.visible, pools.source, pools.visible.ge(0).any(1));
          if (trace && b == 0) {
            auto rows = pools.visible.ge(0).any(1).nonzero().squeeze(1);
            const std::vector<int64_t> positions = positions_of(rows, pos0);
            trace_attention(*trace, static_cast<int32_t>(layer), true, positions, out.weights.index_select(0, rows),
                            pools.visible.index_select(0, rows), pools.columns);
          }
          layer_terms.push_back(fusion_term(c, w, p + "layer_attention.", x[b], context, options.memory.fusion_gain));
          continue;
        }
        auto rows = pools.visible.ge(0).any(1).nonzero().squeeze(1);
        if (rows.numel() > 0) {
          auto out = slot_attention(c, w, p + "layer_attention.", x[b].index_select(0, rows), pools.vectors,
                                    pools.priority, pools.visible.index_select(0, rows));
          context = context.index_put({rows}, out.context);
          if (options.on_attention)
            tap_attention(options, layer, true, b, pos0, rows, out.weights, pools.visible.index_select(0, rows),
                          pools.source, torch::ones({rows.size(0)}, torch::TensorOptions().dtype(torch::kBool).device(dev)));
          if (trace && b == 0) {
            const std::vector<int64_t> positions = positions_of(rows, pos0);
            trace_attention(*trace, static_cast<int32_t>(layer), true, positions, out.weights,
                            pools.visible.index_select(0, rows), pools.columns);
          }
        }
        layer_terms.push_back(fusion_term(c, w, p + "layer_attention.", x[b], context, options.memory.fusion_gain));
      }
      auto layer_term = torch::stack(layer_terms, 0);
      xf = xf + layer_term;
      if (trace) {
        auto norms = to_floats(layer_term[0].norm(2, -1));
        std::copy(norms.begin(), norms.end(), rec_lay_norm.begin());
      }
    }
  }

  MixerOutput mixed = mixer_forward(c, w, layer, xf, state.mixers[layer], ssm_input_mask);
  const profile::Section trace_section("trace (host)", x.device());
  if (trace) {
    auto log_decay = to_floats((mixed.dt[0] * mixer_decay_rates(w, layer).mean(1)).mean(-1));
    trace->layer_tokens(static_cast<int32_t>(layer), pos0, T, rec_importance.data(), rec_istate.data(), rec_flags.data(),
                        rec_tok_norm.data(), rec_lay_norm.data(), log_decay.data());
    record_retention(layer, pos0, mixed.dt, state, options);
  }
  return mixed.x_next;
}

// Step mode's cross-token attention on the CPU, over cached slot keys and values:
// the same arithmetic as slot_attention, without per-token tensor overhead.
void MemMambaModel::update_slot_cache(int64_t layer, LayerMemoryState& mem, int64_t b, int64_t slot,
                                      const float* note) const {
  const std::string p = layer_prefix(layer) + "token_attention.";
  const int64_t S = config_.summary_dim;
  const float* wk = weights_[p + "k.weight"].data_ptr<float>();
  const float* wv = weights_[p + "v.weight"].data_ptr<float>();
  float* kr = mem.slot_keys[b].data() + slot * S;
  float* vr = mem.slot_values[b].data() + slot * S;
  for (int64_t i = 0; i < S; ++i) {
    float k = 0.f, v = 0.f;
    for (int64_t j = 0; j < S; ++j) {
      k += wk[i * S + j] * note[j];
      v += wv[i * S + j] * note[j];
    }
    kr[i] = k;
    vr[i] = v;
  }
}

torch::Tensor MemMambaModel::step_token_attention(int64_t layer, const torch::Tensor& x_row, LayerMemoryState& mem,
                                                  int64_t b, const std::vector<int64_t>& visible_slots,
                                                  const std::vector<float>& priorities,
                                                  std::vector<float>* weights_out) const {
  const std::string p = layer_prefix(layer) + "token_attention.";
  const int64_t K = config_.pool_slots, S = config_.summary_dim;
  if (!mem.slot_cache_valid[b]) {
    auto vectors = mem.pool_vectors[b].contiguous();
    for (int64_t j = 0; j < K; ++j) update_slot_cache(layer, mem, b, j, vectors.data_ptr<float>() + j * S);
    mem.slot_cache_valid[b] = 1;
  }
  auto q_t = at::mv(weights_[p + "q.weight"], rms_norm(x_row, weights_[p + "norm.weight"], config_.norm_eps)).contiguous();
  const float* q = q_t.data_ptr<float>();
  const float scale = 1.f / std::sqrt(static_cast<float>(S));
  std::vector<float> logits(static_cast<size_t>(K), 0.f);
  float best = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < K; ++j) {
    if (visible_slots[j] < 0) continue;
    const float* kr = mem.slot_keys[b].data() + j * S;
    float dot = 0.f;
    for (int64_t i = 0; i < S; ++i) dot += q[i] * kr[i];
    logits[j] = dot * scale + std::log(std::max(priorities[j], 1e-6f));
    best = std::max(best, logits[j]);
  }
  float total = 0.f;
  for (int64_t j = 0; j < K; ++j) {
    if (visible_slots[j] < 0) continue;
    logits[j] = std::exp(logits[j] - best);
    total += logits[j];
  }
  auto ctx_t = torch::zeros({S});
  float* ctx = ctx_t.data_ptr<float>();
  for (int64_t j = 0; j < K; ++j) {
    if (visible_slots[j] < 0) { logits[j] = 0.f; continue; }
    logits[j] /= total;
    const float* vr = mem.slot_values[b].data() + j * S;
    for (int64_t i = 0; i < S; ++i) ctx[i] += logits[j] * vr[i];
  }
  if (weights_out) *weights_out = logits;
  return at::mv(weights_[p + "o.weight"], ctx_t).unsqueeze(0);
}

torch::Tensor MemMambaModel::layer_step(int64_t layer, const torch::Tensor& x, RunState& state,
                                        const RunOptions& options, std::vector<ChunkBank>& banks) const {
  const ModelConfig& c = config_;
  const Weights& w = weights_;
  const std::string p = layer_prefix(layer);
  const int64_t B = x.size(0), K = c.pool_slots, S = c.summary_dim;
  const auto dev = x.device();
  const bool memory_on = c.memory && options.memory.enabled;
  TraceBuilder* trace = options.trace;
  const int64_t pos = state.position;
  const bool fast_cpu = x.device().is_cpu() && x.scalar_type() == torch::kFloat32 &&
                        !needs_autograd({x});
  std::vector<float> attention_weights(static_cast<size_t>(K), 0.f);
  float rec_importance = 0, rec_istate = 0, rec_tok_norm = 0, rec_lay_norm = 0;
  uint8_t rec_flags = 0;
  torch::Tensor xf = x;

  if (memory_on) {
    LayerMemoryState& mem = state.memory[layer];
    const bool learned_rule = options.memory.importance == ImportanceRule::Learned;
    const NoteInputs in = note_inputs(c, w, p, x, learned_rule);
    auto s_cpu = in.s.to(torch::kCPU, torch::kFloat32).contiguous();
    torch::Tensor learned_cpu;
    if (learned_rule) learned_cpu = in.learned.to(torch::kCPU, torch::kFloat32).contiguous();
    ChunkBank& bank = banks[layer];
    bank = ChunkBank{};
    bank.valid = true;
    std::vector<torch::Tensor> contexts;
    for (int64_t b = 0; b < B; ++b) {
      NoteTaker& taker = mem.takers[b];
      // The pool as visible at this token, before this token's window may add a note.
      std::vector<int64_t> vis(K, -1), note_ids(K, -1);
      std::vector<float> vis_priority(K, 1.f);
      bool any_visible = false;
      for (int64_t j = 0; j < K; ++j) {
        if (taker.pool().note_id(j) < 0) continue;
        vis[j] = j;
        note_ids[j] = taker.pool().note_id(j);
        vis_priority[j] = taker.pool().priority(j);
        any_visible = true;
      }
      auto visible = torch::tensor(vis, torch::kInt64).view({1, K}).to(dev);
      bank.vectors.push_back(mem.pool_vectors[b]);
      bank.priority.push_back(mem.pool_priority[b]);
      bank.visible.push_back(visible);
      bank.note_ids.push_back(note_ids);

      std::vector<PoolEventRecord> events;
      std::vector<NoteMade> notes;
      const TokenDecision d = taker.observe(s_cpu[b].data_ptr<float>(), learned_rule ? learned_cpu[b].item<float>() : 0.f,
                                            options.memory, events, notes);
      auto context = torch::zeros({1, c.d_model}, x.options());
      if (d.trigger && any_visible) {
        torch::Tensor weights;
        if (fast_cpu) {
          context = step_token_attention(layer, x[b], mem, b, vis, vis_priority, trace && b == 0 ? &attention_weights : nullptr);
          if (trace && b == 0) weights = torch::from_blob(attention_weights.data(), {1, K}, torch::kFloat32);
        } else {
          auto out = slot_attention(c, w, p + "token_attention.", x[b].unsqueeze(0), mem.pool_vectors[b],
                                    mem.pool_priority[b], visible);
          context = out.context;
          weights = out.weights;
        }
        if (trace && b == 0)
          trace_attention(*trace, static_cast<int32_t>(layer), false, {pos}, weights, visible,
                          own_pool_columns(layer, K, &bank.note_ids.back()));
      }
      for (const NoteMade& n : notes) {
        if (n.slot < 0) continue;
        if (fast_cpu && mem.slot_cache_valid[b]) update_slot_cache(layer, mem, b, n.slot, n.vector.data());
        auto slot = torch::tensor({static_cast<int64_t>(n.slot)}, torch::kInt64).to(dev);
        mem.pool_vectors[b] = mem.pool_vectors[b].index_copy(0, slot, floats_to_tensor(n.vector, 1, S, dev));
        mem.pool_priority[b] = mem.pool_priority[b].index_copy(0, slot, torch::full({1}, n.priority, mem.pool_priority[b].options()));
      }
      if (trace && b == 0) {
        trace->notes_made(static_cast<int32_t>(layer), notes);
        trace->pool_events(static_cast<int32_t>(layer), events);
        rec_importance = d.importance;
        rec_istate = d.istate;
        rec_flags = static_cast<uint8_t>((d.noted ? kNoted : 0) | (d.trigger ? kTriggered : 0));
      }
      contexts.push_back(context);
    }
    auto context = torch::cat(contexts, 0);  // [B, D]
    auto token_term = fusion_term(c, w, p + "token_attention.", x, context, options.memory.fusion_gain);
    xf = x + token_term;
    if (trace) rec_tok_norm = token_term[0].norm().item<float>();

    if (c.has_cross_layer(layer)) {
      const int64_t first = std::max<int64_t>(0, layer - c.cross_layer_groups + 1);
      std::vector<torch::Tensor> layer_contexts;
      for (int64_t b = 0; b < B; ++b) {
        const PoolUnion pools = pool_union(banks, first, layer, b, K);
        auto ctx = torch::zeros({1, c.d_model}, x.options());
        if (pools.visible.ge(0).any().item<bool>()) {
          auto out = slot_attention(c, w, p + "layer_attention.", x[b].unsqueeze(0), pools.vectors, pools.priority,
                                    pools.visible);
          ctx = out.context;
          if (trace && b == 0)
            trace_attention(*trace, static_cast<int32_t>(layer), true, {pos}, out.weights, pools.visible, pools.columns);
        }
        layer_contexts.push_back(ctx);
      }
      auto layer_term = fusion_term(c, w, p + "layer_attention.", x, torch::cat(layer_contexts, 0), options.memory.fusion_gain);
      xf = xf + layer_term;
      if (trace) rec_lay_norm = layer_term[0].norm().item<float>();
    }
  }

  MixerOutput mixed = mixer_step(c, w, layer, xf, state.mixers[layer]);
  if (trace) {
    const float log_decay = (mixed.dt[0] * mixer_decay_rates(w, layer).mean(1)).mean().item<float>();
    trace->layer_tokens(static_cast<int32_t>(layer), pos, 1, &rec_importance, &rec_istate, &rec_flags, &rec_tok_norm,
                        &rec_lay_norm, &log_decay);
    record_retention(layer, pos, mixed.dt.unsqueeze(1), state, options);
  }
  return mixed.x_next;
}

namespace {
void check_tokens(const torch::Tensor& tokens, int64_t vocab) {
  if (tokens.numel() == 0) return;
  auto lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
  if (lo < 0 || hi >= vocab)
    throw std::invalid_argument("token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary of " +
                                std::to_string(vocab));
}
}  // namespace

torch::Tensor MemMambaModel::forward(const torch::Tensor& tokens_in, RunState& state, const RunOptions& options) const {
  state.step_graph.reset();  // a parallel pass replaces the state tensors a captured step reads
  return forward_impl(tokens_in, state, options, false);
}

torch::Tensor MemMambaModel::forward_impl(const torch::Tensor& tokens_in, RunState& state, const RunOptions& options,
                                          bool tokens_checked) const {
  if (tokens_in.dim() != 2) throw std::invalid_argument("forward expects tokens of shape [batch, length]");
  if (tokens_in.size(0) != state.batch) throw std::invalid_argument("token batch does not match the run state");
  if (options.trace && state.batch != 1) throw std::invalid_argument("tracing needs batch 1");
  if (options.chunk_tokens < 1) throw std::invalid_argument("chunk_tokens must be positive");
  auto tokens = tokens_in.to(device(), torch::kInt64);
  if (!tokens_checked) check_tokens(tokens, config_.vocab_size);
  const int64_t B = tokens.size(0), T = tokens.size(1), D = config_.d_model;
  if (options.ssm_input_mask.defined() &&
      (options.ssm_input_mask.dim() != 2 || options.ssm_input_mask.size(0) != B || options.ssm_input_mask.size(1) != T))
    throw std::invalid_argument("the SSM input mask must have the tokens' shape [batch, length]");
  std::vector<torch::Tensor> hidden;
  const auto& embedding = weights_["embedding.weight"];
  for (int64_t c0 = 0; c0 < T; c0 += options.chunk_tokens) {
    const int64_t n = std::min(options.chunk_tokens, T - c0);
    auto x = embedding.index_select(0, tokens.narrow(1, c0, n).reshape({-1})).view({B, n, D});
    std::vector<ChunkBank> banks(static_cast<size_t>(config_.n_layers));
    const torch::Tensor mask =
        options.ssm_input_mask.defined() ? options.ssm_input_mask.narrow(1, c0, n).to(device()) : torch::Tensor();
    for (int64_t l = 0; l < config_.n_layers; ++l) {
      x = layer_forward(l, x, state, options, mask, banks);
      if (options.on_layer_output) options.on_layer_output(l, state.position, x);
    }
    auto h = rms_norm(x, weights_["norm_f.weight"], config_.norm_eps);
    const int64_t pos0 = state.position;
    state.position += n;
    if (state.device_position.defined()) state.device_position.add_(n);
    if (options.on_hidden) options.on_hidden(pos0, h);
    if (options.keep_hidden) hidden.push_back(h);
    if (options.progress && !options.progress(c0 + n, T)) throw Cancelled();
  }
  if (!options.keep_hidden) return {};
  if (hidden.empty()) return torch::zeros({B, 0, D}, embedding.options());
  return hidden.size() == 1 ? hidden[0] : torch::cat(hidden, 1);
}

torch::Tensor MemMambaModel::step(const torch::Tensor& tokens_in, RunState& state, const RunOptions& options) const {
  if (tokens_in.dim() != 1 || tokens_in.size(0) != state.batch)
    throw std::invalid_argument("step expects one token per sequence of the batch");
  if (options.trace && state.batch != 1) throw std::invalid_argument("tracing needs batch 1");
  if (device().is_cuda()) {
    // On the GPU a step is a parallel pass over one token: the same kernels and the same
    // device-side pool, so parallel and step mode cannot drift apart. Without tracing or
    // callbacks it runs as a captured CUDA graph (model/cuda/step_graph.h).
    auto host_tokens = tokens_in.to(torch::kCPU, torch::kInt64);
    check_tokens(host_tokens, config_.vocab_size);
    RunOptions one = options;
    one.progress = nullptr;
    one.keep_hidden = true;
    auto direct = [&](const torch::Tensor& tokens) {
      auto h = forward_impl(tokens.view({state.batch, 1}), state, one, true);
      return logits(h.select(1, 0));
    };
    // Capturable only when no host bookkeeping runs (windows of one token, or memory off).
    bool device_only = true;
    if (config_.memory && options.memory.enabled)
      for (const auto& mem : state.memory) device_only = device_only && mem.device_pool.defined();
    // Profiling waits for the GPU inside the step, which a graph capture cannot hold.
    if (options.trace || options.on_hidden || !device_only || !cuda_ops::step_graphs_available() ||
        profile::enabled()) {
      state.step_graph.reset();
      return direct(host_tokens);
    }
    const Json settings = options.memory.to_json(config_.memory);
    const std::string key = settings.dump() + "/" + std::to_string(state.batch);
    const int64_t before = state.position;
    auto out = cuda_ops::run_step_graph(state.step_graph, key, host_tokens, direct, [&state] {
      std::vector<torch::Tensor*> slots;
      for (auto& m : state.mixers) {
        slots.push_back(&m.conv);
        slots.push_back(&m.ssm);
      }
      for (auto& mem : state.memory) {
        for (auto& t : mem.pool_vectors) slots.push_back(&t);
        for (auto& t : mem.pool_priority) slots.push_back(&t);
      }
      return slots;
    });
    if (state.position == before) state.position += 1;  // a replay runs no host code
    return out;
  }
  auto tokens = tokens_in.to(device(), torch::kInt64);
  check_tokens(tokens, config_.vocab_size);
  auto x = weights_["embedding.weight"].index_select(0, tokens);  // [B, D]
  std::vector<ChunkBank> banks(static_cast<size_t>(config_.n_layers));
  for (int64_t l = 0; l < config_.n_layers; ++l) x = layer_step(l, x, state, options, banks);
  auto h = rms_norm(x, weights_["norm_f.weight"], config_.norm_eps);
  if (options.on_hidden) options.on_hidden(state.position, h.unsqueeze(1));
  state.position += 1;
  return logits(h);
}

std::vector<int64_t> generate_greedy(const MemMambaModel& model, const std::vector<int64_t>& prompt,
                                     int64_t max_new_tokens, const RunOptions& options,
                                     const std::function<bool(int64_t)>& stop) {
  if (prompt.empty()) throw std::invalid_argument("generation needs a non-empty prompt");
  torch::NoGradGuard no_grad;
  RunState state = model.new_state(1);
  RunOptions prompt_options = options;
  torch::Tensor last_hidden;
  prompt_options.keep_hidden = false;
  prompt_options.on_hidden = [&](int64_t, const torch::Tensor& h) { last_hidden = h.select(1, h.size(1) - 1); };
  model.forward(torch::tensor(prompt, torch::kInt64).view({1, -1}), state, prompt_options);
  std::vector<int64_t> out;
  auto logits = model.logits(last_hidden);
  for (int64_t i = 0; i < max_new_tokens; ++i) {
    const int64_t next = logits.argmax(-1).item<int64_t>();
    out.push_back(next);
    if (stop && stop(next)) break;
    if (i + 1 == max_new_tokens) break;
    logits = model.step(torch::tensor({next}, torch::kInt64), state, options);
  }
  return out;
}

}  // namespace memmamba
