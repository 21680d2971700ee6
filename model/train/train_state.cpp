#include "model/train/train_state.h"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include "model/checkpoint.h"
#include "model/file_io.h"
#include "model/log.h"
#include "model/safetensors.h"

namespace memmamba {

namespace {

namespace fs = std::filesystem;

std::string state_path(const TrainOptions& o) { return (fs::path(o.out_dir) / "train-state.safetensors").string(); }
std::string model_path(const TrainOptions& o) { return (fs::path(o.out_dir) / "model.safetensors").string(); }

}  // namespace

TrainState start_training(const TrainOptions& o, const torch::Device& device, int64_t shard_vocab_size) {
  torch::manual_seed(o.seed);
  TrainState state;
  std::optional<MemMambaModel>& model = state.model;
  AdamW& opt = state.optimizer;
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
  if (shard_vocab_size > model->config().vocab_size)
    throw std::invalid_argument("the shards' vocabulary (" + std::to_string(shard_vocab_size) +
                                ") is larger than the model's (" + std::to_string(model->config().vocab_size) + ")");
  model->to(device);
  for (const auto& [name, t] : model->weights().all()) {
    if (o.freeze_fusion_scales && name_ends_with(name, "fusion.scale")) continue;  // stays as loaded, outside the optimizer
    auto p = t.detach().clone().set_requires_grad(true);
    model->mutable_weights().set(name, p);
    opt.add(name, p);
  }
  if (o.resume) {
    SafetensorsFile st = SafetensorsFile::load(state_path(o));
    if (!st.metadata().count("format") || st.metadata().at("format") != "memmamba-train-state")
      throw FormatError(state_path(o) + ": not a training state");
    const int64_t start_step = std::stoll(st.metadata().at("step"));
    state.tokens = std::stoll(st.metadata().at("tokens"));
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
  return state;
}

void save_training_state(const TrainOptions& o, const TrainState& state) {
  const MemMambaModel& model = *state.model;
  const AdamW& opt = state.optimizer;
  const int64_t tokens = state.tokens;
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

std::string start_metrics_log(const TrainOptions& o, int64_t start_step) {
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
    // The header is always this version's: a log resumed from an older one keeps its rows, which
    // lack the newer columns at the end.
    const std::string header =
        "step,tokens,loss,lr,grad_norm,tokens_per_second,eval_loss,note_rate,passkey_rows,"
        "retrieval_loss,key_attention,retrieval_coverage,answer_loss,note_loss,key_noted,"
        "surprise_loss,surprising_noted,predictable_noted,choice_attention,quiet_loss,stray_noted,marks_noted";
    if (kept.empty()) kept.push_back(header);
    else kept.front() = header;
    std::string text;
    for (const auto& l : kept) text += l + "\n";
    write_file_atomic(metrics, text);
  }
  return metrics;
}

void append_metrics_row(std::ostream& log, const TrainProgress& pr, int passkey_rows) {
  log << pr.step << ',' << pr.tokens << ',' << pr.loss << ',' << pr.lr << ',' << pr.grad_norm << ','
      << pr.tokens_per_second << ',' << pr.eval_loss << ',' << pr.note_rate << ',' << passkey_rows << ','
      << pr.retrieval_loss << ',' << pr.key_attention << ',' << pr.retrieval_coverage << ',' << pr.answer_loss << ','
      << pr.note_loss << ',' << pr.key_noted << ',' << pr.surprise_loss << ',' << pr.surprising_noted << ','
      << pr.predictable_noted << ',' << pr.choice_attention << ',' << pr.quiet_loss << ',' << pr.stray_noted << ','
      << pr.marks_noted << '\n';
  log.flush();
}

}  // namespace memmamba
