#include "model/train/trainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>

#include "model/autocast.h"
#include "model/checkpoint.h"
#include "model/eval/passkey.h"
#include "model/file_io.h"
#include "model/log.h"
#include "model/memmamba.h"
#include "model/runner.h"
#include "model/safetensors.h"
#include "model/text_input.h"
#include "model/tokenizer.h"
#include "model/train/token_shards.h"

namespace memmamba {

namespace {

namespace fs = std::filesystem;

// Weight decay for matrices only (not norms, biases, D, A_log, dt bias, fusion scales).
bool decays(const std::string& name, const torch::Tensor& t) {
  return t.dim() >= 2 && name.find("A_log") == std::string::npos;
}

struct AdamW {
  std::vector<std::string> names;
  std::vector<torch::Tensor> params, m, v;
  int64_t step = 0;

  void step_with(double lr, const TrainOptions& o) {
    torch::NoGradGuard no_grad;
    ++step;
    const double c1 = 1.0 - std::pow(o.beta1, static_cast<double>(step));
    const double c2 = 1.0 - std::pow(o.beta2, static_cast<double>(step));
    for (size_t i = 0; i < params.size(); ++i) {
      torch::Tensor& p = params[i];
      if (!p.grad().defined()) continue;
      const torch::Tensor g = p.grad();
      m[i].mul_(o.beta1).add_(g, 1.0 - o.beta1);
      v[i].mul_(o.beta2).addcmul_(g, g, 1.0 - o.beta2);
      if (decays(names[i], p)) p.mul_(1.0 - lr * o.weight_decay);
      auto denom = (v[i] / c2).sqrt_().add_(o.eps);
      p.addcdiv_(m[i], denom, -lr / c1);
    }
  }
};

double lr_at(int64_t step, const TrainOptions& o) {
  if (o.warmup > 0 && step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  if (!o.cosine) return o.lr;
  const double span = std::max<int64_t>(1, o.steps - o.warmup);
  const double progress = std::min(1.0, static_cast<double>(step - o.warmup) / span);
  const double min_lr = o.lr * o.min_lr_ratio;
  return min_lr + 0.5 * (o.lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

// Copies tokens [start, start + n) of a shard into an int64 row.
void copy_window(const TokenShard& shard, uint64_t start, int64_t n, int64_t* row) {
  for (int64_t i = 0; i < n; ++i) row[i] = shard.tokens[start + static_cast<uint64_t>(i)];
}

// Index of the token holding byte `byte` of the encoded text, or -1.
int64_t token_at_byte(const Encoding& enc, int64_t byte) {
  auto it = std::upper_bound(enc.end.begin(), enc.end.end(), byte);
  if (it == enc.end.end()) return -1;
  const int64_t i = it - enc.end.begin();
  return enc.begin[static_cast<size_t>(i)] <= byte ? i : -1;
}


// Byte offsets in the prompt of the key's two copies in the needle (-1 where absent).
std::pair<int64_t, int64_t> needle_key_copies(const eval::PasskeyCase& c) {
  const std::string key = std::to_string(c.key);
  const size_t first = c.prompt.find(key, static_cast<size_t>(c.needle_begin));
  if (first == std::string::npos) return {-1, -1};
  const size_t second = c.prompt.find(key, first + key.size());
  return {static_cast<int64_t>(first), second == std::string::npos ? int64_t{-1} : static_cast<int64_t>(second)};
}

// Every batch is a function of (seed, step, micro-batch): resuming needs no sampler state.
class BatchMaker {
 public:
  BatchMaker(const TrainOptions& o, const TokenShard& train, int64_t blind_margin)
      : o_(o), train_(train), blind_margin_(blind_margin) {
    if (o.passkey_fraction > 0) {
      if (o.passkey_tokenizer.empty()) throw std::invalid_argument("passkey examples need a tokenizer");
      tokenizer_.emplace(Tokenizer::load(o.passkey_tokenizer));
      std::vector<std::string> sentences;
      for (const std::string& b : o.passkey_books) {
        auto s = eval::split_sentences(load_text_file(b));
        sentences.insert(sentences.end(), s.begin(), s.end());
      }
      generator_.emplace(*tokenizer_, sentences,
                         sentences.empty() ? eval::Haystack::RepeatedFiller : eval::Haystack::BookSentences);
    }
    if (static_cast<int64_t>(train_.tokens.size()) < o.seq_len + 2)
      throw std::invalid_argument("the training shard holds fewer tokens than one sequence");
  }

  // [rows, seq_len + 1] int64 on the CPU. With `ssm_mask` and blind needles: [rows, seq_len]
  // floats, 0 where the SSM must not see the token (undefined when no row has a blind needle).
  torch::Tensor make(int64_t step, int64_t micro, int64_t rows, int* passkeys, RetrievalTargets* targets = nullptr,
                     torch::Tensor* ssm_mask = nullptr) const {
    std::mt19937_64 rng(o_.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(step) * 4099 + static_cast<uint64_t>(micro));
    const int64_t L = o_.seq_len + 1;
    auto out = torch::empty({rows, L}, torch::kInt64);
    int64_t* dst = out.data_ptr<int64_t>();
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    const uint64_t span = train_.tokens.size() - static_cast<uint64_t>(L);
    for (int64_t r = 0; r < rows; ++r) {
      int64_t* row = dst + r * L;
      copy_window(train_, rng() % span, L, row);
      if (generator_ && L >= 128 && unit(rng) < o_.passkey_fraction) {  // prompts need >= 64 tokens
        // A passkey example (prompt, then the key) at a random length and depth, placed at
        // the end of the row; book text fills whatever is left before it.
        const int64_t target = passkey_example_tokens(o_, L, rng());
        const eval::PasskeyCase c = generator_->make(target, unit(rng), rng());
        Encoding enc = tokenizer_->encode(passkey_training_text(c, o_.passkey_answer_end));
        const int64_t n = std::min<int64_t>(static_cast<int64_t>(enc.ids.size()), L);
        for (int64_t i = 0; i < n; ++i) row[L - n + i] = enc.ids[enc.ids.size() - n + i];
        if (passkeys) ++*passkeys;
        if (targets) add_retrieval_targets(c, enc, r, L, *targets);
        // Drawn only when asked for, so runs without blind needles keep their batches.
        if (o_.blind_needle_fraction > 0 && unit(rng) < o_.blind_needle_fraction && ssm_mask) {
          const auto [begin, end] = blind_needle_span(c, enc, L, blind_margin_);
          if (end > begin) {
            if (!ssm_mask->defined()) *ssm_mask = torch::ones({rows, o_.seq_len}, torch::kFloat32);
            ssm_mask->select(0, r).narrow(0, begin, std::min(end, o_.seq_len) - begin).zero_();
          }
        }
      }
    }
    return out;
  }

 private:
  const TrainOptions& o_;
  const TokenShard& train_;
  const int64_t blind_margin_;
  std::optional<Tokenizer> tokenizer_;
  std::optional<eval::PasskeyGenerator> generator_;
};

// Adds `value` to a running device-side sum that starts undefined.
void accumulate(torch::Tensor& sum, const torch::Tensor& value) { sum = sum.defined() ? sum + value : value; }

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

struct RetrievalStats {
  torch::Tensor loss_sum, mass_sum, used;  // scalars on the device (undefined when nothing was tapped)
  int64_t candidates = 0;                  // answer pieces x attentions that could have been supervised
};

// The retrieval loss: at each answer position that predicts a piece of the key, minus the log
// of the attention mass that each pool attention puts on the notes of that piece in the
// needle (only where such a note is visible and the attention reaches the stream).
std::function<void(const AttentionTap&)> retrieval_tap(const RetrievalTargets& targets, int64_t T,
                                                       const torch::Device& device, RetrievalStats& stats) {
  struct PerRow { torch::Tensor query, first, second; int64_t count; };
  auto per_row = std::make_shared<std::map<int64_t, PerRow>>();
  auto opts = torch::TensorOptions().dtype(torch::kInt64);
  std::map<int64_t, std::vector<int64_t>> q, a, b;
  for (size_t i = 0; i < targets.row.size(); ++i) {
    q[targets.row[i]].push_back(targets.query[i]);
    a[targets.row[i]].push_back(targets.first[i]);
    b[targets.row[i]].push_back(targets.second[i]);
  }
  for (auto& [row, qs] : q)
    (*per_row)[row] = {torch::tensor(qs, opts).to(device), torch::tensor(a[row], opts).to(device),
                       torch::tensor(b[row], opts).to(device), static_cast<int64_t>(qs.size())};
  return [per_row, T, &stats](const AttentionTap& tap) {
    auto it = per_row->find(tap.sequence);
    if (it == per_row->end() || tap.pos0 != 0) return;  // training runs each row as one chunk
    const PerRow& t = it->second;
    const int64_t n = tap.rows.size(0);
    auto row_of = torch::full({T}, -1, tap.rows.options()).index_put_({tap.rows}, torch::arange(n, tap.rows.options()));
    auto tr = row_of.index_select(0, t.query);
    auto safe = tr.clamp_min(0);
    auto weights = tap.weights.index_select(0, safe).to(torch::kFloat32);
    auto source = tap.source.index_select(0, safe);
    auto hit = source.ge(0) & (source.eq(t.first.unsqueeze(1)) | source.eq(t.second.unsqueeze(1)));
    auto mass = (weights * hit.to(torch::kFloat32)).sum(1);
    auto use = (tr.ge(0) & hit.any(1) & tap.applied.index_select(0, safe)).to(torch::kFloat32);
    auto loss = (-(mass + 1e-6).log() * use).sum();
    auto mass_used = (mass.detach() * use).sum();
    auto used = use.sum();
    accumulate(stats.loss_sum, loss);
    accumulate(stats.mass_sum, mass_used);
    accumulate(stats.used, used);
    stats.candidates += t.count;
  };
}

struct SequenceLoss {
  torch::Tensor total;  // what backward() sees
  torch::Tensor lm;
  double retrieval = std::nan(""), key_attention = std::nan(""), coverage = std::nan(""), answer = std::nan("");
  double note = std::nan(""), key_noted = std::nan("");
};

// The selection loss: the needle's key tokens (its first copy) should clear the note threshold
// by a margin in every layer: mean over layers and key tokens of max(0, tau1 + margin - I_t).
struct SelectionStats {
  torch::Tensor loss_sum, noted;
  int64_t count = 0;
};

std::function<void(int64_t, int64_t, int64_t, const torch::Tensor&)> selection_tap(const RetrievalTargets& targets,
                                                                                   double tau_note, const torch::Device& device,
                                                                                   SelectionStats& stats) {
  constexpr double kMargin = 0.05;
  std::map<int64_t, std::vector<int64_t>> positions;
  for (size_t i = 0; i < targets.row.size(); ++i)
    if (targets.first[i] >= 0) positions[targets.row[i]].push_back(targets.first[i]);
  auto per_row = std::make_shared<std::map<int64_t, torch::Tensor>>();
  for (auto& [row, p] : positions) {
    std::sort(p.begin(), p.end());
    p.erase(std::unique(p.begin(), p.end()), p.end());
    (*per_row)[row] = torch::tensor(p, torch::TensorOptions().dtype(torch::kInt64)).to(device);
  }
  return [per_row, tau_note, &stats](int64_t, int64_t sequence, int64_t pos0, const torch::Tensor& importance) {
    auto it = per_row->find(sequence);
    if (it == per_row->end() || pos0 != 0) return;
    auto value = importance.index_select(0, it->second).to(torch::kFloat32);
    auto loss = torch::relu(tau_note + kMargin - value).sum();
    auto noted = value.detach().gt(tau_note).sum().to(torch::kFloat32);
    accumulate(stats.loss_sum, loss);
    accumulate(stats.noted, noted);
    stats.count += it->second.size(0);
  };
}

SequenceLoss sequence_loss(const MemMambaModel& model, const torch::Tensor& batch, const RetrievalTargets* targets = nullptr,
                           double retrieval_weight = 0, double answer_weight = 0, double note_weight = 0,
                           const torch::Tensor& ssm_mask = {}) {
  const int64_t rows = batch.size(0), T = batch.size(1) - 1;
  RunState state = model.new_state(rows);
  RunOptions o = model.default_options();
  o.chunk_tokens = T;
  o.ssm_input_mask = ssm_mask;
  const bool has_targets = targets && !targets->row.empty();
  RetrievalStats stats;
  const bool tapped = has_targets && model.config().memory && retrieval_weight > 0;
  if (tapped) o.on_attention = retrieval_tap(*targets, T, batch.device(), stats);
  SelectionStats selection;
  const bool selecting = has_targets && model.config().memory && note_weight > 0;
  if (selecting) o.on_importance = selection_tap(*targets, o.memory.tau_note, batch.device(), selection);
  auto hidden = model.forward(batch.narrow(1, 0, T), state, o);
  auto logits = model.logits(hidden);
  SequenceLoss out;
  out.lm = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}).to(torch::kFloat32),
                                                batch.narrow(1, 1, T).reshape({-1}).to(logits.device()));
  out.total = out.lm;
  if (has_targets && answer_weight > 0) {
    // The key's pieces are a handful of a row's thousands of tokens: weigh them on their own.
    auto opts = torch::TensorOptions().dtype(torch::kInt64);
    std::vector<int64_t> row_list = targets->row, query_list = targets->query;
    row_list.insert(row_list.end(), targets->end_row.begin(), targets->end_row.end());
    query_list.insert(query_list.end(), targets->end_query.begin(), targets->end_query.end());
    auto rows = torch::tensor(row_list, opts).to(logits.device());
    auto query = torch::tensor(query_list, opts).to(logits.device());
    auto answer_logits = logits.index({rows, query}).to(torch::kFloat32);
    auto labels = batch.to(logits.device()).index({rows, query + 1});
    auto answer = torch::nn::functional::cross_entropy(answer_logits, labels);
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
    const double used = stats.used.item<double>();
    auto retrieval = stats.loss_sum / std::max(used, 1.0);
    out.total = out.total + retrieval_weight * retrieval;
    out.retrieval = retrieval.item<double>();
    out.key_attention = used > 0 ? stats.mass_sum.item<double>() / used : std::nan("");
    out.coverage = used / static_cast<double>(std::max<int64_t>(stats.candidates, 1));
  }
  return out;
}

std::string state_path(const TrainOptions& o) { return (fs::path(o.out_dir) / "train-state.safetensors").string(); }
std::string model_path(const TrainOptions& o) { return (fs::path(o.out_dir) / "model.safetensors").string(); }

void save_all(const TrainOptions& o, const MemMambaModel& model, const AdamW& opt, int64_t tokens) {
  Weights cpu;
  for (const auto& [name, t] : model.weights().all()) cpu.set(name, t.detach().to(torch::kCPU, torch::kFloat32));
  SafetensorsWriter w;
  w.set_metadata("format", "memmamba-train-state");
  w.set_metadata("step", std::to_string(opt.step));
  w.set_metadata("tokens", std::to_string(tokens));
  w.set_metadata("seed", std::to_string(o.seed));
  std::vector<torch::Tensor> keep;
  for (size_t i = 0; i < opt.params.size(); ++i) {
    for (const auto& [kind, t] : {std::pair{"m", &opt.m[i]}, std::pair{"v", &opt.v[i]}}) {
      keep.push_back(t->detach().to(torch::kCPU, torch::kFloat32).contiguous());
      std::vector<int64_t> shape(keep.back().sizes().begin(), keep.back().sizes().end());
      w.add(std::string(kind) + "." + opt.names[i], DType::F32, shape, keep.back().data_ptr(), keep.back().nbytes());
    }
  }
  // The state first, then the model: a model file is only ever newer than or equal to its state.
  w.write(state_path(o));
  save_checkpoint(model_path(o), model.config(), cpu, DType::F32,
                  {{"step", std::to_string(opt.step)}, {"tokens", std::to_string(tokens)}});
}

}  // namespace

int64_t passkey_example_tokens(const TrainOptions& o, int64_t row_tokens, uint64_t random) {
  const int64_t L = row_tokens;
  const int64_t min_len = o.passkey_min_tokens > 0 ? std::min<int64_t>(o.passkey_min_tokens, L - 25)
                                                   : std::max<int64_t>(64, std::min<int64_t>(256, L / 2));
  return min_len + static_cast<int64_t>(random % static_cast<uint64_t>(std::max<int64_t>(1, L - 24 - min_len)));
}

std::pair<int64_t, int64_t> blind_needle_span(const eval::PasskeyCase& c, const Encoding& enc, int64_t row_length,
                                              int64_t margin) {
  const auto klen = static_cast<int64_t>(std::to_string(c.key).size());
  const auto [first, second] = needle_key_copies(c);
  if (first < 0) return {0, 0};
  const int64_t last_byte = (second >= 0 ? second : first) + klen - 1;
  const int64_t begin_token = token_at_byte(enc, first);
  const int64_t end_token = token_at_byte(enc, last_byte);
  if (begin_token < 0 || end_token < 0) return {0, 0};
  const int64_t shift = row_length - static_cast<int64_t>(enc.ids.size());  // token i sits at row position i + shift
  const int64_t begin = std::max<int64_t>(0, begin_token + shift);
  const int64_t end = std::min<int64_t>(row_length, end_token + shift + 1 + std::max<int64_t>(0, margin));
  return end > begin ? std::pair<int64_t, int64_t>{begin, end} : std::pair<int64_t, int64_t>{0, 0};
}

std::string passkey_training_text(const eval::PasskeyCase& c, const std::string& answer_end) {
  return c.prompt + std::to_string(c.key) + answer_end;
}

void add_retrieval_targets(const eval::PasskeyCase& c, const Encoding& enc, int64_t row, int64_t row_length,
                           RetrievalTargets& out) {
  const std::string key = std::to_string(c.key);
  const auto klen = static_cast<int64_t>(key.size());
  const auto [first, second] = needle_key_copies(c);
  const int64_t answer = static_cast<int64_t>(c.prompt.size());
  const int64_t shift = row_length - static_cast<int64_t>(enc.ids.size());  // token i sits at row position i + shift
  auto at = [&](int64_t i) { return i < 0 || i + shift < 0 ? int64_t{-1} : i + shift; };
  for (size_t i = 0; i < enc.ids.size(); ++i) {
    if (enc.end[i] <= answer || enc.begin[i] >= answer + klen) continue;  // not a piece of the answer's key
    const int64_t offset = std::max(enc.begin[i], answer) - answer;
    const int64_t query = at(static_cast<int64_t>(i)) - 1;
    const int64_t a = first >= 0 ? at(token_at_byte(enc, first + offset)) : -1;
    const int64_t b = second >= 0 ? at(token_at_byte(enc, second + offset)) : -1;
    if (query < 0 || (a < 0 && b < 0)) continue;
    out.row.push_back(row);
    out.query.push_back(query);
    out.first.push_back(a);
    out.second.push_back(b);
  }
  // The answer's end: the first piece that begins after the key (pieces are in text order).
  const auto after = std::lower_bound(enc.begin.begin(), enc.begin.end(), answer + klen);
  if (after == enc.begin.end()) return;
  const int64_t end_query = at(after - enc.begin.begin()) - 1;
  if (end_query < 0) return;
  out.end_row.push_back(row);
  out.end_query.push_back(end_query);
}

int64_t train_model(const TrainOptions& o, const std::function<bool(const TrainProgress&)>& on_step) {
  if (o.seq_len < 8 || o.batch < 1 || o.accumulation < 1 || o.batch % o.accumulation != 0 || o.steps < 1)
    throw std::invalid_argument("training needs seq_len >= 8, steps >= 1, and batch a positive multiple of accumulation");
  if (o.cuda && !torch::cuda::is_available()) throw std::invalid_argument("--device cuda: no CUDA device is available");
  if (o.passkey_min_tokens < 0 || (o.passkey_min_tokens > 0 && o.passkey_min_tokens < 64))
    throw std::invalid_argument("passkey examples need at least 64 tokens (passkey_min_tokens)");
  const torch::Device device = o.cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  const TokenShard train = TokenShard::load((fs::path(o.data_dir) / "train.tokens").string());
  const TokenShard heldout = TokenShard::load((fs::path(o.data_dir) / "heldout.tokens").string());
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) throw FileError("cannot create " + o.out_dir + ": " + ec.message());

  torch::manual_seed(o.seed);
  std::optional<MemMambaModel> model;
  int64_t start_step = 0, tokens = 0;
  AdamW opt;
  if (o.resume) {
    Checkpoint ck = load_checkpoint(model_path(o));
    model.emplace(ck.config, std::move(ck.weights));
  } else if (!o.init_checkpoint.empty()) {
    Checkpoint ck = load_checkpoint(o.init_checkpoint);
    if (!std::isnan(o.init_tau_note)) ck.config.tau_note = o.init_tau_note;
    if (!std::isnan(o.init_tau_retrieve)) ck.config.tau_retrieve = o.init_tau_retrieve;
    ck.config.validate();
    if (!o.init_backbone.empty()) {
      const Checkpoint backbone = load_checkpoint(o.init_backbone);
      int replaced = 0;
      for (const auto& [name, t] : backbone.weights.all()) {
        if (!ck.weights.has(name)) continue;
        if (!ck.weights[name].sizes().equals(t.sizes()))
          throw std::invalid_argument("--init-backbone: tensor \"" + name + "\" has another shape than in " + o.init_checkpoint);
        ck.weights.set(name, t.clone());
        ++replaced;
      }
      if (replaced == 0) throw std::invalid_argument("--init-backbone: " + o.init_backbone + " shares no tensor with " + o.init_checkpoint);
      log::info("took " + std::to_string(replaced) + " tensors from " + o.init_backbone);
    }
    model.emplace(ck.config, std::move(ck.weights));
    log::info("starting from " + o.init_checkpoint);
  } else {
    model.emplace(MemMambaModel::random(o.config, o.seed));
  }
  if (train.vocab_size > model->config().vocab_size)
    throw std::invalid_argument("the shards' vocabulary (" + std::to_string(train.vocab_size) +
                                ") is larger than the model's (" + std::to_string(model->config().vocab_size) + ")");
  model->to(device);
  for (const auto& [name, t] : model->weights().all()) {
    if (o.freeze_fusion_scales && name_ends_with(name, "fusion.scale")) continue;  // stays as loaded, outside the optimizer
    auto p = t.detach().clone().set_requires_grad(true);
    model->mutable_weights().set(name, p);
    opt.names.push_back(name);
    opt.params.push_back(p);
    opt.m.push_back(torch::zeros_like(p));
    opt.v.push_back(torch::zeros_like(p));
  }
  if (o.resume) {
    SafetensorsFile st = SafetensorsFile::load(state_path(o));
    if (!st.metadata().count("format") || st.metadata().at("format") != "memmamba-train-state")
      throw FormatError(state_path(o) + ": not a training state");
    start_step = std::stoll(st.metadata().at("step"));
    tokens = std::stoll(st.metadata().at("tokens"));
    Checkpoint ck = load_checkpoint(model_path(o));
    if (!ck.metadata.count("step") || std::stoll(ck.metadata.at("step")) != start_step)
      throw FormatError(model_path(o) + " and its training state are from different steps");
    for (size_t i = 0; i < opt.params.size(); ++i) {
      for (auto [kind, t] : std::vector<std::pair<const char*, torch::Tensor*>>{{"m", &opt.m[i]}, {"v", &opt.v[i]}}) {
        const TensorView& view = st.get(std::string(kind) + "." + opt.names[i], DType::F32);
        if (static_cast<int64_t>(view.nbytes / 4) != t->numel())
          throw FormatError(state_path(o) + ": optimizer state for " + opt.names[i] + " has the wrong size");
        auto cpu = torch::empty(t->sizes(), torch::kFloat32);
        std::memcpy(cpu.data_ptr(), view.data, view.nbytes);
        t->copy_(cpu);
      }
    }
    opt.step = start_step;
    log::info("resumed at step " + std::to_string(start_step));
  }

  if (!(o.blind_needle_fraction >= 0 && o.blind_needle_fraction <= 1))
    throw std::invalid_argument("the blind-needle share must be between 0 and 1");
  if (o.blind_needle_fraction > 0 && !model->config().memory)
    log::warn("blind needles on a model without memory: the key cannot reach the answer at all");
  const int64_t blind_margin = o.blind_needle_margin >= 0
                                   ? o.blind_needle_margin
                                   : (model->config().conv_kernel - 1) * model->config().n_layers;
  BatchMaker batches(o, train, blind_margin);
  const int64_t micro_rows = o.batch / o.accumulation;
  const std::string metrics = (fs::path(o.out_dir) / "metrics.csv").string();
  {
    // Keep the rows up to the resumed step; a fresh run starts the file.
    std::vector<std::string> kept;
    if (o.resume) {
      std::ifstream in(metrics);
      std::string line;
      while (std::getline(in, line)) {
        if (kept.empty()) { kept.push_back(line); continue; }
        // A line cut by a crash (or edited by hand) is dropped, not fatal: the log is rebuilt.
        try {
          if (std::stoll(line.substr(0, line.find(','))) <= start_step) kept.push_back(line);
        } catch (const std::exception&) {
          log::warn("metrics.csv: dropping a malformed line while resuming");
        }
      }
    }
    if (kept.empty())
      kept.push_back("step,tokens,loss,lr,grad_norm,tokens_per_second,eval_loss,note_rate,passkey_rows,"
                     "retrieval_loss,key_attention,retrieval_coverage,answer_loss,note_loss,key_noted");
    std::string text;
    for (const auto& l : kept) text += l + "\n";
    write_file_atomic(metrics, text);
  }
  std::ofstream csv(metrics, std::ios::app);

  auto evaluate = [&](double* note_rate) {
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
      total += sequence_loss(*model, batch.to(device)).lm.item<double>();
    }
    if (note_rate && model->config().memory) {
      TraceRunRequest req;
      for (int64_t i = 0; i < std::min<int64_t>(o.seq_len, static_cast<int64_t>(heldout.tokens.size())); ++i)
        req.tokens.push_back(heldout.tokens[i]);
      req.options = model->default_options();
      req.trace_options.record_attention = false;
      Trace t = trace_tokens(*model, std::move(req));
      double noted = 0, all = 0;
      for (const LayerTrace& l : t.layers)
        for (uint8_t f : l.flags) { noted += (f & kNoted) != 0; all += 1; }
      *note_rate = all > 0 ? noted / all : 0;
    }
    return total / static_cast<double>(o.eval_batches);
  };

  int64_t step = start_step;
  auto t_last = std::chrono::steady_clock::now();
  for (; step < o.steps; ++step) {
    const double lr = lr_at(step, o);
    double loss_sum = 0;
    StepMean retrieval, key_attention, coverage, answer, note, key_noted;
    int passkeys = 0;
    for (auto& p : opt.params) p.mutable_grad() = torch::Tensor();
    for (int64_t micro = 0; micro < o.accumulation; ++micro) {
      RetrievalTargets targets;
      torch::Tensor ssm_mask;
      auto batch = batches.make(step, micro, micro_rows, &passkeys, &targets, &ssm_mask).to(device);
      SequenceLoss losses;
      {
        AutocastGuard autocast(o.cuda && o.bf16);
        losses = sequence_loss(*model, batch, &targets, o.retrieval_loss_weight, o.answer_loss_weight, o.note_loss_weight,
                               ssm_mask.defined() ? ssm_mask.to(device) : ssm_mask);
      }
      const torch::Tensor& loss = losses.total;
      const double loss_value = losses.lm.item<double>();
      retrieval.add(losses.retrieval);
      key_attention.add(losses.key_attention);
      coverage.add(losses.coverage);
      answer.add(losses.answer);
      note.add(losses.note);
      key_noted.add(losses.key_noted);
      if (!std::isfinite(loss_value))
        throw std::runtime_error("the loss became " + std::to_string(loss_value) + " at step " + std::to_string(step) +
                                 ": lower the learning rate or resume from the last checkpoint");
      (loss / static_cast<double>(o.accumulation)).backward();
      loss_sum += loss_value;
    }
    const double grad_norm = torch::nn::utils::clip_grad_norm_(opt.params, o.clip);
    opt.step_with(lr, o);
    tokens += o.batch * o.seq_len;
    if (o.cuda) torch::cuda::synchronize();
    const auto now = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(now - t_last).count();
    t_last = now;
    TrainProgress pr{step + 1, o.steps, tokens, loss_sum / static_cast<double>(o.accumulation), lr, grad_norm,
                     static_cast<double>(o.batch * o.seq_len) / std::max(secs, 1e-9), std::nan(""), std::nan("")};
    pr.retrieval_loss = retrieval.value();
    pr.key_attention = key_attention.value();
    pr.retrieval_coverage = coverage.value();
    pr.answer_loss = answer.value();
    pr.note_loss = note.value();
    pr.key_noted = key_noted.value();
    const bool last = step + 1 == o.steps;
    if ((o.eval_every > 0 && (step + 1) % o.eval_every == 0) || last) pr.eval_loss = evaluate(&pr.note_rate);
    csv << pr.step << ',' << pr.tokens << ',' << pr.loss << ',' << pr.lr << ',' << pr.grad_norm << ','
        << pr.tokens_per_second << ',' << pr.eval_loss << ',' << pr.note_rate << ',' << passkeys << ','
        << pr.retrieval_loss << ',' << pr.key_attention << ',' << pr.retrieval_coverage << ',' << pr.answer_loss << ','
        << pr.note_loss << ',' << pr.key_noted << '\n';
    csv.flush();
    const bool keep_going = !on_step || on_step(pr);
    if (last || !keep_going || (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0)) save_all(o, *model, opt, tokens);
    if (!keep_going) return step + 1;
  }
  return step;
}

}  // namespace memmamba
