// memmamba info, run and generate: what a checkpoint or trace holds, a text traced, a
// prompt continued.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "app/cli/cli_common.h"
#include "model/noted_strings.h"
#include "model/checkpoint.h"
#include "model/file_io.h"
#include "model/log.h"
#include "model/safetensors.h"
#include "model/text_input.h"

namespace memmamba::cli {

namespace {

void print_trace_summary(const Trace& t) {
  const int64_t T = t.length();
  std::printf("tokens            %lld\n", static_cast<long long>(T));
  double loss_sum = 0;
  int64_t loss_n = 0;
  for (float l : t.loss)
    if (std::isfinite(l)) { loss_sum += l; ++loss_n; }
  if (loss_n) std::printf("mean loss         %.4f nats (perplexity %.1f)\n", loss_sum / loss_n, std::exp(loss_sum / loss_n));
  std::printf("notes             %zu   pool events %zu\n", t.notes.size(), t.events.size());
  std::printf("run               %s\n", t.run_info.dump().c_str());
  std::printf("\nlayer  noted%%  triggered%%  mean I   notes  evictions  drops  attn rows  x-layer rows  mean log-decay\n");
  for (size_t l = 0; l < t.layers.size(); ++l) {
    const LayerTrace& lt = t.layers[l];
    int64_t noted = 0, trig = 0, notes = 0, evict = 0, drop = 0;
    double imp = 0, decay = 0;
    for (int64_t i = 0; i < T; ++i) {
      noted += (lt.flags[i] & kNoted) != 0;
      trig += (lt.flags[i] & kTriggered) != 0;
      imp += lt.importance[i];
      decay += lt.log_decay[i];
    }
    for (const NoteInfo& n : t.notes) notes += n.layer == static_cast<int32_t>(l);
    for (const PoolEvent& e : t.events) {
      if (e.layer != static_cast<int32_t>(l)) continue;
      evict += e.kind == 1;
      drop += e.kind == 2;
    }
    std::printf("%5zu  %6.2f  %10.2f  %6.3f  %6lld  %9lld  %5lld  %9zu  %12zu  %14.4f\n", l, 100.0 * noted / T,
                100.0 * trig / T, imp / T, static_cast<long long>(notes), static_cast<long long>(evict),
                static_cast<long long>(drop), lt.token_attention.rows(), lt.layer_attention.rows(), decay / T);
  }
}

}  // namespace

int cmd_info(const std::vector<std::string>& argv) {
  Args args(argv, {"top-noted"}, {"help"});
  if (args.flag("help") || args.positionals().size() != 1) {
    std::printf("usage: memmamba info FILE [--top-noted N]\n\nSummarises a checkpoint (config, parameters, dtypes) or a trace.\n"
                "  --top-noted N   for a trace: the N strings each layer notes most, with their counts, and how\n"
                "                  common the noted tokens are in the text against any token (medians)\n");
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string path = args.positionals()[0];
  SafetensorsFile f = SafetensorsFile::load(path);
  auto fmt = f.metadata().find("format");
  if (fmt != f.metadata().end() && fmt->second == "memmamba-trace") {
    Trace t = Trace::load(path);
    std::printf("trace             %s\n", path.c_str());
    std::printf("config            %s\n", t.config.dump().c_str());
    print_trace_summary(t);
    const int64_t top = args.get_int("top-noted", 0, 0, 100000);
    for (int l = 0; top > 0 && l < static_cast<int>(t.layers.size()); ++l) {
      std::printf("most noted, layer %d (%lld notes):", l, static_cast<long long>(noted_count(t, l)));
      for (const NotedString& n : most_noted_strings(t, l, static_cast<size_t>(top)))
        std::printf(" %s x%lld", n.text.c_str(), static_cast<long long>(n.count));
      std::printf("\n");
      const NoteRarity rarity = note_rarity(t, l);
      if (rarity.noted > 0)
        std::printf("  how common: a noted token occurs a median %g times in the text, any token %g\n", rarity.noted_median,
                    rarity.text_median);
    }
    return kOk;
  }
  if (args.has("top-noted")) throw UsageError("--top-noted needs a trace, not a checkpoint");
  Checkpoint ck = parse_checkpoint(read_file(path, uint64_t{1} << 34), path);
  std::printf("checkpoint        %s\n", path.c_str());
  std::printf("hash              %s\n", file_hash(path).c_str());
  std::printf("parameters        %lld\n", static_cast<long long>(parameter_count(ck.config)));
  std::printf("storage dtype     %s\n", dtype_name(f.tensors().begin()->second.dtype));
  std::printf("config\n%s\n", ck.config.to_json().dump(2).c_str());
  for (const auto& [k, v] : ck.metadata) std::printf("%-17s %s\n", k.c_str(), v.c_str());
  return kOk;
}

int cmd_run(const std::vector<std::string>& argv) {
  Args args(argv, with(kModelOptions, {"out", "topk", "detail-begin", "detail-end", "retention-sources", "retention-horizon", "max-tokens", "trace-budget-mb", "fidelity", "encoding", "edit"}),
            {"help", "no-memory", "decimate", "keep-boilerplate", "strip-markdown", "bf16"});
  if (args.flag("help") || args.positionals().size() != 1) {
    std::printf("usage: memmamba run TEXT_FILE --out TRACE [options]\n\n"
                "Tokenizes the text, runs the model in parallel mode with tracing, writes the trace\n"
                "(atomically: Ctrl-C or an error leave no partial file) and prints a summary.\n\n%s"
                "trace options:\n"
                "  --out FILE                 trace file to write (required)\n"
                "  --topk N                   attention entries kept per token (default 8)\n"
                "  --detail-begin/--detail-end P   attention rows only for tokens in [begin, end)\n"
                "  --retention-sources P,...  exact retention curves for these token positions\n"
                "  --retention-horizon N      length of those curves (default 4096)\n"
                "  --max-tokens N             stop after the first N tokens of the text\n"
                "  --trace-budget-mb N        bound the trace's memory (default 2048): fewer slots per\n"
                "                             attention row, then rows only for the last tokens\n"
                "  --fidelity N               also measure ETMF / ECLMF per layer on the first N tokens\n"
                "                             (kept in the trace; the Explorer's decay view draws them)\n"
                "  --bf16                     CPU: matrix products in bf16 (oneDNN, AMX where the CPU has\n"
                "                             it; faster, and the trace's figures move slightly)\n"
                "book options (TEXT_FILE may be text, Markdown, HTML, EPUB or PDF):\n"
                "  --encoding E               auto (default: a BOM, else UTF-8, else CP-1252), utf-8,\n"
                "                             utf-16le, utf-16be, latin-1 or cp1252\n"
                "  --keep-boilerplate         keep a Project Gutenberg file's licence header and footer\n"
                "  --strip-markdown           drop Markdown markup (headings stay as lines)\n"
                "memory edits:\n%s",
                kModelOptionsHelp, kEditHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string out = args.require("out");
  check_model_flags(args);
  const int64_t topk = args.get_int("topk", 8, 1, 4096);
  const int64_t detail_begin = args.get_int("detail-begin", 0, 0, INT64_MAX);
  const int64_t detail_end = args.get_int("detail-end", INT64_MAX, 0, INT64_MAX);
  const auto retention_sources = args.get_int_list("retention-sources", {}, 0, INT64_MAX);
  const int64_t retention_horizon = args.get_int("retention-horizon", 4096, 1, 1 << 24);
  const int64_t max_tokens = args.get_int("max-tokens", INT64_MAX, 1, INT64_MAX);
  const int64_t budget_mb = args.get_int("trace-budget-mb", 2048, 1, 1 << 24);
  const int64_t fidelity_tokens = args.get_int("fidelity", 0, 0, 1 << 20);
  BookOptions book_options;
  book_options.encoding = args.get("encoding", "auto");
  book_options.keep_boilerplate = args.flag("keep-boilerplate");
  book_options.strip_markdown = args.flag("strip-markdown");
  const BookText book_text = load_book(args.positionals()[0], book_options);
  memmamba::log::info(args.positionals()[0] + ": " + book_text.format + ", " + book_text.encoding +
            (book_text.boilerplate_removed ? ", Project Gutenberg boilerplate skipped" : "") + ", " +
            std::to_string(book_text.chapters.size()) + " chapters");
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  TraceJob job;
  job.options = run_options(args, lm.model);
  if (args.flag("bf16")) {
    if (!lm.model.device().is_cpu()) throw UsageError("--bf16 is for CPU runs (a GPU run keeps fp32 weights)");
    job.options.cpu_bf16_projections = true;
  }
  job.options.retention_sources = retention_sources;
  job.options.retention_horizon = retention_horizon;
  job.trace_options.attention_topk = static_cast<int32_t>(topk);
  job.trace_options.detail_begin = detail_begin;
  job.trace_options.detail_end = detail_end;
  job.max_tokens = max_tokens;
  job.trace_budget_bytes = static_cast<uint64_t>(budget_mb) << 20;
  job.text = book_text.text;
  job.book = book_text;
  job.source_file = args.positionals()[0];
  job.trace_file = out;
  job.edits_file = args.get("edit", "");
  job.fidelity_tokens = fidelity_tokens;
  ProgressBar bar("tracing");
  job.options.progress = [&](int64_t done, int64_t total) { return bar.update(done, total); };
  // The model's run alone is timed (not tokenizing, nor a fidelity measurement after it).
  using clock = std::chrono::steady_clock;
  clock::time_point run_begin = clock::now(), run_end{};
  job.stage = [&](TraceStage stage) {
    if (stage == TraceStage::Running) run_begin = clock::now();
    if (stage == TraceStage::Fidelity) run_end = clock::now();
  };
  Trace trace = trace_text(lm, tok, std::move(job));
  if (run_end == clock::time_point{}) run_end = clock::now();
  const double secs = std::chrono::duration<double>(run_end - run_begin).count();
  trace.save(out);
  std::printf("wrote %s (%.1f MB) in %.2f s, %.0f tokens/s\n", out.c_str(), trace.memory_bytes() / 1e6, secs,
              trace.length() / secs);
  print_trace_summary(trace);
  return kOk;
}

int cmd_generate(const std::vector<std::string>& argv) {
  Args args(argv, with(kModelOptions, {"prompt", "prompt-file", "max-new", "edit"}), {"help", "no-memory", "decimate"});
  if (args.flag("help") || (!args.has("prompt") && !args.has("prompt-file"))) {
    std::printf("usage: memmamba generate (--prompt TEXT | --prompt-file FILE) [--max-new N] [options]\n\n"
                "Runs the prompt in parallel mode, then generates greedily in step mode.\n\n%s"
                "  --max-new N           tokens to generate (default 32)\n%s",
                kModelOptionsHelp, kEditHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  check_model_flags(args);
  const int64_t max_new_checked = args.get_int("max-new", 32, 1, 1 << 20);
  (void)max_new_checked;
  const std::string prompt = args.has("prompt-file") ? load_text_file(args.get("prompt-file", ""))
                                                     : normalize_text(args.get("prompt", ""), "--prompt");
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  const int64_t max_new = args.get_int("max-new", 32, 1, 1 << 20);
  Encoding enc = tok.encode(prompt);
  std::vector<int64_t> ids(enc.ids.begin(), enc.ids.end());
  RunOptions o = run_options(args, lm.model);
  if (args.has("edit")) o.edits = load_edit_file(args.get("edit", ""), lm.model.config(), static_cast<int64_t>(ids.size()) + max_new);
  ProgressBar bar("prompt");
  o.progress = [&](int64_t done, int64_t total) { return bar.update(done, total); };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> out = generate_greedy(lm.model, ids, max_new, o, [](int64_t) { return g_interrupted.load(); });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<int32_t> out32(out.begin(), out.end());
  std::printf("%s\n", tok.decode(out32).c_str());
  std::fprintf(stderr, "%zu prompt tokens, %zu generated in %.2f s\n", ids.size(), out.size(), secs);
  return g_interrupted ? kInterrupted : kOk;
}

}  // namespace memmamba::cli
