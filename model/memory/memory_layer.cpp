#include "model/memory/memory_layer.h"

#include <torch/torch.h>

#include <algorithm>
#include <optional>

#include "model/cuda/stream_mark.h"
#include "model/mamba_mixer.h"
#include "model/memory/cross_layer_attention.h"
#include "model/memory/cross_token_attention.h"
#include "model/memory/fusion.h"
#include "model/profile.h"
#include "model/run_observer.h"

namespace memmamba {

namespace {

// Hands one attention over the batch to RunOptions::on_attention, with each visible slot's
// source position.
void tap_attention(const RunOptions& options, int64_t layer, bool cross_layer, int64_t B, int64_t T, int64_t pos0,
                   const GatedRead& read, const torch::Tensor& bank_source) {
  AttentionTap tap;
  tap.layer = layer;
  tap.cross_layer = cross_layer;
  tap.pos0 = pos0;
  tap.sequences = B;
  tap.tokens = T;
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

// A read's attention rows on their way to the observer: the rows whose read reached the
// stream, each reduced to its `width` largest weights. The reduction runs where the weights
// are (on the GPU for a GPU run) and its results go to pinned host memory without waiting;
// `ready` marks when they are home. Visible columns go before empty ones, whatever their weight.
struct AttentionCopies {
  torch::Tensor kept, rows;           // [n] uint8: the row reached the stream and saw a note; [n] int64
  torch::Tensor column, bank, weight;  // [n, k] int32 column, int32 bank index (-1 none), fp32
  int64_t width = 0;
  std::shared_ptr<void> ready;
};

AttentionCopies start_attention_copies(int64_t width, const GatedRead& read) {
  AttentionCopies c;
  if (width <= 0 || read.rows.numel() == 0) return c;
  const auto dev = read.visible.device();
  const auto& visible = read.visible;
  auto w = read.weights.detach().to(torch::kFloat32);
  const int64_t k = std::min<int64_t>(visible.size(1), width);
  auto [top_weight, top_column] = torch::where(visible.ge(0), w, torch::full({}, -1.f, w.options())).topk(k, 1);
  auto bank = visible.gather(1, top_column);
  auto host = torch::TensorOptions().pinned_memory(dev.is_cuda());
  auto to_host = [&host](const torch::Tensor& t, torch::ScalarType type) {
    auto h = torch::empty(t.sizes(), host.dtype(type));
    h.copy_(t.to(type), /*non_blocking=*/true);
    return h;
  };
  c.kept = to_host(read.applied & visible.ge(0).any(1), torch::kUInt8);
  c.rows = to_host(read.rows, torch::kInt64);
  c.column = to_host(top_column, torch::kInt32);
  c.bank = to_host(bank, torch::kInt32);
  c.weight = to_host(top_weight, torch::kFloat32);
  c.width = k;
  c.ready = cuda_ops::mark_stream(dev);
  return c;
}

// On the observer's thread: waits for the copies and hands the kept rows over as they are,
// with each bank index's note (the bank's note ids come from the pool's records, reported
// before).
void report_attention(RunObserver& observer, int32_t layer, bool cross_layer, int64_t pos0, const AttentionCopies& c,
                      const SlotColumns& columns) {
  if (c.width == 0) return;
  cuda_ops::wait_for_mark(c.ready);
  AttentionRowsIn in;
  const int64_t n = c.rows.size(0);
  const uint8_t* kept = c.kept.data_ptr<uint8_t>();
  const int64_t* rows = c.rows.data_ptr<int64_t>();
  for (int64_t r = 0; r < n; ++r)
    if (kept[r]) {
      in.positions.push_back(rows[r] + pos0);
      in.rows_at.push_back(r);
    }
  if (in.positions.empty()) return;
  int64_t bank_size = 0;
  for (size_t g = 0; g < columns.note_ids.size(); ++g)
    bank_size = std::max<int64_t>(bank_size, columns.bank_offsets[g] + static_cast<int64_t>(columns.note_ids[g]->size()));
  in.bank_note.assign(static_cast<size_t>(bank_size), -1);
  for (size_t g = 0; g < columns.note_ids.size(); ++g)
    std::copy(columns.note_ids[g]->begin(), columns.note_ids[g]->end(), in.bank_note.begin() + columns.bank_offsets[g]);
  in.width = c.width;
  in.column = c.column.data_ptr<int32_t>();
  in.bank = c.bank.data_ptr<int32_t>();
  in.weight = c.weight.data_ptr<float>();
  in.column_layer = columns.layer;
  in.column_slot = columns.slot;
  const profile::Section section("trace thread: attention rows, builder", torch::kCPU);
  observer.attention_rows(layer, cross_layer, in);
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

std::vector<float> row_norms(const torch::Tensor& norms) {
  auto n = norms.to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(n.data_ptr<float>(), n.data_ptr<float>() + n.numel());
}

}  // namespace

torch::Tensor memory_inputs(const ModelConfig& c, const Weights& w, int64_t layer, const torch::Tensor& x,
                            torch::Tensor* tail) {
  const int64_t k = c.memory_context;
  if (k <= 1) return x;
  const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
  const bool carried = tail && tail->defined() && tail->size(0) == B;
  auto before = carried ? tail->to(x.dtype()) : torch::zeros({B, k - 1, D}, x.options());
  auto padded = torch::cat({before, x}, 1);  // [B, k - 1 + T, D]
  const auto taps = w[layer_prefix(layer) + "memory.context.weight"].to(x.dtype());  // [D, k], tap k-1 the token
  torch::Tensor mixed;
  for (int64_t i = 0; i < k; ++i) {
    auto term = padded.narrow(1, i, T) * taps.select(1, i);
    mixed = mixed.defined() ? mixed + term : term;
  }
  if (tail) *tail = padded.narrow(1, T, k - 1).detach().contiguous();
  return mixed;
}

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
                             const std::shared_ptr<LayerSignals>& signals) {
  const int64_t B = x.size(0), K = c.pool_slots;
  const std::string p = layer_prefix(layer);
  RunObserver* observer = options.observer;
  const double gain = options.memory.fusion_gain;

  const MemoryEdits* edits = options.edits && !options.edits->empty() ? options.edits.get() : nullptr;
  MemorySettings settings = options.memory;
  if (edits) edits->thresholds(layer, settings.tau_note, settings.tau_retrieve);

  std::optional<profile::Section> section(std::in_place, "memory: note summaries", x.device());
  // Summaries and queries read the context mix; the fusion adds to x itself.
  const torch::Tensor mixed = memory_inputs(c, w, layer, x, &pool.context_tail);
  const NoteInputs in = note_inputs(c, w, layer, mixed, settings.importance == ImportanceRule::Learned);
  section.emplace("memory: pool walk", x.device());
  PoolWalkResult walked = pool.walk(in, settings, {pos0, observer != nullptr, static_cast<bool>(options.on_attention)});
  if (options.on_importance) options.on_importance(layer, pos0, walked.importance);
  LayerBank& bank = banks[layer];
  bank = std::move(walked.bank);
  if (observer)
    observer->later([layer, records = walked.records, finish = std::move(walked.finish_records), signals,
                     mark = cuda_ops::mark_stream(x.device())](RunObserver& o) {
      const profile::Section section("trace thread: pool records", torch::kCPU);
      if (finish) cuda_ops::run_after_mark(mark, finish);
      signals->importance = std::move(records->importance);
      signals->istate = std::move(records->istate);
      signals->flags = std::move(records->flags);
      o.notes_made(static_cast<int32_t>(layer), records->notes);
      o.pool_events(static_cast<int32_t>(layer), records->events);
    });

  const int64_t T = x.size(1);
  const auto query_rows = mixed.reshape({B * T, x.size(2)});
  // What a read brings to the stream: the edits' masks, the tap and the observer's rows (a
  // batch of one), then its fusion term (and, observed, the term's norm per token).
  auto into_stream = [&](GatedRead read, bool cross_layer, const torch::Tensor& source, const SlotColumns& columns,
                         const char* fusion) {
    if (edits && edits->masks_reads(layer)) mask_reads(*edits, layer, cross_layer, pos0, T, read);
    if (options.on_attention) tap_attention(options, layer, cross_layer, B, T, pos0, read, source);
    auto term = fusion_term(c, w, p + fusion, x, read.context.view_as(x), gain);
    if (observer) {
      section.emplace("trace: attention rows", x.device());
      // The rows and the norms come to the host without waiting; the observer's thread
      // waits for them.
      auto copies = start_attention_copies(observer->attention_width(), sequence_read(read, 0, T));
      observer->later([layer, cross_layer, pos0, copies = std::move(copies), columns, norms = term[0].detach().norm(2, -1),
                       signals, mark = cuda_ops::mark_stream(x.device())](RunObserver& o) {
        const profile::Section section("trace thread: attention rows", torch::kCPU);
        report_attention(o, static_cast<int32_t>(layer), cross_layer, pos0, copies, columns);
        cuda_ops::run_after_mark(mark, [&] { (cross_layer ? signals->layer_norm : signals->token_norm) = row_norms(norms); });
      });
    }
    return term;
  };

  section.emplace("memory: token attention", x.device());
  const SequenceBank& own = bank.batch;
  const SlotColumns own_columns = observer ? own_pool_columns(layer, K, own.note_ids) : SlotColumns{};
  const torch::Tensor out = x + into_stream(cross_token_attention(c, w, layer, query_rows, own, walked.triggered.reshape({-1})),
                                            false, own.source, own_columns, "token_attention.");
  if (!c.has_cross_layer(layer)) return out;

  section.emplace("memory: cross-layer attention", x.device());
  const PoolUnion pools = pool_union(banks, cross_layer_first(c, layer), layer, K);
  const auto layer_term =
      into_stream(cross_layer_attention(c, w, layer, query_rows, pools), true, pools.source, pools.columns, "layer_attention.");
  return out + layer_term;
}

}  // namespace memmamba
