#include "model/train/losses.h"

#include <torch/torch.h>

#include <algorithm>
#include <memory>
#include <vector>

namespace memmamba {

namespace {

// Adds `value` to a running device-side sum that starts undefined.
void accumulate(torch::Tensor& sum, const torch::Tensor& value) { sum = sum.defined() ? sum + value : value; }

// The surprise loss leaves a row's first tokens alone: with little context every token is hard.
int64_t surprise_warmup(int64_t T) { return std::min<int64_t>(64, T / 4); }

// Each read's weight in the retrieval and answer losses' means (beside targets.row): the reads
// that choose a value by its label weigh `choice_weight`, the others 1.
std::vector<float> read_weights(const RetrievalTargets& targets, double choice_weight) {
  std::vector<float> weight(targets.row.size(), 1.f);
  for (size_t i = 0; i < weight.size() && i < targets.choice.size(); ++i)
    if (targets.choice[i]) weight[i] = static_cast<float>(choice_weight);
  return weight;
}

struct RetrievalStats {
  torch::Tensor loss_sum, mass_sum, used;  // scalars on the device (undefined when nothing was tapped)
  torch::Tensor weighted_used;             // the loss's denominator: used reads x their weights
  torch::Tensor choice_mass_sum, choice_used;  // the same for the reads that choose by a label
  int64_t candidates = 0;                  // answer pieces x attentions that could have been supervised
};

// The retrieval loss: at each answer position that predicts a piece of the key, minus the log
// of the attention mass that each pool attention puts on the notes of that piece in the
// needle (only where such a note is visible and the attention reaches the stream). The
// targets of every row are one set of batch rows (row * T + query), so each attention costs
// the same few operators whatever the batch's size. Reads that choose a value by its label
// weigh `choice_weight` times the others.
std::function<void(const AttentionTap&)> retrieval_tap(const RetrievalTargets& targets, int64_t T, double choice_weight,
                                                       const torch::Device& device, RetrievalStats& stats) {
  struct Flat { torch::Tensor query, first, second, choice, weight; int64_t count; };
  auto opts = torch::TensorOptions().dtype(torch::kInt64);
  std::vector<int64_t> query(targets.row.size());
  std::vector<float> choice(targets.row.size());
  for (size_t i = 0; i < targets.row.size(); ++i) {
    query[i] = targets.row[i] * T + targets.query[i];
    choice[i] = i < targets.choice.size() && targets.choice[i] ? 1.f : 0.f;
  }
  const std::vector<float> weight = read_weights(targets, choice_weight);
  auto floats = torch::TensorOptions().dtype(torch::kFloat32);
  auto flat = std::make_shared<Flat>(Flat{torch::tensor(query, opts).to(device), torch::tensor(targets.first, opts).to(device),
                                          torch::tensor(targets.second, opts).to(device),
                                          torch::tensor(choice, floats).to(device), torch::tensor(weight, floats).to(device),
                                          static_cast<int64_t>(query.size())});
  return [flat, T, &stats](const AttentionTap& tap) {
    if (flat->count == 0 || tap.pos0 != 0 || tap.tokens != T) return;  // training runs each row as one chunk
    const int64_t n = tap.rows.size(0);
    auto row_of = torch::full({tap.sequences * T}, -1, tap.rows.options()).index_put_({tap.rows}, torch::arange(n, tap.rows.options()));
    auto tr = row_of.index_select(0, flat->query);
    auto safe = tr.clamp_min(0);
    auto weights = tap.weights.index_select(0, safe).to(torch::kFloat32);
    auto source = tap.source.index_select(0, safe);
    auto hit = source.ge(0) & (source.eq(flat->first.unsqueeze(1)) | source.eq(flat->second.unsqueeze(1)));
    auto mass = (weights * hit.to(torch::kFloat32)).sum(1);
    auto use = (tr.ge(0) & hit.any(1) & tap.applied.index_select(0, safe)).to(torch::kFloat32);
    accumulate(stats.loss_sum, (-(mass + 1e-6).log() * use * flat->weight).sum());
    accumulate(stats.weighted_used, (use * flat->weight).sum());
    accumulate(stats.mass_sum, (mass.detach() * use).sum());
    accumulate(stats.used, use.sum());
    accumulate(stats.choice_mass_sum, (mass.detach() * use * flat->choice).sum());
    accumulate(stats.choice_used, (use * flat->choice).sum());
    stats.candidates += flat->count;
  };
}

// The batch rows (row * T + position) of the tokens the selection loss lifts: each needle's key
// tokens (their first copy) and, in rows with several facts, every other fact's value. Sorted,
// each once.
std::vector<int64_t> lifted_positions(const RetrievalTargets& targets, int64_t T) {
  std::vector<int64_t> positions;
  for (size_t i = 0; i < targets.row.size(); ++i)
    if (targets.first[i] >= 0) positions.push_back(targets.row[i] * T + targets.first[i]);
  for (size_t i = 0; i < targets.other_value_row.size(); ++i)
    positions.push_back(targets.other_value_row[i] * T + targets.other_value_position[i]);
  std::sort(positions.begin(), positions.end());
  positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
  return positions;
}

// The selection loss: the needle's key tokens (its first copy), and in rows with several facts
// every other fact's value, should clear the note threshold by a margin in every layer: mean
// over layers and those tokens of max(0, tau1 + margin - I_t).
struct SelectionStats {
  torch::Tensor loss_sum, noted;
  int64_t count = 0;
};

std::function<void(int64_t, int64_t, const torch::Tensor&)> selection_tap(const RetrievalTargets& targets, int64_t T,
                                                                          double tau_note, double margin,
                                                                          const torch::Device& device,
                                                                          SelectionStats& stats) {
  const std::vector<int64_t> positions = lifted_positions(targets, T);
  auto flat = std::make_shared<torch::Tensor>(torch::tensor(positions, torch::TensorOptions().dtype(torch::kInt64)).to(device));
  const auto count = static_cast<int64_t>(positions.size());
  return [flat, count, T, tau_note, margin, &stats](int64_t, int64_t pos0, const torch::Tensor& importance) {
    if (count == 0 || pos0 != 0 || importance.size(1) != T) return;
    auto value = importance.reshape({-1}).index_select(0, *flat).to(torch::kFloat32);
    accumulate(stats.loss_sum, torch::relu(tau_note + margin - value).sum());
    accumulate(stats.noted, value.detach().gt(tau_note).sum().to(torch::kFloat32));
    stats.count += count;
  };
}

// Keeps every layer's importance, for a loss that needs the logits first.
struct ImportanceRecord {
  std::vector<torch::Tensor> by_layer;  // [layer] -> [rows, T]; undefined for a layer without a memory
};

// The surprise selection loss over the recorded importances: per layer, the surprising tokens
// should clear tau1 (by 0.01) and stay under tau1 + band, and the predictable ones (below the
// row's median surprise) stay under tau1 by 0.05; the mean of the hinges, averaged over the
// layers. The band keeps a book's notes below a key taught a larger margin: importance is a
// note's priority, so in a full pool the book's notes evict each other, not the key.
void add_surprise_loss(const ImportanceRecord& record, const torch::Tensor& nll, const torch::Tensor& surprising,
                       double tau_note, double band_width, double weight, SequenceLoss& out) {
  constexpr double kMargin = 0.05, kClear = 0.01;
  const int64_t T = nll.size(1);
  const int64_t warmup = surprise_warmup(T);
  auto surprise = torch::cat({torch::zeros({nll.size(0), 1}, nll.options()), nll.narrow(1, 0, T - 1)}, 1);
  auto later = torch::arange(T, torch::TensorOptions().device(nll.device())).ge(warmup).unsqueeze(0);
  auto median = std::get<0>(surprise.narrow(1, warmup, T - warmup).median(1, true));
  auto predictable = surprise.lt(median) & later;
  auto pos = surprising.to(torch::kFloat32), neg = predictable.to(torch::kFloat32);
  auto pos_count = pos.sum(), neg_count = neg.sum();
  // Device-side sums, read once after every layer: no synchronisation per layer.
  torch::Tensor loss, noted_pos, noted_neg;
  int64_t layers = 0;
  for (const auto& layer_importance : record.by_layer) {
    if (!layer_importance.defined()) continue;  // a layer without a memory
    auto importance = layer_importance.to(torch::kFloat32);  // [rows, T]
    auto band = torch::relu(tau_note + kClear - importance) + torch::relu(importance - (tau_note + band_width));
    auto layer_loss = (band * pos).sum() / pos_count.clamp_min(1.0) +
                      (torch::relu(importance - (tau_note - kMargin)) * neg).sum() / neg_count.clamp_min(1.0);
    accumulate(loss, layer_loss);
    auto noted = importance.detach().gt(tau_note).to(torch::kFloat32);
    accumulate(noted_pos, (noted * pos).sum());
    accumulate(noted_neg, (noted * neg).sum());
    ++layers;
  }
  if (layers == 0) return;
  auto mean = loss / static_cast<double>(layers);
  out.total = out.total + weight * mean;
  auto figures = torch::stack({mean.detach(), noted_pos, noted_neg, pos_count, neg_count}).to(torch::kCPU, torch::kDouble);
  const double* f = figures.data_ptr<double>();
  out.surprise_note = f[0];
  out.surprising_noted = f[1] / std::max(f[3] * static_cast<double>(layers), 1.0);
  out.predictable_noted = f[2] / std::max(f[4] * static_cast<double>(layers), 1.0);
}

// The quiet loss over the recorded importances: per layer, the mean over the `quiet` tokens
// [rows, T] (those no other loss asks to be noted) of max(0, I_t - (tau1 - 0.05)), averaged over
// the layers. Without it a learned note rule notes more tokens as training goes on, and in a
// full pool those notes evict the values the reads need.
void add_quiet_loss(const ImportanceRecord& record, const torch::Tensor& quiet, double tau_note, double weight,
                    SequenceLoss& out, double SequenceLoss::*loss_figure = &SequenceLoss::quiet,
                    double SequenceLoss::*noted_figure = &SequenceLoss::stray_noted) {
  constexpr double kMargin = 0.05;
  auto mask = quiet.to(torch::kFloat32);
  auto count = mask.sum();
  torch::Tensor loss, noted;
  int64_t layers = 0;
  for (const auto& layer_importance : record.by_layer) {
    if (!layer_importance.defined()) continue;  // a layer without a memory
    auto importance = layer_importance.to(torch::kFloat32);
    accumulate(loss, (torch::relu(importance - (tau_note - kMargin)) * mask).sum() / count.clamp_min(1.0));
    accumulate(noted, (importance.detach().gt(tau_note).to(torch::kFloat32) * mask).sum());
    ++layers;
  }
  if (layers == 0) return;
  auto mean = loss / static_cast<double>(layers);
  out.total = out.total + weight * mean;
  auto figures = torch::stack({mean.detach(), noted, count}).to(torch::kCPU, torch::kDouble);
  const double* f = figures.data_ptr<double>();
  out.*loss_figure = f[0];
  out.*noted_figure = f[1] / std::max(f[2] * static_cast<double>(layers), 1.0);
}

// A bool mask [rows, T] on `device`, true at the batch positions `flat` (row * T + position).
torch::Tensor token_mask(const std::vector<int64_t>& flat, int64_t rows, int64_t T, const torch::Device& device) {
  auto mask = torch::zeros({rows * T}, torch::TensorOptions().dtype(torch::kBool));
  if (!flat.empty()) mask.index_put_({torch::tensor(flat, torch::TensorOptions().dtype(torch::kInt64))}, true);
  return mask.view({rows, T}).to(device);
}

}  // namespace

torch::Tensor surprising_tokens(const torch::Tensor& nll, double share, int64_t warmup) {
  const int64_t rows = nll.size(0), T = nll.size(1);
  auto out = torch::zeros({rows, T}, torch::TensorOptions().dtype(torch::kBool).device(nll.device()));
  if (T - warmup < 1 || warmup < 1) return out;
  // Token t's surprise is the loss of predicting it, nll[t - 1].
  auto surprise = nll.narrow(1, warmup - 1, T - warmup).to(torch::kFloat32);
  const int64_t k = std::clamp<int64_t>(static_cast<int64_t>(std::llround(share * static_cast<double>(T - warmup))), 1,
                                        T - warmup);
  auto top = std::get<1>(surprise.topk(k, 1));
  out.narrow(1, warmup, T - warmup).scatter_(1, top, true);
  return out;
}

SequenceLoss sequence_loss(const MemMambaModel& model, const torch::Tensor& batch, const RetrievalTargets* targets,
                           const LossWeights& weights, const torch::Tensor& ssm_mask) {
  const double retrieval_weight = weights.retrieval, answer_weight = weights.answer, note_weight = weights.note;
  const int64_t rows = batch.size(0), T = batch.size(1) - 1;
  RunState state = model.new_state(rows);
  RunOptions o = model.default_options();
  o.chunk_tokens = T;
  o.ssm_input_mask = ssm_mask;
  // Document rows bring answer targets alone (end_row), with nothing for the memory to read.
  const bool has_targets = targets && (!targets->row.empty() || !targets->end_row.empty());
  RetrievalStats stats;
  const bool tapped = has_targets && model.config().memory && retrieval_weight > 0;
  if (tapped) o.on_attention = retrieval_tap(*targets, T, weights.choice, batch.device(), stats);
  SelectionStats selection;
  const bool selecting = has_targets && model.config().memory && note_weight > 0;
  if (selecting) o.on_importance = selection_tap(*targets, T, o.memory.tau_note, weights.note_margin, batch.device(), selection);
  const bool surprise = model.config().memory && weights.surprise_note > 0 && weights.surprise_share > 0;
  const bool quiet = model.config().memory && weights.quiet > 0;
  std::shared_ptr<ImportanceRecord> record;
  if (surprise || quiet) {
    record = std::make_shared<ImportanceRecord>();
    record->by_layer.assign(model.config().n_layers, torch::Tensor());
    o.on_importance = [record, selected = std::move(o.on_importance)](int64_t layer, int64_t pos0,
                                                                       const torch::Tensor& importance) {
      if (selected) selected(layer, pos0, importance);
      if (pos0 == 0) record->by_layer[layer] = importance;  // training runs each row as one chunk
    };
  }
  auto hidden = model.forward(batch.narrow(1, 0, T), state, o);
  auto logits = model.logits(hidden);
  SequenceLoss out;
  auto flat_logits = logits.reshape({-1, logits.size(-1)}).to(torch::kFloat32);
  auto next = batch.narrow(1, 1, T).reshape({-1}).to(logits.device());
  // [rows, T]: the reference marks' numbers, which no loss asks to be noted (undefined: none, or
  // no note-rule loss to keep them out of).
  torch::Tensor marked;
  if ((surprise || quiet) && targets && !targets->mark_row.empty()) {
    std::vector<int64_t> at;
    for (size_t i = 0; i < targets->mark_row.size(); ++i)
      if (targets->mark_position[i] < T) at.push_back(targets->mark_row[i] * T + targets->mark_position[i]);
    marked = token_mask(at, rows, T, logits.device());
  }
  torch::Tensor surprising;  // [rows, T]: the surprise loss's targets
  if (surprise) {
    auto nll = torch::nn::functional::cross_entropy(flat_logits, next,
                                                    torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
    out.lm = nll.mean();
    out.total = out.lm;
    auto row_nll = nll.detach().view({rows, T});
    surprising = surprising_tokens(row_nll, weights.surprise_share, surprise_warmup(T));
    if (marked.defined()) surprising = surprising & marked.logical_not();
    add_surprise_loss(*record, row_nll, surprising, o.memory.tau_note, weights.surprise_band, weights.surprise_note, out);
  } else {
    out.lm = torch::nn::functional::cross_entropy(flat_logits, next);
    out.total = out.lm;
  }
  if (quiet) {
    const std::vector<int64_t> positions = has_targets ? lifted_positions(*targets, T) : std::vector<int64_t>{};
    auto quiet_tokens = token_mask(positions, rows, T, logits.device()).logical_not();
    if (surprising.defined()) quiet_tokens = quiet_tokens & surprising.logical_not();
    add_quiet_loss(*record, quiet_tokens, o.memory.tau_note, weights.quiet, out);
    if (marked.defined()) {
      add_quiet_loss(*record, marked & quiet_tokens, o.memory.tau_note, weights.quiet, out, &SequenceLoss::mark_quiet,
                     &SequenceLoss::marks_noted);
    }
  }
  if (has_targets && answer_weight > 0) {
    // The key's pieces are a handful of a row's thousands of tokens: weigh them on their own.
    auto opts = torch::TensorOptions().dtype(torch::kInt64);
    std::vector<int64_t> row_list = targets->row, query_list = targets->query;
    row_list.insert(row_list.end(), targets->end_row.begin(), targets->end_row.end());
    query_list.insert(query_list.end(), targets->end_query.begin(), targets->end_query.end());
    auto answer_rows = torch::tensor(row_list, opts).to(logits.device());
    auto query = torch::tensor(query_list, opts).to(logits.device());
    auto answer_logits = logits.index({answer_rows, query}).to(torch::kFloat32);
    auto labels = batch.to(logits.device()).index({answer_rows, query + 1});
    torch::Tensor answer;
    if (weights.choice == 1.0 && weights.answer_end == 1.0) {
      answer = torch::nn::functional::cross_entropy(answer_logits, labels);
    } else {
      std::vector<float> piece_weight = read_weights(*targets, weights.choice);
      piece_weight.resize(row_list.size(), static_cast<float>(weights.answer_end));  // the answers' ends
      auto w = torch::tensor(piece_weight, torch::TensorOptions().dtype(torch::kFloat32)).to(logits.device());
      auto each = torch::nn::functional::cross_entropy(answer_logits, labels,
                                                       torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
      answer = (each * w).sum() / w.sum();
    }
    out.total = out.total + answer_weight * answer;
    out.answer = answer.item<double>();
  }
  if (selecting && selection.count > 0) {
    auto note = selection.loss_sum / static_cast<double>(selection.count);
    out.total = out.total + note_weight * note;
    out.note = note.item<double>();
    out.key_noted = selection.noted.item<double>() / static_cast<double>(selection.count);
  }
  if (tapped && stats.used.defined()) {
    auto retrieval = stats.loss_sum / stats.weighted_used.clamp_min(1.0);
    out.total = out.total + retrieval_weight * retrieval;
    // The device-side sums, read at once: one synchronisation, not one per figure.
    auto figures = torch::stack({retrieval.detach(), stats.used, stats.mass_sum, stats.choice_used, stats.choice_mass_sum})
                       .to(torch::kCPU, torch::kDouble);
    const double* f = figures.data_ptr<double>();
    const double used = f[1], choice_used = f[3];
    out.retrieval = f[0];
    out.key_attention = used > 0 ? f[2] / used : std::nan("");
    out.coverage = used / static_cast<double>(std::max<int64_t>(stats.candidates, 1));
    if (choice_used > 0) out.choice_attention = f[4] / choice_used;
  }
  return out;
}

}  // namespace memmamba
