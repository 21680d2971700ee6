// memmamba bench: tokens/s of the parallel and step modes, and the comparison with
// Mamba-only and a flash-attention Transformer.
#include <torch/torch.h>

#include <cstdio>
#include <memory>

#include "app/cli/cli_common.h"
#include "model/autocast.h"
#include "model/eval/speed_comparison.h"
#include "model/runner.h"
#include "model/text_input.h"

namespace memmamba::cli {

int cmd_bench(const std::vector<std::string>& argv) {
  Args args(argv, with(kModelOptions, {"lengths", "step-tokens", "seed", "compare", "text", "transformer-max"}), {"help", "no-trace", "no-memory", "bf16", "decimate"});
  if (args.flag("help")) {
    std::printf("usage: memmamba bench [--lengths 1k,4k,16k,64k] [--step-tokens N] [--no-trace] [--text BOOK] [options]\n\n"
                "Times the parallel forward (traced unless --no-trace, with per-token loss) on random\n"
                "tokens at each length (or BOOK's tokens, repeated to the length, with --text), and step\n"
                "mode over --step-tokens tokens (default 256). On a GPU it first times the selective scan\n"
                "alone and the note pool's sequential walk and walk by events on every layer (up to 64k).\n"
                "Without --checkpoint it uses random weights of the default small config (D=256, L=8, V=8192).\n"
                "--bf16: under bf16 autocast (CUDA); on the CPU, the matrix products in bf16 (oneDNN).\n"
                "--compare transformer: forward speed of MemMamba, Mamba-only, DeciMamba (Mamba-only with the\n"
                "default decimation) and a causal Transformer\n"
                "of the same width and depth (untraced, no LM head) per length, with their ratios; on a\n"
                "GPU under bf16 autocast, the Transformer on scaled_dot_product_attention, up to\n"
                "--transformer-max tokens (default 256k).\n\n%s",
                kModelOptionsHelp);
    return kOk;
  }
  // Without a model named, the default small config with random weights: speed does not
  // depend on what the weights learned.
  std::vector<std::string> model_argv = argv;
  if (!args.has("checkpoint") && !args.has("random-init")) model_argv.insert(model_argv.end(), {"--random-init", "0"});
  const Args model_args(model_argv, with(kModelOptions, {"lengths", "step-tokens", "seed", "compare", "text", "transformer-max"}), {"help", "no-trace", "no-memory", "bf16", "decimate"});
  check_model_flags(model_args);
  auto lm = std::make_unique<LoadedModel>(load_model(model_args));
  const auto lengths = args.get_int_list("lengths", {1024, 4096, 16384, 65536}, 16, 1 << 24);
  const int64_t step_tokens = args.get_int("step-tokens", 256, 0, 1 << 20);
  const bool cpu_bf16 = args.flag("bf16") && lm->model.device().is_cpu();
  if (cpu_bf16 && args.has("compare"))
    throw UsageError("--bf16 on the CPU times MemMamba's own runs: leave out --compare (it compares fp32 models)");
  if (args.has("compare")) {
    if (args.get("compare", "") != "transformer") throw UsageError("--compare takes \"transformer\"");
    const auto on_setup = [](const eval::SpeedComparisonSetup& s) {
      std::printf("forward, batch 1, %s, %s; Transformer: %lld parameters, attention: %s\n", s.device.c_str(),
                  s.bf16_autocast ? "bf16 autocast" : "fp32", static_cast<long long>(s.transformer_parameters),
                  s.transformer_uses_sdpa ? "scaled_dot_product_attention" : "blocked (no SDPA in this LibTorch)");
      std::printf("%9s %14s %16s %15s %17s %22s %22s %22s\n", "tokens", "MemMamba tok/s", "Mamba-only tok/s",
                  "DeciMamba tok/s", "Transformer tok/s", "MemMamba / Mamba-only", "MemMamba / DeciMamba",
                  "MemMamba / Transformer");
    };
    const auto on_row = [](const eval::SpeedComparisonRow& r) {
      char tf_speed[32] = "-", tf_ratio[32] = "-";
      if (r.transformer > 0) {
        std::snprintf(tf_speed, sizeof tf_speed, "%.0f", r.transformer);
        std::snprintf(tf_ratio, sizeof tf_ratio, "%.2f", r.memmamba / r.transformer);
      }
      std::printf("%9lld %14.0f %16.0f %15.0f %17s %22.2f %22.2f %22s\n", static_cast<long long>(r.tokens), r.memmamba,
                  r.mamba_only, r.decimamba, tf_speed, r.memmamba / r.mamba_only, r.memmamba / r.decimamba, tf_ratio);
      std::fflush(stdout);
    };
    eval::compare_forward_speed(lm->model, run_options(model_args, lm->model), lengths,
                                args.get_int("transformer-max", 262144, 1, 1 << 26), on_setup, on_row);
    return kOk;
  }
  const ModelConfig& c = lm->model.config();
  std::printf("model D=%lld L=%lld V=%lld K=%lld w=%lld, %lld parameters, device %s, %d threads%s\n",
              static_cast<long long>(c.d_model), static_cast<long long>(c.n_layers), static_cast<long long>(c.vocab_size),
              static_cast<long long>(c.pool_slots), static_cast<long long>(c.note_window),
              static_cast<long long>(parameter_count(c)), lm->model.device().str().c_str(), at::get_num_threads(),
              cpu_bf16 ? ", bf16 matrix products" : "");
  std::vector<int32_t> text_tokens;
  if (args.has("text")) {
    const std::string text = load_text_file(args.get("text", ""));
    text_tokens = load_tokenizer(args, c).encode(text).ids;
    if (text_tokens.empty()) throw TextError(args.get("text", "") + " gives no tokens");
    std::printf("tokens: %s (%zu tokens, repeated to each length)\n", args.get("text", "").c_str(), text_tokens.size());
  }
  std::printf("%-15s %9s %10s %12s %12s %12s %10s\n", "mode", "tokens", "seconds", "tokens/s", "us/token", "peak RSS MB",
              "scan GB/s");
  std::fflush(stdout);
  AutocastGuard autocast(args.flag("bf16") && lm->model.device().is_cuda());
  CpuBf16Projections bf16_products(cpu_bf16);
  run_benchmark(lm->model, run_options(args, lm->model), lengths, step_tokens, !args.flag("no-trace"), static_cast<uint64_t>(args.get_int("seed", 1, 0, INT64_MAX)),
                [](const BenchRow& r) {
                  std::printf("%-15s %9lld %10.4f %12.0f %12.4f %12.0f %10s  %s\n", r.mode.c_str(),
                              static_cast<long long>(r.tokens), r.seconds, r.tokens_per_second,
                              1e6 / r.tokens_per_second, r.peak_rss_mb,
                              r.bandwidth_gbs > 0 ? std::to_string(static_cast<int>(r.bandwidth_gbs)).c_str() : "-",
                              r.detail.c_str());
                  if (!r.profile.empty()) std::printf("%s", r.profile.c_str());
                  std::fflush(stdout);
                }, text_tokens);
  return kOk;
}

}  // namespace memmamba::cli
