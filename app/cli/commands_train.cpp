// memmamba tokenizer-train, data, train, convert and init: making tokenizers, shards and
// checkpoints.
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <filesystem>
#include <iterator>
#include <string>
#include <vector>

#include "app/cli/cli_common.h"
#include "app/cli/launcher.h"
#include "model/checkpoint.h"
#include "model/eval/retrieval_case.h"
#include "model/safetensors.h"
#include "model/sample_files.h"
#include "model/text_input.h"
#include "model/train/token_shards.h"
#include "model/train/trainer.h"

namespace fs = std::filesystem;

namespace memmamba::cli {

namespace {

// A checkpoint's storage type from --dtype.
DType storage_dtype(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "bf16") return DType::BF16;
  if (name == "f16") return DType::F16;
  throw UsageError("--dtype must be f32, bf16 or f16, not \"" + name + "\"");
}

// The --case-mix names (training_case_spec), and those whose rows have labelled facts.
const std::vector<std::string> kCaseMixes{"all", "passkey", "composed", "facts", "composed-facts", "composed-all", "composed-any"};
bool mix_has_facts(const std::string& mix) { return mix != "passkey" && mix != "composed"; }

// "a, b or c"
std::string spoken_list(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  return out;
}

}  // namespace

int cmd_tokenizer_train(const std::vector<std::string>& argv) {
  Args args(argv, {"out", "vocab", "max-sentences"}, {"help"});
  if (args.flag("help") || args.positionals().empty()) {
    std::printf("usage: memmamba tokenizer-train --out PREFIX [--vocab 8192] FILE_OR_DIR...\n\n"
                "Trains a SentencePiece unigram tokenizer (digits split, byte fallback) on the given\n"
                "UTF-8 text files (directories: every .txt inside); writes PREFIX.model and PREFIX.vocab.\n");
    return args.flag("help") ? kOk : kUsage;
  }
  std::vector<std::string> files;
  for (const std::string& p : args.positionals()) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (const auto& e : fs::directory_iterator(p))
        if (e.is_regular_file() && e.path().extension() == ".txt") files.push_back(e.path().string());
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) load_text_file(f);  // refuse bad inputs with a clear message first
  Tokenizer::train(files, args.require("out"), args.get_int("vocab", 8192, 64, 65535),
                   args.get_int("max-sentences", 2000000, 1000, 100000000));
  std::printf("wrote %s.model and %s.vocab from %zu files\n", args.require("out").c_str(), args.require("out").c_str(), files.size());
  return kOk;
}


int cmd_convert(const std::vector<std::string>& argv) {
  Args args(argv, {"dtype", "fusion-gain", "tau-note", "tau-retrieve"}, {"help"});
  if (args.flag("help") || args.positionals().size() != 2) {
    std::printf("usage: memmamba convert IN.safetensors OUT.safetensors [--dtype bf16|f16|f32] [--fusion-gain X]\n"
                "                        [--tau-note X] [--tau-retrieve X]\n\n"
                "Rewrites a checkpoint with its tensors stored as --dtype (default bf16), keeping its metadata;\n"
                "--fusion-gain sets the config's default loudness of the memory's read-out (0 to 100),\n"
                "--tau-note and --tau-retrieve its default note and retrieval thresholds (-1 to 2).\n");
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string dtype = args.get("dtype", "bf16");
  const DType storage = storage_dtype(dtype);
  const std::string in = args.positionals()[0], out = args.positionals()[1];
  if (fs::exists(out) && fs::equivalent(in, out)) throw UsageError("OUT must differ from IN");
  const double gain = args.get_double("fusion-gain", 1.0, 0.0, 100.0);
  Checkpoint ck = load_checkpoint(in);
  if (args.has("fusion-gain")) {
    if (!ck.config.memory) throw UsageError("--fusion-gain: " + in + " is a Mamba-only model (no memory to fuse)");
    ck.config.fusion_gain = gain;
  }
  if (args.has("tau-note") || args.has("tau-retrieve")) {
    if (!ck.config.memory) throw UsageError("--tau-note, --tau-retrieve: " + in + " is a Mamba-only model (no memory)");
    if (args.has("tau-note")) ck.config.tau_note = args.get_double("tau-note", 0.5, -1.0, 2.0);
    if (args.has("tau-retrieve")) ck.config.tau_retrieve = args.get_double("tau-retrieve", 0.5, -1.0, 2.0);
  }
  save_checkpoint(out, ck.config, ck.weights, storage, ck.metadata);
  std::printf("wrote %s (%s)\n", out.c_str(), dtype.c_str());
  return kOk;
}

int cmd_init(const std::vector<std::string>& argv) {
  Args args(argv, {"config", "seed", "dtype", "context-taps"}, {"help"});
  if (args.flag("help") || args.positionals().size() != 1) {
    std::printf("usage: memmamba init OUT.safetensors [--config FILE] [--seed 0] [--dtype f32|bf16|f16]\n"
                "                     [--context-taps X]\n\n"
                "Writes untrained random weights of the config (default: the small model), e.g. a\n"
                "starting point for `memmamba train --init` or a small checkpoint for tests.\n"
                "  --context-taps X  for a config with memory_context > 1: the context mix's weight on\n"
                "                    each earlier token (default 0, the token alone; docs/model.md, C1)\n");
    return args.flag("help") ? kOk : kUsage;
  }
  const std::string dtype = args.get("dtype", "f32");
  const DType storage = storage_dtype(dtype);
  const ModelConfig config = args.has("config") ? ModelConfig::load(args.get("config", "")) : ModelConfig{};
  const int64_t seed = args.get_int("seed", 0, 0, INT64_MAX);
  const double earlier_taps = args.get_double("context-taps", 0.0, -10.0, 10.0);
  if (args.has("context-taps") && (!config.memory || config.memory_context < 2))
    throw UsageError("--context-taps needs a config with the memory and memory_context of 2 or more");
  MemMambaModel model = MemMambaModel::random(config, static_cast<uint64_t>(seed));
  if (args.has("context-taps")) set_earlier_context_taps(model.mutable_weights(), config, earlier_taps);
  const std::string out = args.positionals()[0];
  save_checkpoint(out, model.config(), model.weights(), storage,
                  {{"description", "untrained random weights (memmamba init, seed " + std::to_string(seed) + ")"}});
  std::printf("wrote %s (%s, untrained)\n", out.c_str(), dtype.c_str());
  return kOk;
}

int cmd_data(const std::vector<std::string>& argv) {
  Args args(argv, {"out", "tokenizer", "heldout", "seed", "hold-out"}, {"help"});
  if (args.flag("help") || args.positionals().size() != 1) {
    std::string names;
    for (const std::string& n : evaluation_books()) names += "\n    " + n;
    std::printf("usage: memmamba data BOOKS_DIR --out DIR [--tokenizer T] [--hold-out NAMES] [--heldout 0] [--seed 0]\n\n"
                "Tokenizes every .txt book into DIR/train.tokens and DIR/heldout.tokens (uint16 ids) and\n"
                "writes DIR/manifest.json naming the books of each split. Kept out of training:\n"
                "  --hold-out NAMES  comma-separated file names (default: the sample and evaluation books:%s)\n"
                "  --heldout N       N more books, chosen by a seeded hash of their names (default 0)\n",
                names.c_str());
    return args.flag("help") ? kOk : kUsage;
  }
  std::string tok_path = args.get("tokenizer", "");
  if (tok_path.empty()) tok_path = find_sample_file("tokenizer.model");
  if (tok_path.empty()) throw UsageError("no tokenizer given and none bundled: pass --tokenizer FILE");
  Tokenizer tok = Tokenizer::load(tok_path);
  DataSplitOptions o;
  o.heldout_books = args.get_int("heldout", 0, 0, 100000);
  if (args.has("hold-out")) {
    o.held_out_names.clear();
    std::stringstream list(args.get("hold-out", ""));
    for (std::string name; std::getline(list, name, ',');)
      if (!name.empty()) o.held_out_names.push_back(name);
  }
  o.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0, INT64_MAX));
  const std::string out = args.require("out");
  Json m = build_token_shards(tok, args.positionals()[0], out, o, [](const std::string& book, int64_t done, int64_t total) {
    std::fprintf(stderr, "\r[%lld/%lld] %-60s", static_cast<long long>(done + 1), static_cast<long long>(total), book.c_str());
  });
  std::fprintf(stderr, "\n");
  std::printf("wrote %s: %lld training tokens (%zu books), %lld held-out tokens (%zu books)\n", out.c_str(),
              static_cast<long long>(m.at("train_tokens").as_int()), m.at("train_books").as_array().size(),
              static_cast<long long>(m.at("heldout_tokens").as_int()), m.at("heldout_books").as_array().size());
  return kOk;
}

int cmd_train(const std::vector<std::string>& argv) {
  const std::set<std::string> options = with_world_options({"data", "out", "config", "device", "seq-len", "batch", "accumulation", "steps", "lr", "warmup",
                   "schedule", "weight-decay", "clip", "seed", "eval-every", "eval-batches", "checkpoint-every",
                   "passkey-fraction", "tokenizer", "init", "haystack", "tau-note", "init-backbone",
                   "tau-retrieve", "retrieval-loss", "answer-loss", "note-loss", "answer-end",
                   "passkey-min-length", "blind-needles", "blind-margin", "document-rows", "case-mix", "key-digits", "bucket-mb",
                   "surprise-notes", "surprise-share", "surprise-band",
                   "note-margin", "choice-weight", "quiet-notes", "reference-marks", "look-alikes", "end-weight"});
  Args args(argv, options, {"help", "resume", "fp32", "mamba-only", "freeze-fusion", "varied-cases", "note-key-end", "teach-after-end",
                                         "follow-up-questions", "document-reads", "blind-every-fact"});
  if (args.flag("help")) {
    std::printf("usage: memmamba train --data DIR --out DIR [options]\n\n"
                "Trains on DIR/train.tokens (from `memmamba data`), evaluating on DIR/heldout.tokens.\n"
                "Writes OUT/model.safetensors, OUT/train-state.safetensors and OUT/metrics.csv.\n\n"
                "  --config FILE         model config (default: the small config); --mamba-only: memory off\n"
                "  --device cpu|cuda     (default cpu); bf16 autocast on CUDA unless --fp32\n"
                "  --seq-len 1024 --batch 8 --accumulation 1 --steps 1000\n"
                "  --lr 1e-3 --warmup 100 --schedule cosine|constant --weight-decay 0.1 --clip 1.0\n"
                "  --eval-every 200 --eval-batches 4 --checkpoint-every 500 --seed 0\n"
                "  --passkey-fraction 0.25  share of sequences that are passkey examples (--tokenizer for\n"
                "                        their tokens)\n"
                "  --haystack shard|book|filler  passkey haystacks: sentences of the training shard (default),\n"
                "                        of the bundled sample books (held out from training: avoid), or the filler\n"
                "  --varied-cases        passkey rows of many kinds: the trained wordings, keys of 3-10 digits,\n"
                "                        words and names, 1-8 labelled facts, distractor numbers (default: the\n"
                "                        first wording and 5-digit keys)\n"
                "  --case-mix all|passkey|composed|facts|composed-facts|composed-all|composed-any\n"
                "                        with --varied-cases:\n"
                "                        the whole mix (default), single digit keys of 3-10 digits in the trained\n"
                "                        wordings, the same keys in wordings put together from parts (no two rows\n"
                "                        need share one), keys with 2-6 labelled facts in half the rows, that mix\n"
                "                        with its single keys in composed wordings, or that with half its rows\n"
                "                        with labelled facts in composed fact wordings too, or that with words and\n"
                "                        names as keys and up to 8 facts\n"
                "  --key-digits A-B      with --varied-cases: digits of the digit keys (default 3-10)\n"
                "  --follow-up-questions with --varied-cases: rows with labelled facts ask every fact, each\n"
                "                        answered (the asked one first, the others in a random order)\n"
                "  --document-rows F     share of the passkey rows that are multi-document retrieval rows in\n"
                "                        DeciMamba's format (`eval docs`), from the haystack text (default 0)\n"
                "  --document-reads      with --document-rows: the answer's id pieces read the golden header's\n"
                "                        id or the golden fact's note (the memory's losses see document rows)\n"
                "  --passkey-min-length N  shortest passkey example in tokens (default min(256, seq-len / 2));\n"
                "                        lengths are uniform from N to the row, depths uniform\n"
                "  --tau-note X          with --init: train with this note threshold tau1 (saved in the config)\n"
                "  --tau-retrieve X      with --init: train with this retrieval threshold tau2 (saved in the config)\n"
                "  --init-backbone M     with --init: take M's tensors of the same names (e.g. a Mamba's mixers)\n"
                "  --retrieval-loss W    weight of the retrieval loss (memory models, passkey rows): each answer\n"
                "                        piece of the key is taught to attend to that piece's note (default 0)\n"
                "  --answer-loss W       weight of an extra cross-entropy on the passkey answers' key pieces and\n"
                "                        the piece after the key, where the answer stops (default 0)\n"
                "  --answer-end TEXT     what follows the key in a passkey row (default \".\")\n"
                "  --note-loss W         weight of the selection loss: the needle's key tokens are taught to clear\n"
                "                        the note threshold in every layer (memory models, default 0)\n"
                "  --choice-weight W     in rows with labelled facts, how much more each answer's first piece,\n"
                "                        the one that chooses a value by its label, counts in the retrieval and\n"
                "                        answer losses' means (default 1)\n"
                "  --end-weight W        how much each answer's end, the piece after the key where it stops, counts\n"
                "                        in the answer loss against a key piece (default 1; with --note-key-end the\n"
                "                        end is a read target and counts as a key piece)\n"
                "  --note-margin X       how far above tau1 the selection loss lifts a key's importance, its\n"
                "                        priority in the pool (default 0.05)\n"
                "  --surprise-notes W    weight of the surprise selection loss, on every row: the tokens the model\n"
                "                        found hardest to predict are taught to be noted and the easy ones not, so\n"
                "                        a book's pools fill with names, numbers and rare words (memory models)\n"
                "  --surprise-band X     their importance is taught to lie from tau1 + 0.01 to tau1 + X (default\n"
                "                        0.05): a note's priority, kept below keys taught a larger --note-margin\n"
                "  --surprise-share F    share of each row's tokens that are those targets (default 0.01)\n"
                "  --quiet-notes W       weight of the quiet loss, on every row: the tokens that neither the\n"
                "                        selection nor the surprise loss asks to be noted are taught to stay\n"
                "                        under tau1, which bounds a learned note rule's note rate (memory models)\n"
                "  --reference-marks R   about R reference marks (footnote, verse, page and chapter numbers:\n"
                "                        \"poetry.(3)\") per 1,000 haystack tokens of passkey rows; with\n"
                "                        --quiet-notes their digits are taught to stay under tau1 (default 0)\n"
                "  --look-alikes F       share of a passkey row's other numbers (other facts' values, distractors)\n"
                "                        that carry a run of the key's last 2-3 digits with digits after it, so\n"
                "                        that an answer running on from matching digits is taught wrong (default 0)\n"
                "  --teach-after-end     what follows each answer's stop is taught too: the piece after it (the\n"
                "                        next follow-up question's first word) joins the answer loss\n"
                "  --note-key-end        the answer's end is read from a note: the needle's piece after each key\n"
                "                        copy is a selection and retrieval target where the answer stops\n"
                "  --freeze-fusion       hold the memory's fusion scales (its read-out's loudness) as loaded\n"
                "  --blind-needles F     share of passkey rows whose key the SSM does not see (its step size is 0\n"
                "                        from the key to --blind-margin tokens past its second copy): the key\n"
                "                        reaches the answer through the notes alone, as from far beyond the\n"
                "                        SSM's horizon (default 0)\n"
                "  --blind-margin N      tokens hidden past the key (default (conv_kernel - 1) x layers)\n"
                "  --blind-every-fact    with --blind-needles: a blind row with labelled facts hides every fact's\n"
                "                        value from the SSM, not only the asked one's, as a context past the\n"
                "                        SSM's horizon does\n"
                "  --resume              continue OUT's run from its last checkpoint, bit for bit\n"
                "  --init CHECKPOINT     start from a checkpoint's weights and config (fine-tuning)\n"
                "Ctrl-C stops after saving a checkpoint.\n\n%s"
                "  --bucket-mb 25        with several ranks: gradients are summed in buckets of this size, each\n"
                "                        while the backward pass goes on (smaller: more overlap, more calls)\n"
                "  With several ranks --batch is the global batch: each rank takes batch / accumulation / ranks rows\n"
                "  of every micro-batch, so a run resumes on any number of GPUs with the same data.\n",
                kWorldOptionsHelp);
    return kOk;
  }
  // Before anything starts CUDA: a rank sees only its own GPU.
  const WorldRequest world = world_request(args);
  TrainOptions o;
  o.data_dir = args.require("data");
  o.out_dir = args.require("out");
  if (args.has("config")) o.config = ModelConfig::load(args.get("config", ""));
  if (args.flag("mamba-only")) o.config.memory = false;
  o.config.validate();
  o.cuda = parse_device(args.get("device", "cpu")).is_cuda();
  o.bf16 = !args.flag("fp32");
  o.resume = args.flag("resume");
  o.freeze_fusion_scales = args.flag("freeze-fusion");
  o.init_checkpoint = args.get("init", "");
  if (!o.init_checkpoint.empty() && o.resume) throw UsageError("give --init or --resume, not both");
  if (!o.init_checkpoint.empty() && (args.has("config") || args.flag("mamba-only")))
    throw UsageError("--init takes the checkpoint's config: drop --config and --mamba-only");
  o.seq_len = args.get_int("seq-len", o.seq_len, 8, 1 << 22);
  o.batch = args.get_int("batch", o.batch, 1, 1 << 16);
  o.accumulation = args.get_int("accumulation", o.accumulation, 1, 1 << 16);
  if (o.batch % o.accumulation != 0) throw UsageError("--batch must be a multiple of --accumulation");
  o.steps = args.get_int("steps", o.steps, 1, int64_t{1} << 40);
  o.lr = args.get_double("lr", o.lr, 1e-7, 1.0);
  o.warmup = args.get_int("warmup", o.warmup, 0, int64_t{1} << 40);
  const std::string schedule = args.get("schedule", "cosine");
  if (schedule != "cosine" && schedule != "constant") throw UsageError("--schedule must be cosine or constant");
  o.cosine = schedule == "cosine";
  o.weight_decay = args.get_double("weight-decay", o.weight_decay, 0.0, 10.0);
  o.clip = args.get_double("clip", o.clip, 1e-6, 1e6);
  o.seed = static_cast<uint64_t>(args.get_int("seed", 0, 0, INT64_MAX));
  o.eval_every = args.get_int("eval-every", o.eval_every, 0, int64_t{1} << 40);
  o.eval_batches = args.get_int("eval-batches", o.eval_batches, 1, 1 << 20);
  o.checkpoint_every = args.get_int("checkpoint-every", o.checkpoint_every, 0, int64_t{1} << 40);
  o.passkey_fraction = args.get_double("passkey-fraction", o.passkey_fraction, 0.0, 1.0);
  if (o.passkey_fraction > 0) {
    o.passkey_tokenizer = args.get("tokenizer", "");
    if (o.passkey_tokenizer.empty()) o.passkey_tokenizer = find_sample_file("tokenizer.model");
    if (o.passkey_tokenizer.empty()) throw UsageError("passkey examples need --tokenizer");
    const std::string haystack = args.get("haystack", "shard");
    if (haystack != "shard" && haystack != "book" && haystack != "filler")
      throw UsageError("--haystack must be shard, book or filler");
    o.passkey_shard_haystack = haystack == "shard";
    o.varied_cases = args.flag("varied-cases");
    o.case_mix = args.get("case-mix", "all");
    if (std::find(kCaseMixes.begin(), kCaseMixes.end(), o.case_mix) == kCaseMixes.end())
      throw UsageError("--case-mix must be " + spoken_list(kCaseMixes));
    if (args.has("case-mix") && !o.varied_cases) throw UsageError("--case-mix goes with --varied-cases");
    if (args.flag("follow-up-questions")) {
      if (!o.varied_cases) throw UsageError("--follow-up-questions goes with --varied-cases");
      o.follow_up_questions = true;
    }
    if (args.has("key-digits")) {
      if (!o.varied_cases) throw UsageError("--key-digits goes with --varied-cases");
      try {
        o.key_digits = eval::parse_key_digits(args.get("key-digits", ""));
      } catch (const std::invalid_argument& e) {
        throw UsageError(std::string("--key-digits: ") + e.what());
      }
    }
    if (haystack == "book")
      for (const char* book : {"The-Time-Machine_35.txt", "Alice-s-Adventures-in-Wonderland_11.txt"}) {
        const std::string p = find_sample_file(book);
        if (!p.empty()) o.passkey_books.push_back(p);
      }
  }
  if (args.has("reference-marks")) {
    if (o.passkey_fraction <= 0) throw UsageError("--reference-marks needs passkey rows (--passkey-fraction > 0)");
    o.reference_marks = args.get_double("reference-marks", 0.0, 0.0, 50.0);
  }
  if (args.has("look-alikes")) {
    if (o.passkey_fraction <= 0) throw UsageError("--look-alikes needs passkey rows (--passkey-fraction > 0)");
    o.look_alikes = args.get_double("look-alikes", 0.0, 0.0, 1.0);
  }
  if (args.flag("teach-after-end")) {
    if (!args.flag("follow-up-questions"))
      throw UsageError("--teach-after-end needs --follow-up-questions (only a follow-up question comes after an answer)");
    o.teach_after_end = true;
  }
  if (args.flag("note-key-end")) {
    if (o.passkey_fraction <= 0) throw UsageError("--note-key-end needs passkey rows (--passkey-fraction > 0)");
    o.note_key_end = true;
  }
  if (args.flag("varied-cases") && o.passkey_fraction <= 0) throw UsageError("--varied-cases needs passkey rows (--passkey-fraction > 0)");
  if (args.flag("follow-up-questions") && o.passkey_fraction <= 0)
    throw UsageError("--follow-up-questions needs passkey rows (--passkey-fraction > 0)");
  if (args.has("passkey-min-length")) {
    if (o.passkey_fraction <= 0) throw UsageError("--passkey-min-length needs passkey rows (--passkey-fraction > 0)");
    if (o.seq_len < 128) throw UsageError("--passkey-min-length: rows of fewer than 128 tokens hold no passkey example");
    o.passkey_min_tokens = args.get_int("passkey-min-length", 256, 64, o.seq_len - 24);
  }
  if (args.has("blind-needles") || args.has("blind-margin")) {
    if (o.passkey_fraction <= 0) throw UsageError("--blind-needles needs passkey rows (--passkey-fraction > 0)");
    o.blind_needle_fraction = args.get_double("blind-needles", 1.0, 0.0, 1.0);
    o.blind_needle_margin = args.get_int("blind-margin", -1, 0, 1 << 20);
  }
  if (args.flag("blind-every-fact")) {
    if (o.blind_needle_fraction <= 0) throw UsageError("--blind-every-fact needs blind needles (--blind-needles > 0)");
    o.blind_every_fact = true;
  }
  if (args.has("document-rows")) {
    if (o.passkey_fraction <= 0) throw UsageError("--document-rows needs passkey rows (--passkey-fraction > 0)");
    if (o.seq_len < 128) throw UsageError("--document-rows: rows of fewer than 128 tokens hold no document example");
    o.document_fraction = args.get_double("document-rows", 0.25, 0.0, 1.0);
  }
  if (args.flag("document-reads")) {
    if (o.document_fraction <= 0) throw UsageError("--document-reads goes with --document-rows F (F > 0)");
    o.document_reads = true;
  }
  if (args.has("answer-end")) {
    o.passkey_answer_end = args.get("answer-end", ".");
    if (o.passkey_answer_end.empty() || o.passkey_answer_end.size() > 200 ||
        std::isdigit(static_cast<unsigned char>(o.passkey_answer_end[0])))
      throw UsageError("--answer-end must be 1 to 200 characters that do not begin with a digit (it follows the key)");
  }
  if (args.has("init-backbone")) {
    if (o.init_checkpoint.empty()) throw UsageError("--init-backbone goes with --init");
    o.init_backbone = args.get("init-backbone", "");
  }
  if (args.has("tau-note")) {
    if (o.init_checkpoint.empty()) throw UsageError("--tau-note goes with --init (a fresh model takes tau_note from --config)");
    o.init_tau_note = args.get_double("tau-note", 0.3, -1.0, 2.0);
  }
  if (args.has("tau-retrieve")) {
    if (o.init_checkpoint.empty()) throw UsageError("--tau-retrieve goes with --init (a fresh model takes tau_retrieve from --config)");
    o.init_tau_retrieve = args.get_double("tau-retrieve", 0.5, -1.0, 2.0);
  }
  o.gradient_bucket_bytes = static_cast<int64_t>(args.get_double("bucket-mb", 25.0, 0.001, 4096.0) * (1 << 20));
  o.retrieval_loss_weight = args.get_double("retrieval-loss", 0.0, 0.0, 1e3);
  o.answer_loss_weight = args.get_double("answer-loss", 0.0, 0.0, 1e3);
  o.note_loss_weight = args.get_double("note-loss", 0.0, 0.0, 1e3);
  o.note_loss_margin = args.get_double("note-margin", 0.05, 0.0, 1.0);
  o.choice_weight = args.get_double("choice-weight", 1.0, 1.0, 1e3);
  if (args.has("choice-weight") && !(o.varied_cases && mix_has_facts(o.case_mix))) {
    std::vector<std::string> with_facts;
    std::copy_if(kCaseMixes.begin(), kCaseMixes.end(), std::back_inserter(with_facts), mix_has_facts);
    throw UsageError("--choice-weight needs rows with labelled facts (--varied-cases with --case-mix " +
                     spoken_list(with_facts) + ")");
  }
  o.answer_end_weight = args.get_double("end-weight", 1.0, 0.01, 1e3);
  if (args.has("end-weight") && o.answer_loss_weight <= 0) throw UsageError("--end-weight weighs the answer loss: give --answer-loss");
  if (o.teach_after_end && o.answer_loss_weight <= 0) throw UsageError("--teach-after-end teaches the answer loss: give --answer-loss");
  if (args.has("choice-weight") && o.retrieval_loss_weight <= 0 && o.answer_loss_weight <= 0)
    throw UsageError("--choice-weight weighs the retrieval and answer losses: give --retrieval-loss or --answer-loss");
  o.surprise_note_weight = args.get_double("surprise-notes", 0.0, 0.0, 1e3);
  o.surprise_note_share = args.get_double("surprise-share", 0.01, 1e-4, 0.5);
  o.surprise_note_band = args.get_double("surprise-band", 0.05, 0.02, 1.0);
  if ((args.has("surprise-share") || args.has("surprise-band")) && o.surprise_note_weight <= 0)
    throw UsageError("--surprise-share and --surprise-band go with --surprise-notes W");
  o.quiet_note_weight = args.get_double("quiet-notes", 0.0, 0.0, 1e3);
  if (args.flag("mamba-only") && (o.quiet_note_weight > 0 || o.surprise_note_weight > 0))
    throw UsageError("--surprise-notes and --quiet-notes teach the memory's note rule: drop --mamba-only");
  if (args.has("note-margin") && o.note_loss_weight <= 0) throw UsageError("--note-margin goes with --note-loss W");
  if ((o.retrieval_loss_weight > 0 || o.answer_loss_weight > 0 || o.note_loss_weight > 0) && o.passkey_fraction <= 0)
    throw UsageError("--retrieval-loss, --answer-loss and --note-loss need passkey rows (--passkey-fraction > 0)");
  const int ranks = world.join ? world.join->size : world.local_copies;
  if ((o.batch / o.accumulation) % ranks != 0)
    throw UsageError("with " + std::to_string(ranks) + " ranks, --batch / --accumulation (" +
                     std::to_string(o.batch / o.accumulation) + " rows a micro-batch) must split evenly over them");
  // Every flag was checked above: the copies start only on a good command line.
  if (world.local_copies > 1) return run_local_copies(world, "train", argv);
  o.world = join_world(world, o.cuda ? World::Backend::Nccl : World::Backend::Gloo);
  const bool leader = !o.world || o.world->leader();
  const int64_t last = train_model(o, [](const TrainProgress& p) {
    std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.2e  |g| %.2f  %.0f tok/s", static_cast<long long>(p.step),
                 static_cast<long long>(p.steps), p.loss, p.lr, p.grad_norm, p.tokens_per_second);
    if (!std::isnan(p.answer_loss)) std::fprintf(stderr, "  answer %.3f", p.answer_loss);
    if (!std::isnan(p.note_loss)) std::fprintf(stderr, "  selection %.3f  key noted %.2f", p.note_loss, p.key_noted);
    if (!std::isnan(p.surprise_loss))
      std::fprintf(stderr, "  surprise %.3f  noted: surprising %.3f  predictable %.4f", p.surprise_loss, p.surprising_noted,
                   p.predictable_noted);
    if (!std::isnan(p.retrieval_loss))
      std::fprintf(stderr, "  retrieval %.3f  key attention %.3f  coverage %.2f", p.retrieval_loss, p.key_attention,
                   p.retrieval_coverage);
    if (!std::isnan(p.choice_attention)) std::fprintf(stderr, "  choice attention %.3f", p.choice_attention);
    if (!std::isnan(p.quiet_loss)) std::fprintf(stderr, "  quiet %.4f  stray notes %.4f", p.quiet_loss, p.stray_noted);
    if (!std::isnan(p.marks_noted)) std::fprintf(stderr, "  marks noted %.3f", p.marks_noted);
    if (!std::isnan(p.eval_loss)) std::fprintf(stderr, "  held-out %.4f  notes %.3f", p.eval_loss, p.note_rate);
    std::fprintf(stderr, "\n");
    return !g_interrupted.load();
  });
  if (leader) std::printf("stopped at step %lld; wrote %s/model.safetensors\n", static_cast<long long>(last), o.out_dir.c_str());
  return g_interrupted ? kInterrupted : kOk;
}

}  // namespace memmamba::cli
