#include "model/memory/memory_layer.h"

#include <torch/torch.h>

#include <optional>

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
// `attention_width()` largest weights. They are chosen where the weights are (on the GPU
// for a GPU run) with each entry's note found there too, so only k columns, notes and
// weights per row come to the host, through pinned memory. Visible columns go before
// empty ones, whatever their weight.
void report_attention(RunObserver& observer, int64_t layer, bool cross_layer, int64_t pos0, const GatedRead& read,
                      const SlotColumns& columns) {
  const int64_t width = observer.attention_width();
  if (width <= 0 || read.rows.numel() == 0) return;
  const auto dev = read.visible.device();
  auto kept = (read.applied & read.visible.ge(0).any(1)).nonzero().squeeze(1);
  auto rows_cpu = read.rows.index_select(0, kept).to(torch::kCPU).contiguous();
  std::vector<int64_t> positions(rows_cpu.data_ptr<int64_t>(), rows_cpu.data_ptr<int64_t>() + rows_cpu.numel());
  if (positions.empty()) return;
  for (auto& pos : positions) pos += pos0;
  const bool all_rows = kept.size(0) == read.rows.size(0);
  const auto visible = all_rows ? read.visible : read.visible.index_select(0, kept);
  auto w = (all_rows ? read.weights : read.weights.index_select(0, kept)).detach().to(torch::kFloat32);
  const int64_t M = visible.size(1), k = std::min<int64_t>(M, width);
  auto [top_weight, top_column] = torch::where(visible.ge(0), w, torch::full({}, -1.f, w.options())).topk(k, 1);
  auto bank = visible.gather(1, top_column);  // [n, k] bank index, -1 where nothing is visible
  // The note id of every bank index of the pools these columns read, in bank order.
  int64_t bank_size = 0;
  for (size_t g = 0; g < columns.note_ids.size(); ++g)
    bank_size = std::max<int64_t>(bank_size, columns.bank_offsets[g] + static_cast<int64_t>(columns.note_ids[g]->size()));
  std::vector<int32_t> ids(static_cast<size_t>(bank_size), -1);
  for (size_t g = 0; g < columns.note_ids.size(); ++g)
    std::copy(columns.note_ids[g]->begin(), columns.note_ids[g]->end(), ids.begin() + columns.bank_offsets[g]);
  auto ids_t = torch::from_blob(ids.data(), {bank_size}, torch::kInt32).to(dev);
  auto local = ids_t.index_select(0, bank.clamp_min(0).reshape({-1})).view_as(bank);
  auto column = torch::where(bank.ge(0) & local.ge(0), top_column, torch::full({}, -1, top_column.options())).to(torch::kInt32);
  auto host = torch::TensorOptions().pinned_memory(dev.is_cuda());
  auto column_host = torch::empty(column.sizes(), host.dtype(torch::kInt32));
  auto local_host = torch::empty(local.sizes(), host.dtype(torch::kInt32));
  auto weight_host = torch::empty(top_weight.sizes(), host.dtype(torch::kFloat32));
  column_host.copy_(column, /*non_blocking=*/true);
  local_host.copy_(local, /*non_blocking=*/true);
  weight_host.copy_(top_weight);  // in stream order after the two above: all three are home
  struct HostArrays {
    torch::Tensor column, local, weight;
  };
  auto arrays = std::make_shared<const HostArrays>(HostArrays{column_host, local_host, weight_host});
  observer.attention_rows_held(static_cast<int32_t>(layer), cross_layer, std::move(positions), k, arrays,
                               column_host.data_ptr<int32_t>(), local_host.data_ptr<int32_t>(),
                               weight_host.data_ptr<float>(), columns.layer, columns.slot);
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
