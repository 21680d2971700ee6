// memmamba eval: passkey retrieval, perplexity by context, memory fidelity and noisy
// multi-document retrieval, each writing a result file.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <tuple>

#include "app/cli/cli_common.h"
#include "app/cli/launcher.h"
#include "model/eval/documents_eval.h"
#include "model/eval/fidelity.h"
#include "model/eval/passkey_eval.h"
#include "model/eval/passkey_grid.h"
#include "model/eval/perplexity.h"
#include "model/file_io.h"
#include "model/log.h"
#include "model/sample_files.h"
#include "model/text_input.h"

namespace memmamba::cli {

namespace {

// The default haystack and paragraphs of the evaluations: a bundled book outside every training
// shard of the bundled models (sample_data/MODEL_CARD.md).
constexpr const char* kEvaluationBook = "The-Adventures-of-Tom-Sawyer_74.txt";

std::vector<double> parse_depths(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    double v = -1;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || item.empty() || !(v >= 0.0 && v <= 1.0))
      throw UsageError("--depths: \"" + item + "\" is not a depth in [0, 1]");
    out.push_back(v);
  }
  if (out.empty()) throw UsageError("--depths needs at least one value");
  return out;
}

int cmd_eval_ppl(const std::vector<std::string>& argv) {
  Args args(argv, with_world_options(with(kModelOptions, {"lengths", "windows", "scored", "out"})), {"help", "no-memory", "decimate", "by-context"});
  if (args.flag("help") || args.positionals().size() != 2) {
    std::printf("usage: memmamba eval ppl BOOK.txt --out FILE.json [options]\n\n"
                "Perplexity by context length: up to --windows windows of each length from the book,\n"
                "the loss of the last --scored tokens of each; perplexity = exp(mean NLL).\n\n%s"
                "evaluation options:\n"
                "  --lengths 1k,2k,...  context lengths (default 1k,2k,4k,10k,20k,30k,40k,60k)\n"
                "  --windows N          windows per length (default 10)\n"
                "  --scored N           scored tokens at each window's end (default 100)\n"
                "  --by-context         also score the same tokens (the ends of the longest windows)\n"
                "                       after each length of context: rows that differ in context alone\n%s",
                kModelOptionsHelp, kWorldOptionsHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string out = args.require("out");
  check_model_flags(args);
  const WorldRequest world = world_request(args);
  if (world.local_copies > 1) return run_local_copies(world, "eval", argv);
  eval::PerplexityOptions o;
  o.lengths = args.get_int_list("lengths", o.lengths, 2, 1 << 24);
  o.windows = args.get_int("windows", 10, 1, 100000);
  o.scored = args.get_int("scored", 100, 1, 1 << 20);
  o.by_context = args.flag("by-context");
  for (int64_t L : o.lengths)
    if (L <= o.scored) throw UsageError("--lengths: " + std::to_string(L) + " is not longer than --scored " + std::to_string(o.scored));
  const std::string book = args.positionals()[1];
  const std::string text = load_text_file(book);
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  Encoding enc = tok.encode(text);
  o.run = run_options(args, lm.model);
  if (o.run.decimation.enabled() && o.run.decimation.protected_tail < o.scored + 1) {
    // The scored tokens are the window's answer: decimation never drops them, nor the token
    // before them, whose hidden state predicts the first.
    o.run.decimation.protected_tail = o.scored + 1;
    memmamba::log::info("decimation: the last " + std::to_string(o.scored + 1) + " tokens (the scored ones and the one before) are protected");
  }
  o.meta = model_identity(lm, tok);
  o.meta["book"] = book;
  const std::shared_ptr<World> joined = join_world(world, World::Backend::StoreOnly);
  o.world = joined.get();
  record_devices(o.world, world.cuda, o.meta);
  ProgressBar bar("perplexity", "windows");
  Json r = eval::perplexity_by_length(lm.model, enc.ids, o, job_progress(o.world, bar));
  if (r.is_null()) return kOk;  // another rank's share: rank 0 writes the result
  write_file_atomic(out, r.dump(1) + "\n");
  std::printf("%10s %8s %12s %10s\n", "length", "windows", "perplexity", "seconds");
  for (const Json& row : r.at("lengths").as_array())
    std::printf("%10lld %8lld %12.2f %10.2f\n", static_cast<long long>(row.at("length").as_int()),
                static_cast<long long>(row.at("windows").as_int()),
                row.at("perplexity").is_number() ? row.at("perplexity").as_double() : std::nan(""),
                row.at("seconds").as_double());
  if (!r.at("positions").as_array().empty()) {
    std::printf("by position, in the %lld-token windows:\n%10s %8s %12s\n",
                static_cast<long long>(r.at("positions_window_length").as_int()), "position", "windows", "perplexity");
    for (const Json& row : r.at("positions").as_array())
      std::printf("%10lld %8lld %12.2f\n", static_cast<long long>(row.at("position").as_int()),
                  static_cast<long long>(row.at("windows").as_int()), row.at("perplexity").as_double());
  }
  if (r.contains("by_context") && !r.at("by_context").as_array().empty()) {
    std::printf("the same tokens after each length of context:\n%10s %8s %12s\n", "context", "windows", "perplexity");
    for (const Json& row : r.at("by_context").as_array())
      std::printf("%10lld %8lld %12.2f\n", static_cast<long long>(row.at("context").as_int()),
                  static_cast<long long>(row.at("windows").as_int()), row.at("perplexity").as_double());
  }
  std::printf("wrote %s%s\n", out.c_str(), lm.trained ? "" : " (UNTRAINED random weights)");
  return kOk;
}

int cmd_eval_fidelity(const std::vector<std::string>& argv) {
  Args args(argv, with(kModelOptions, {"max-tokens", "out"}), {"help", "no-memory", "decimate"});
  if (args.flag("help") || args.positionals().size() != 2) {
    std::printf("usage: memmamba eval fidelity BOOK.txt --out FILE.json [--max-tokens N] [options]\n\n"
                "Memory fidelity (paper, appendix A.2) on the first N tokens of the book (default 4096):\n"
                "ETMF and ETMF_delta for delta 8, 16, 32; ECLMF for gaps 2, 5, 10 (null where the model\n"
                "has too few layers).\n\n%s",
                kModelOptionsHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string out = args.require("out");
  check_model_flags(args);
  const int64_t max_tokens = args.get_int("max-tokens", 4096, 64, 1 << 20);
  const std::string book = args.positionals()[1];
  const std::string text = load_text_file(book);
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  Encoding enc = tok.encode(text);
  if (static_cast<int64_t>(enc.ids.size()) > max_tokens) enc.ids.resize(max_tokens);
  eval::FidelityOptions o;
  o.run = run_options(args, lm.model);
  o.meta = model_identity(lm, tok);
  o.meta["book"] = book;
  Json r = eval::memory_fidelity(lm.model, enc.ids, o);
  write_file_atomic(out, r.dump(1) + "\n");
  std::printf("ETMF %.4f   ETMF_delta %s\nECLMF %s\nwrote %s%s\n", r.at("etmf").as_double(), r.at("etmf_delta").dump().c_str(),
              r.at("eclmf").dump().c_str(), out.c_str(), lm.trained ? "" : " (UNTRAINED random weights)");
  return kOk;
}

// Where the first answer token's read goes, per layer and noise level: the mean weight on the
// golden document's id, on the other ids and on the inserted fact.
void print_first_reads(const Json& result) {
  const auto& levels = result.at("levels").as_array();
  if (levels.empty() || !levels.front().contains("first_read_by_layer")) return;
  std::printf("\nthe first answer token's read, mean weight on the golden id / other ids / the fact:\n%6s", "layer");
  for (const Json& l : levels) std::printf("%20lld", static_cast<long long>(l.at("noise_documents").as_int()));
  std::printf("\n");
  const size_t layers = levels.front().at("first_read_by_layer").as_array().size();
  for (size_t layer = 0; layer < layers; ++layer) {
    std::printf("%6zu", layer);
    for (const Json& l : levels) {
      const Json& w = l.at("first_read_by_layer").as_array()[layer];
      std::printf("  %.2f / %.2f / %.2f", w.at("golden id").as_double(), w.at("other id").as_double(),
                  w.at("fact").as_double());
    }
    std::printf("\n");
  }
}

int cmd_eval_docs(const std::vector<std::string>& argv) {
  Args args(argv, with_world_options(with(kModelOptions, {"noise", "samples", "seed", "book", "out"})), {"help", "no-memory", "decimate"});
  if (args.flag("help") || args.positionals().size() != 1) {
    std::printf("usage: memmamba eval docs --out FILE.json [--noise 10,20,120,160,200] [--samples N] [options]\n\n"
                "Noisy multi-document retrieval in DeciMamba's format, built from book paragraphs with an\n"
                "inserted fact (SQuAD is not available): exact match of the golden document's id.\n\n%s"
                "  --book FILE   paragraphs (default: the bundled evaluation book, The Adventures of Tom Sawyer,\n"
                "                which no bundled model trained on)\n%s",
                kModelOptionsHelp, kWorldOptionsHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string out = args.require("out");
  check_model_flags(args);
  const WorldRequest world = world_request(args);
  if (world.local_copies > 1) return run_local_copies(world, "eval", argv);
  eval::DocumentGridOptions o;
  o.noise_levels = args.get_int_list("noise", o.noise_levels, 0, 999);
  o.samples = args.get_int("samples", 10, 1, 100000);
  o.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0, INT64_MAX));
  std::string book = args.get("book", "");
  if (book.empty()) book = find_sample_file(kEvaluationBook);
  if (book.empty()) throw UsageError("no bundled book found: pass --book FILE");
  eval::DocumentRetrievalGenerator generator(eval::split_paragraphs(load_text_file(book)));
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  o.run = run_options(args, lm.model);
  o.meta = model_identity(lm, tok);
  o.meta["book"] = book;
  const std::shared_ptr<World> joined = join_world(world, World::Backend::StoreOnly);
  o.world = joined.get();
  record_devices(o.world, world.cuda, o.meta);
  ProgressBar bar("documents", "cases");
  Json r = eval::run_document_grid(lm.model, tok, generator, o, job_progress(o.world, bar));
  if (r.is_null()) return kOk;  // another rank's share: rank 0 writes the result
  write_file_atomic(out, r.dump(1) + "\n");
  // The misses by kind: another document's id, the golden id cut short, no document's id at all.
  std::printf("%8s %8s %12s %15s %10s %15s\n", "noise", "samples", "exact match", "other document", "cut short",
              "no document id");
  for (const Json& l : r.at("levels").as_array())
    std::printf("%8lld %8lld %12.2f %15lld %10lld %15lld\n", static_cast<long long>(l.at("noise_documents").as_int()),
                static_cast<long long>(l.at("samples").as_int()), l.at("exact_match").as_double(),
                static_cast<long long>(l.at("other_document").as_int()), static_cast<long long>(l.at("golden_cut_short").as_int()),
                static_cast<long long>(l.at("no_document_id").as_int()));
  print_first_reads(r);
  const std::string breakdown = eval::grid_breakdown(r).describe();
  if (!breakdown.empty()) std::printf("%s\n", breakdown.c_str());
  std::printf("wrote %s%s\n", out.c_str(), lm.trained ? "" : " (UNTRAINED random weights)");
  return kOk;
}

// The task wordings, as `--wording` takes them.
int cmd_eval_wordings() {
  auto show = [](const char* title, const std::vector<eval::Wording>& wordings) {
    std::printf("%s\n", title);
    for (size_t i = 0; i < wordings.size(); ++i) {
      std::string needle = wordings[i].needle, question = wordings[i].question;
      for (std::string* t : {&needle, &question})
        for (size_t at = t->find('\n'); at != std::string::npos; at = t->find('\n')) t->replace(at, 1, " ");
      std::printf("  %zu %-9s needle: %s\n             question:%s\n", i, wordings[i].held_out ? "held-out" : "trained",
                  needle.c_str(), question.c_str());
    }
  };
  show("passkey wordings (eval passkey --wording):", eval::passkey_wordings());
  show("fact wordings (eval facts --wording):", eval::fact_wordings());
  return kOk;
}
}  // namespace

int cmd_eval(const std::vector<std::string>& argv) {
  if (!argv.empty() && argv[0] == "wordings") return cmd_eval_wordings();
  if (!argv.empty() && argv[0] == "ppl") return cmd_eval_ppl(argv);
  if (!argv.empty() && argv[0] == "docs") return cmd_eval_docs(argv);
  if (!argv.empty() && argv[0] == "fidelity") return cmd_eval_fidelity(argv);
  const std::set<std::string> options = with_world_options(with(kModelOptions, {"lengths", "depths", "samples", "seed", "haystack", "book", "max-new", "out",
                                                             "edit", "key-kind", "key-digits", "wording", "facts", "distractors", "look-alikes"}));
  Args args(argv, options, {"help", "no-memory", "decimate", "drop-key-notes"});
  const bool facts_task = args.positionals().size() == 1 && args.positionals()[0] == "facts";
  if (args.flag("help") || args.positionals().size() != 1 || (args.positionals()[0] != "passkey" && !facts_task)) {
    std::printf("usage: memmamba eval passkey --out PREFIX [options]\n"
                "       memmamba eval facts --out PREFIX [options]   (several labelled facts, one asked: --facts 4)\n"
                "       memmamba eval ppl BOOK.txt --out FILE.json [options]   (see eval ppl --help)\n"
                "       memmamba eval fidelity BOOK.txt --out FILE.json        (see eval fidelity --help)\n"
                "       memmamba eval docs --out FILE.json                     (see eval docs --help)\n\n"
                "Passkey retrieval (DeciMamba's format): for each length x depth, --samples prompts with a\n"
                "5-digit key hidden in book sentences (or the repeated filler), answered greedily in step\n"
                "mode. Writes PREFIX.json (every case: key token positions, the notes that held the key\n"
                "and when they entered and left each pool, the answer's slot attention) and PREFIX.csv.\n\n%s"
                "evaluation options:\n"
                "  --lengths 1k,2k,4k      prompt lengths in tokens (default 1k,2k,4k)\n"
                "  --depths 0,0.5,1        needle depths (default 0,0.25,0.5,0.75,1)\n"
                "  --samples N             cases per cell (default 2)\n"
                "  --seed N                (default 0)\n"
                "  --haystack book|filler  book sentences (default) or the Landmark filler\n"
                "  --book FILE             the haystack's book (default: the bundled evaluation book, The\n"
                "                          Adventures of Tom Sawyer, which no bundled model trained on)\n"
                "  --max-new N             answer tokens (default 10; a case always gets its key's length + 3)\n"
                "  --key-kind digits|word|name  what the key is (default digits)\n"
                "  --key-digits N|A-B      digits of a key (default 5; A-B draws the length per case)\n"
                "  --wording W             trained, held-out (never in training rows), all, or indices\n"
                "                          (default 0, the first wording; `memmamba eval wordings` lists them)\n"
                "  --facts N               labelled facts in the haystack, one asked (default 1; eval facts: 4)\n"
                "  --distractors N         sentences with other numbers of the key's length (default 0)\n"
                "  --look-alikes F         share of the other numbers (facts' values, distractors) that carry a\n"
                "                          run of the key's last 2-3 digits with digits after it (default 0)\n"
                "  --drop-key-notes        also answer each case with the notes made of the key's tokens\n"
                "                          never kept (every layer): did the notes carry the key?\n%s%s",
                kModelOptionsHelp, kEditHelp, kWorldOptionsHelp);
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string out = args.require("out");
  check_model_flags(args);
  const WorldRequest world = world_request(args);
  eval::PasskeyGridOptions grid;
  grid.lengths = args.get_int_list("lengths", grid.lengths, 64, 1 << 24);
  if (args.has("depths")) grid.depths = parse_depths(args.get("depths", ""));
  grid.samples = args.get_int("samples", 2, 1, 100000);
  grid.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0, INT64_MAX));
  grid.max_new_tokens = args.get_int("max-new", 10, 1, 256);
  // The case's kind; each bad value names its flag.
  auto flag_value = [&](const char* flag, const std::string& fallback, auto parse) {
    try {
      return parse(args.get(flag, fallback));
    } catch (const std::invalid_argument& e) {
      throw UsageError(std::string("--") + flag + ": " + e.what());
    }
  };
  grid.spec.facts = args.get_int("facts", facts_task ? 4 : 1, 1, 16);
  grid.spec.key_kind = flag_value("key-kind", "digits", eval::parse_key_kind);
  std::tie(grid.spec.key_digits_min, grid.spec.key_digits_max) = flag_value("key-digits", "5", eval::parse_key_digits);
  if (args.has("key-digits") && grid.spec.key_kind != eval::KeyKind::Digits)
    throw UsageError("--key-digits goes with --key-kind digits");
  grid.spec.wordings = flag_value("wording", "0", [&](const std::string& w) { return eval::parse_wordings(w, grid.spec.facts > 1); });
  grid.spec.distractors = args.get_int("distractors", 0, 0, 64);
  grid.spec.look_alikes = args.get_double("look-alikes", 0.0, 0.0, 1.0);
  if (grid.spec.look_alikes > 0 && grid.spec.key_kind != eval::KeyKind::Digits)
    throw UsageError("--look-alikes goes with --key-kind digits");
  if (grid.spec.look_alikes > 0 && grid.spec.facts < 2 && grid.spec.distractors == 0)
    throw UsageError("--look-alikes needs other numbers: --facts 2 or more, or --distractors");
  const std::string haystack = args.get("haystack", "book");
  if (haystack != "book" && haystack != "filler") throw UsageError("--haystack must be book or filler");
  std::string book = args.get("book", "");
  if (book.empty() && haystack == "book") {
    book = find_sample_file(kEvaluationBook);
    if (book.empty()) throw UsageError("no bundled book found: pass --book FILE");
  }
  // Every flag was checked above: the copies start only on a good command line.
  if (world.local_copies > 1) return run_local_copies(world, "eval", argv);
  const std::vector<std::string> sentences = haystack == "book" ? eval::split_sentences(load_text_file(book)) : std::vector<std::string>{};
  LoadedModel lm = load_model(args);
  Tokenizer tok = load_tokenizer(args, lm.model.config());
  eval::PasskeyGenerator generator(tok, sentences, haystack == "book" ? eval::Haystack::BookSentences : eval::Haystack::RepeatedFiller);
  grid.run = run_options(args, lm.model);
  if (args.has("edit")) grid.run.edits = load_edit_file(args.get("edit", ""), lm.model.config(), -1);
  grid.drop_key_notes = args.flag("drop-key-notes");
  if (grid.drop_key_notes && !lm.model.config().memory) throw UsageError("--drop-key-notes needs a model with memory");
  grid.meta = model_identity(lm, tok);
  grid.meta["haystack"] = haystack;
  grid.meta["book"] = book;
  grid.meta["task"] = facts_task ? "facts" : "passkey";
  const std::shared_ptr<World> joined = join_world(world, World::Backend::StoreOnly);
  grid.world = joined.get();
  record_devices(grid.world, world.cuda, grid.meta);
  ProgressBar bar(facts_task ? "facts" : "passkey", "cases");
  const auto t0 = std::chrono::steady_clock::now();
  Json results = eval::run_passkey_grid(lm.model, tok, generator, grid, job_progress(grid.world, bar));
  if (results.is_null()) return kOk;  // another rank's share: rank 0 writes the result
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  results["meta"]["wall_seconds"] = secs;
  write_file_atomic(out + ".json", results.dump(1) + "\n");
  write_file_atomic(out + ".csv", eval::passkey_results_csv(results));
  const auto& cells = results.at("cells").as_array();
  auto print_table = [&](const char* field) {  // lengths down, depths across
    std::printf("%10s", "length");
    for (double d : grid.depths) std::printf("  %5.2f", d);
    std::printf("\n");
    size_t k = 0;
    for (int64_t length : grid.lengths) {
      std::printf("%10lld", static_cast<long long>(length));
      for (size_t d = 0; d < grid.depths.size(); ++d) std::printf("  %5.2f", cells[k++].at(field).as_double());
      std::printf("\n");
    }
  };
  std::printf("%s\n", grid.spec.describe().c_str());
  std::printf("accuracy (%lld samples per cell; %s)\n", static_cast<long long>(grid.samples),
              lm.trained ? "trained model" : "UNTRAINED random weights: expect ~0");
  print_table("accuracy");
  std::printf("key digits in place (share, partial credit)\n");
  print_table("digit_accuracy");
  if (grid.drop_key_notes && !cells.empty() && cells[0].contains("accuracy_notes_dropped")) {
    std::printf("accuracy with the key's notes dropped (every layer)\n");
    print_table("accuracy_notes_dropped");
  }
  const std::string breakdown = eval::grid_breakdown(results).describe();
  if (!breakdown.empty()) std::printf("%s\n", breakdown.c_str());
  std::printf("wrote %s.json and %s.csv in %.1f s\n", out.c_str(), out.c_str(), secs);
  return kOk;
}

}  // namespace memmamba::cli
