#include "model/memory/memory_layer.h"

#include <torch/torch.h>

#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>

#include <chrono>
#include <optional>
#include <thread>

#include "model/mamba_mixer.h"
#include "model/memory/cross_layer_attention.h"
#include "model/memory/cross_token_attention.h"
#include "model/memory/fusion.h"
#include "model/profile.h"
#include "model/run_observer.h"

namespace memmamba {

namespace {

// Hands one attention to RunOptions::on_attention, with each visible slot's source position.
void tap_attention(const RunOptions& options, int64_t layer, bool cross_layer, int64_t b, int64_t pos0,
                   const GatedRead& read, const torch::Tensor& bank_source) {
  AttentionTap tap;
  tap.layer = layer;
  tap.cross_layer = cross_layer;
  tap.sequence = b;
  tap.pos0 = pos0;
  tap.rows = read.rows;
  tap.weights = read.weights;
  const torch::Tensor& visible = read.visible;
  tap.source = bank_source.defined()
                   ? torch::where(visible.ge(0), bank_source.index_select(0, visible.clamp_min(0).reshape({-1})).view_as(visible),
                                  torch::full({}, -1, visible.options()))
                   : torch::full_like(visible, -1);
  tap.applied = read.applied;
  options.on_attention(tap);
}

// Sends the rows whose read reached the stream to the observer, each reduced to its
// `attention_width()` largest weights. They are chosen where the weights are (on the GPU for
// a GPU run), so only k columns, bank indices and weights per row come to the host, through
// pinned memory and without waiting: the observer's later() job waits for the copies, keeps
// the rows that read, and names each entry's note. Visible columns go before empty ones,
// whatever their weight.
void report_attention(RunObserver& observer, int64_t layer, bool cross_layer, int64_t pos0, const GatedRead& read,
                      const SlotColumns& columns) {
  const int64_t width = observer.attention_width();
  if (width <= 0 || read.rows.numel() == 0) return;
  const auto dev = read.visible.device();
  const auto& visible = read.visible;
  const int64_t M = visible.size(1), k = std::min<int64_t>(M, width);
  auto read_any = (read.applied & visible.ge(0).any(1)).to(torch::kUInt8);
  auto w = read.weights.detach().to(torch::kFloat32);
  auto [top_weight, top_column] = torch::where(visible.ge(0), w, torch::full({}, -1.f, w.options())).topk(k, 1);
  auto bank = visible.gather(1, top_column);  // [n, k] bank index, -1 where nothing is visible
  auto column = torch::where(bank.ge(0), top_column, torch::full({}, -1, top_column.options())).to(torch::kInt32);
  struct HostRows {
    torch::Tensor rows, reads, column, bank, weight;
  };
  auto host = std::make_shared<HostRows>();
  const auto pinned = torch::TensorOptions().pinned_memory(dev.is_cuda());
  auto to_host = [&](const torch::Tensor& t) {
    auto h = torch::empty(t.sizes(), pinned.dtype(t.scalar_type()));
    h.copy_(t, /*non_blocking=*/true);
    return h;
  };
  host->rows = to_host(read.rows.to(torch::kInt64).contiguous());
  host->reads = to_host(read_any);
  host->column = to_host(column);
  host->bank = to_host(bank.to(torch::kInt32));
  host->weight = to_host(top_weight.contiguous());
  std::shared_ptr<c10::Event> copied;
  if (dev.is_cuda()) {
    copied = std::make_shared<c10::Event>(c10::DeviceType::CUDA);
    copied->record(c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).getStream(dev));
  }
  // The note id of every bank index of the pools these columns read, in bank order (taken
  // now: the next chunk's walk replaces the banks).
  int64_t bank_size = 0;
  for (size_t g = 0; g < columns.note_ids.size(); ++g)
    bank_size = std::max<int64_t>(bank_size, columns.bank_offsets[g] + static_cast<int64_t>(columns.note_ids[g]->size()));
  auto ids = std::make_shared<std::vector<int32_t>>(static_cast<size_t>(bank_size), -1);
  for (size_t g = 0; g < columns.note_ids.size(); ++g)
    std::copy(columns.note_ids[g]->begin(), columns.note_ids[g]->end(), ids->begin() + columns.bank_offsets[g]);
  observer.later([host, copied, ids, k, pos0, layer, cross_layer, column_layer = columns.layer,
                  column_slot = columns.slot](RunObserver& target) {
    if (copied)
      while (!copied->query()) std::this_thread::sleep_for(std::chrono::microseconds(20));
    const int64_t n = host->rows.size(0);
    const int64_t* rows = host->rows.data_ptr<int64_t>();
    const uint8_t* reads = host->reads.data_ptr<uint8_t>();
    const int32_t* col = host->column.data_ptr<int32_t>();
    const int32_t* bank_index = host->bank.data_ptr<int32_t>();
    const float* weight = host->weight.data_ptr<float>();
    std::vector<int64_t> positions;
    std::vector<int32_t> columns_kept, notes_kept;
    std::vector<float> weights_kept;
    positions.reserve(static_cast<size_t>(n));
    columns_kept.reserve(static_cast<size_t>(n * k));
    notes_kept.reserve(static_cast<size_t>(n * k));
    weights_kept.reserve(static_cast<size_t>(n * k));
    for (int64_t r = 0; r < n; ++r) {
      if (!reads[r]) continue;
      positions.push_back(rows[r] + pos0);
      for (int64_t e = r * k; e < (r + 1) * k; ++e) {
        const int32_t b = bank_index[e];
        const int32_t note = b >= 0 && b < static_cast<int32_t>(ids->size()) ? (*ids)[static_cast<size_t>(b)] : -1;
        columns_kept.push_back(note >= 0 ? col[e] : -1);
        notes_kept.push_back(note);
        weights_kept.push_back(weight[e]);
      }
    }
    if (positions.empty()) return;
    target.attention_rows(static_cast<int32_t>(layer), cross_layer, positions, k, columns_kept.data(), notes_kept.data(),
                          weights_kept.data(), column_layer, column_slot);
  });
}

// An edit that masks reads: the masked rows' context does not reach the stream. The read
// holds the batch's rows one sequence after another, T each; an edit masks a position
// in every sequence.
void mask_reads(const MemoryEdits& edits, int64_t layer, bool cross_layer, int64_t pos0, int64_t T, GatedRead& read) {
  const int64_t rows = read.context.size(0);
  std::vector<uint8_t> keep(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) keep[r] = edits.read_masked(layer, cross_layer, pos0 + r % T) ? 0 : 1;
  auto keep_rows = torch::from_blob(keep.data(), {rows}, torch::kUInt8).to(read.context.device()).to(torch::kBool);
  read.context = read.context * keep_rows.unsqueeze(-1).to(read.context.dtype());
  read.applied = read.applied & keep_rows.index_select(0, read.rows);
}

// Sequence b's rows of a read over the batch (rows b*T .. (b+1)*T), numbered within the
// sequence; visible indices stay the batch bank's.
GatedRead sequence_read(const GatedRead& all, int64_t b, int64_t T) {
  int64_t first = b * T, count = T;
  if (all.rows.size(0) != all.context.size(0)) {  // only some rows read (the CPU's gated rows)
    auto rows = all.rows.to(torch::kCPU);
    first = rows.lt(b * T).sum().item<int64_t>();
    count = rows.lt((b + 1) * T).sum().item<int64_t>() - first;
  }
  GatedRead read;
  read.context = all.context.narrow(0, b * T, T);
  read.rows = all.rows.narrow(0, first, count) - b * T;
  read.weights = all.weights.narrow(0, first, count);
  read.visible = all.visible.narrow(0, first, count);
  read.applied = all.applied.narrow(0, first, count);
  return read;
}

std::vector<float> row_norms(const torch::Tensor& term) {
  auto n = term.norm(2, -1).detach().to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(n.data_ptr<float>(), n.data_ptr<float>() + n.numel());
}

}  // namespace

NoteInputs note_inputs(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& x, bool learned_rule) {
  const std::string p = layer_prefix(layer);
  auto u = rms_norm(x, w[p + "note.norm.weight"], c.norm_eps);
  NoteInputs in{project(u, w[p + "note.summary.weight"]), {}};
  if (learned_rule)
    in.learned = torch::sigmoid(torch::matmul(u, w[p + "note.importance.weight"]) + w[p + "note.importance.bias"]);
  return in;
}

torch::Tensor memory_forward(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& x, int64_t pos0,
                             LayerPool& pool, std::vector<LayerBank>& banks, const RunOptions& options,
                             LayerSignals& signals) {
  const int64_t B = x.size(0), K = c.pool_slots;
  const std::string p = layer_prefix(layer);
  RunObserver* observer = options.observer;
  const double gain = options.memory.fusion_gain;

  const MemoryEdits* edits = options.edits && !options.edits->empty() ? options.edits.get() : nullptr;
  MemorySettings settings = options.memory;
  if (edits) edits->thresholds(layer, settings.tau_note, settings.tau_retrieve);

  std::optional<profile::Section> section(std::in_place, "memory: note summaries", x.device());
  const NoteInputs in = note_inputs(c, w, layer, x, settings.importance == ImportanceRule::Learned);
  section.emplace("memory: pool walk", x.device());
  PoolWalkResult walked = pool.walk(in, settings, {pos0, observer != nullptr, static_cast<bool>(options.on_attention)});
  if (options.on_importance)
    for (int64_t b = 0; b < B; ++b) options.on_importance(layer, b, pos0, walked.importance[b]);
  LayerBank& bank = banks[layer];
  bank = std::move(walked.bank);
  if (observer) {
    signals.importance = std::move(walked.records.importance);
    signals.istate = std::move(walked.records.istate);
    signals.flags = std::move(walked.records.flags);
    observer->notes_made(static_cast<int32_t>(layer), walked.records.notes);
    observer->pool_events(static_cast<int32_t>(layer), walked.records.events);
  }

  const int64_t T = x.size(1);
  const auto x_rows = x.reshape({B * T, x.size(2)});
  // What a read brings to the stream: the edits' masks, the taps and the observer's rows per
  // sequence, then its fusion term (and, observed, the term's norm per token).
  auto into_stream = [&](GatedRead read, bool cross_layer, const torch::Tensor& source, const SlotColumns& columns,
                         const char* fusion, std::vector<float>& norms) {
    if (edits && edits->masks_reads(layer)) mask_reads(*edits, layer, cross_layer, pos0, T, read);
    if (options.on_attention)
      for (int64_t b = 0; b < B; ++b) tap_attention(options, layer, cross_layer, b, pos0, sequence_read(read, b, T), source);
    auto term = fusion_term(c, w, p + fusion, x, read.context.view_as(x), gain);
    if (observer) {
      section.emplace("trace: attention rows", x.device());
      report_attention(*observer, layer, cross_layer, pos0, sequence_read(read, 0, T), columns);
      norms = row_norms(term[0]);
    }
    return term;
  };

  section.emplace("memory: token attention", x.device());
  const SequenceBank& own = bank.batch;
  const SlotColumns own_columns = observer ? own_pool_columns(layer, K, &own.note_ids) : SlotColumns{};
  const torch::Tensor out = x + into_stream(cross_token_attention(c, w, layer, x_rows, own, walked.triggered.reshape({-1})),
                                            false, own.source, own_columns, "token_attention.", signals.token_norm);
  if (!c.has_cross_layer(layer)) return out;

  section.emplace("memory: cross-layer attention", x.device());
  const PoolUnion pools = pool_union(banks, cross_layer_first(c, layer), layer, K);
  const auto layer_term = into_stream(cross_layer_attention(c, w, layer, x_rows, pools), true, pools.source, pools.columns,
                                      "layer_attention.", signals.layer_norm);
  return out + layer_term;
}

}  // namespace memmamba
