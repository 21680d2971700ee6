#include "model/train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <random>

#include "model/autocast.h"
#include "model/distributed/gradient_sync.h"
#include "model/distributed/world.h"
#include "model/file_io.h"
#include "model/log.h"
#include "model/profile.h"
#include "model/runner.h"
#include "model/runtime.h"
#include "model/train/losses.h"
#include "model/train/train_state.h"
#include "model/train/training_rows.h"

namespace memmamba {

namespace {

namespace fs = std::filesystem;

// Mean of the figures a step's micro-batches report; NaN ones (nothing measured) are skipped.
struct StepMean {
  double sum = 0;
  int count = 0;
  void add(double value) {
    if (std::isnan(value)) return;
    sum += value;
    ++count;
  }
  double value() const { return count > 0 ? sum / count : std::nan(""); }
};

// The step's figures summed over the ranks in one collective: every rank then reports the
// whole batch's means (the loss is each rank's mean over rows of equal length, so the mean of
// the ranks' means is the batch's).
void sum_over_ranks(World& world, const torch::Device& device, double& loss_sum, int& passkeys,
                    std::vector<StepMean*> means) {
  std::vector<double> values{loss_sum, static_cast<double>(passkeys)};
  for (const StepMean* m : means) {
    values.push_back(m->sum);
    values.push_back(m->count);
  }
  auto tensor = torch::tensor(values, torch::kFloat64).to(device);
  world.all_reduce_sum(tensor);
  tensor = tensor.cpu();
  const double* v = tensor.data_ptr<double>();
  loss_sum = v[0] / world.size();
  passkeys = static_cast<int>(v[1]);
  for (size_t i = 0; i < means.size(); ++i) {
    means[i]->sum = v[2 + 2 * i];
    means[i]->count = static_cast<int>(v[3 + 2 * i]);
  }
}

// Whether rank 0 goes on (it alone hears Ctrl-C and the caller): every rank stops together.
bool leader_goes_on(World& world, const torch::Device& device, bool keep_going) {
  auto flag = torch::full({1}, keep_going ? 1.0 : 0.0, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  world.broadcast_from_leader(flag);
  return flag.item<float>() > 0.5f;
}


// One micro-batch as this rank trains on it: its rows [first_row, first_row + rows) of the
// micro-batch (the same rows whatever the number of ranks), their targets and blind-needle mask.
struct MicroBatch {
  torch::Tensor rows, ssm_mask;
  RetrievalTargets targets;
  int passkeys = 0;  // passkey rows among this rank's
};

MicroBatch rank_share(const BatchMaker& maker, int64_t step, int64_t micro, int64_t first_row, int64_t rows) {
  MicroBatch b;
  b.rows = maker.make_rows(step, micro, first_row, rows, &b.passkeys, &b.targets, &b.ssm_mask);
  return b;
}

// Makes the next micro-batch on a thread of its own while this one trains (a passkey row's
// haystack and tokens cost milliseconds in which the GPU would wait). The rows depend only on
// (step, micro-batch), so what is made ahead is what would have been made in place.
class MicroBatchesAhead {
 public:
  MicroBatchesAhead(const BatchMaker& maker, int64_t accumulation, int64_t first_row, int64_t rows)
      : maker_(maker), accumulation_(accumulation), first_row_(first_row), rows_(rows) {}
  ~MicroBatchesAhead() {
    if (next_.valid()) next_.wait();  // a batch made ahead of a stop is dropped
  }
  MicroBatch take(int64_t step, int64_t micro) {
    MicroBatch batch = next_.valid() && next_step_ == step && next_micro_ == micro
                           ? next_.get()
                           : rank_share(maker_, step, micro, first_row_, rows_);
    next_step_ = micro + 1 < accumulation_ ? step : step + 1;
    next_micro_ = micro + 1 < accumulation_ ? micro + 1 : 0;
    next_ = std::async(std::launch::async, [this, s = next_step_, m = next_micro_] {
      return rank_share(maker_, s, m, first_row_, rows_);
    });
    return batch;
  }

 private:
  const BatchMaker& maker_;
  const int64_t accumulation_, first_row_, rows_;
  std::future<MicroBatch> next_;
  int64_t next_step_ = -1, next_micro_ = -1;
};

// Mean next-token loss on `batches` windows of the held-out shard (the same windows at every
// evaluation), and, for a memory model, the share of tokens x layers noted on its first row.
double held_out_loss(const MemMambaModel& model, const TokenShard& heldout, const TrainOptions& o, int64_t micro_rows,
                     const torch::Device& device, double* note_rate) {
  torch::NoGradGuard no_grad;
  double total = 0;
  std::mt19937_64 rng(o.seed + 77);
  const uint64_t span = heldout.tokens.size() > static_cast<size_t>(o.seq_len + 1) ? heldout.tokens.size() - o.seq_len - 1 : 0;
  if (span == 0) return std::nan("");
  for (int64_t b = 0; b < o.eval_batches; ++b) {
    auto batch = torch::empty({micro_rows, o.seq_len + 1}, torch::kInt64);
    for (int64_t r = 0; r < micro_rows; ++r)
      copy_window(heldout, rng() % span, o.seq_len + 1, batch.data_ptr<int64_t>() + r * (o.seq_len + 1));
    AutocastGuard autocast(o.cuda && o.bf16);
    total += sequence_loss(model, batch.to(device)).lm.item<double>();
  }
  if (note_rate && model.config().memory) {
    TraceRunRequest req;
    for (int64_t i = 0; i < std::min<int64_t>(o.seq_len, static_cast<int64_t>(heldout.tokens.size())); ++i)
      req.tokens.push_back(heldout.tokens[i]);
    req.options = model.default_options();
    req.trace_options.record_attention = false;
    Trace t = trace_tokens(model, std::move(req));
    double noted = 0, all = 0;
    for (const LayerTrace& l : t.layers)
      for (uint8_t f : l.flags) { noted += (f & kNoted) != 0; all += 1; }
    *note_rate = all > 0 ? noted / all : 0;
  }
  return total / static_cast<double>(o.eval_batches);
}

}  // namespace

int64_t train_model(const TrainOptions& o, const std::function<bool(const TrainProgress&)>& on_step) {
  if (o.seq_len < 8 || o.batch < 1 || o.accumulation < 1 || o.batch % o.accumulation != 0 || o.steps < 1)
    throw std::invalid_argument("training needs seq_len >= 8, steps >= 1, and batch a positive multiple of accumulation");
  if (o.cuda && !cuda_available()) throw std::invalid_argument("--device cuda: no CUDA device is available");
  if (o.passkey_min_tokens < 0 || (o.passkey_min_tokens > 0 && o.passkey_min_tokens < 64))
    throw std::invalid_argument("passkey examples need at least 64 tokens (passkey_min_tokens)");
  const torch::Device device = o.cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  World* const world = o.world && o.world->size() > 1 ? o.world.get() : nullptr;
  const bool leader = !world || world->leader();
  if (world && world->backend() == World::Backend::StoreOnly)
    throw std::invalid_argument("data-parallel training needs a process group (NCCL or gloo)");
  const TokenShard train = TokenShard::load((fs::path(o.data_dir) / "train.tokens").string());
  const TokenShard heldout = TokenShard::load((fs::path(o.data_dir) / "heldout.tokens").string());
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) throw FileError("cannot create " + o.out_dir + ": " + ec.message());

  TrainState state = start_training(o, device, train.vocab_size);
  MemMambaModel& model = *state.model;
  AdamW& opt = state.optimizer;
  const int64_t start_step = opt.step;

  if (!(o.blind_needle_fraction >= 0 && o.blind_needle_fraction <= 1))
    throw std::invalid_argument("the blind-needle share must be between 0 and 1");
  if (!(o.document_fraction >= 0 && o.document_fraction <= 1))
    throw std::invalid_argument("the document-row share must be between 0 and 1");
  if (o.blind_needle_fraction > 0 && !model.config().memory)
    log::warn("blind needles on a model without memory: the key cannot reach the answer at all");
  const int64_t blind_margin = o.blind_needle_margin >= 0
                                   ? o.blind_needle_margin
                                   : (model.config().conv_kernel - 1) * model.config().n_layers;
  BatchMaker batches(o, train, blind_margin);
  const int64_t micro_rows = o.batch / o.accumulation;
  // This rank's rows of each micro-batch: the batches are the same for any number of ranks,
  // so a run resumes on another number of GPUs with the same data.
  const int64_t ranks = world ? world->size() : 1;
  if (micro_rows % ranks != 0)
    throw std::invalid_argument("with " + std::to_string(ranks) + " ranks, each micro-batch's " +
                                std::to_string(micro_rows) + " rows (batch / accumulation) must split evenly");
  const int64_t rank_rows = micro_rows / ranks;
  const int64_t first_row = world ? world->rank() * rank_rows : 0;
  std::optional<GradientSync> gradient_sync;
  if (world) {
    // Every rank starts from rank 0's weights (a fresh start draws them from the seed anyway).
    torch::NoGradGuard no_grad;
    for (torch::Tensor& p : opt.params) world->broadcast_from_leader(p);
    gradient_sync.emplace(o.world, opt.params, o.gradient_bucket_bytes);
    if (leader)
      log::info("data parallel: " + std::to_string(ranks) + " ranks, " + std::to_string(rank_rows) + " of each micro-batch's " +
                std::to_string(micro_rows) + " rows per rank, gradients in " + std::to_string(gradient_sync->buckets()) +
                " buckets");
  }
  std::ofstream csv;
  if (leader) csv.open(start_metrics_log(o, start_step), std::ios::app);

  int64_t step = start_step;
  auto t_last = std::chrono::steady_clock::now();
  const auto t_first = t_last;
  profile::reset();
  // With MEMMAMBA_PROFILE=1: where the steps' time went, when the loop ends however it ends.
  struct ProfileReport {
    std::chrono::steady_clock::time_point start;
    ~ProfileReport() {
      if (profile::enabled())
        log::info("training profile:\n" +
                  profile::report(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
    }
  } profile_report{t_first};
  MicroBatchesAhead ahead(batches, o.accumulation, first_row, rank_rows);
  profile::Timeline timeline(o.cuda, world && world->size() > 1 ? ".rank" + std::to_string(world->rank()) : "");
  const LossWeights loss_weights{o.retrieval_loss_weight, o.answer_loss_weight, o.note_loss_weight,
                                 o.note_loss_margin, o.surprise_note_weight, o.surprise_note_share,
                                 o.surprise_note_band, o.choice_weight, o.quiet_note_weight,
                                 o.answer_end_weight};
  for (; step < o.steps; ++step) {
    timeline.before_step(step);
    const double lr = learning_rate_at(step, o);
    double loss_sum = 0;
    StepMean retrieval, key_attention, coverage, answer, note, key_noted, surprise, surprising_noted, predictable_noted,
        choice_attention, quiet, stray_noted, marks_noted;
    int passkeys = 0;
    for (auto& p : opt.params) p.mutable_grad() = torch::Tensor();
    for (int64_t micro = 0; micro < o.accumulation; ++micro) {
      const MicroBatch micro_batch = [&] {
        const profile::Section section("train: micro-batch", device);
        return ahead.take(step, micro);
      }();
      passkeys += micro_batch.passkeys;
      const RetrievalTargets& targets = micro_batch.targets;
      const torch::Tensor& ssm_mask = micro_batch.ssm_mask;
      const torch::Tensor batch = micro_batch.rows.to(device);
      SequenceLoss losses;
      {
        const profile::Section section("train: forward and losses", device);
        AutocastGuard autocast(o.cuda && o.bf16);
        losses = sequence_loss(model, batch, &targets, loss_weights,
                               ssm_mask.defined() ? ssm_mask.to(device) : ssm_mask);
      }
      const torch::Tensor& loss = losses.total;
      const double loss_value = losses.lm.item<double>();
      retrieval.add(losses.retrieval);
      key_attention.add(losses.key_attention);
      choice_attention.add(losses.choice_attention);
      coverage.add(losses.coverage);
      answer.add(losses.answer);
      note.add(losses.note);
      key_noted.add(losses.key_noted);
      surprise.add(losses.surprise_note);
      surprising_noted.add(losses.surprising_noted);
      predictable_noted.add(losses.predictable_noted);
      quiet.add(losses.quiet);
      stray_noted.add(losses.stray_noted);
      marks_noted.add(losses.marks_noted);
      if (!std::isfinite(loss_value))
        throw std::runtime_error("the loss became " + std::to_string(loss_value) + " at step " + std::to_string(step) +
                                 ": lower the learning rate or resume from the last checkpoint");
      {
        const profile::Section section("train: backward", device);
        if (gradient_sync && micro + 1 == o.accumulation) gradient_sync->arm();
        (loss / static_cast<double>(o.accumulation)).backward();
      }
      loss_sum += loss_value;
    }
    if (gradient_sync) {
      const profile::Section section("train: gradients over the ranks", device);
      gradient_sync->finish();
      sum_over_ranks(*world, device, loss_sum, passkeys,
                     {&retrieval, &key_attention, &coverage, &answer, &note, &key_noted, &surprise, &surprising_noted,
                      &predictable_noted, &choice_attention, &quiet, &stray_noted, &marks_noted});
    }
    std::optional<profile::Section> section(std::in_place, "train: clip and optimizer", device);
    const double grad_norm = clip_gradients(opt.params, o.clip);
    opt.step_with(lr, o);
    section.reset();
    state.tokens += o.batch * o.seq_len;
    if (o.cuda) torch::cuda::synchronize();
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(now - t_last).count();
    t_last = now;
    TrainProgress pr{step + 1, o.steps, state.tokens, loss_sum / static_cast<double>(o.accumulation), lr, grad_norm,
                     static_cast<double>(o.batch * o.seq_len) / std::max(secs, 1e-9), std::nan(""), std::nan("")};
    pr.retrieval_loss = retrieval.value();
    pr.key_attention = key_attention.value();
    pr.choice_attention = choice_attention.value();
    pr.retrieval_coverage = coverage.value();
    pr.answer_loss = answer.value();
    pr.note_loss = note.value();
    pr.key_noted = key_noted.value();
    pr.surprise_loss = surprise.value();
    pr.surprising_noted = surprising_noted.value();
    pr.predictable_noted = predictable_noted.value();
    pr.quiet_loss = quiet.value();
    pr.stray_noted = stray_noted.value();
    pr.marks_noted = marks_noted.value();
    const bool last = step + 1 == o.steps;
    bool keep_going = true;
    if (leader) {
      if ((o.eval_every > 0 && (step + 1) % o.eval_every == 0) || last)
        pr.eval_loss = held_out_loss(model, heldout, o, micro_rows, device, &pr.note_rate);
      append_metrics_row(csv, pr, passkeys);
      keep_going = !on_step || on_step(pr);
      if (last || !keep_going || (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0)) save_training_state(o, state);
    }
    if (world) keep_going = leader_goes_on(*world, device, keep_going);
    if (!keep_going) return step + 1;
  }
  return step;
}

}  // namespace memmamba
