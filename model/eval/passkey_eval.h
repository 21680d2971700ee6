// Runs passkey cases through the model (parallel over the prompt, greedy step-mode
// answer) and keeps what explains each outcome: where the key's tokens are, which notes
// held them, when those notes entered and left each pool, and what the answer attended to.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "model/distributed/world.h"
#include "model/eval/passkey.h"
#include "model/json.h"
#include "model/memmamba.h"
#include "model/trace.h"

namespace memmamba::eval {

struct PasskeyGridOptions {
  std::vector<int64_t> lengths{1024, 2048, 4096};
  std::vector<double> depths{0.0, 0.25, 0.5, 0.75, 1.0};
  int64_t samples = 2;
  uint64_t seed = 0;
  int64_t max_new_tokens = 10;
  CaseSpec spec;             // key kind and length, wordings, facts, distractors
  RunOptions run;            // memory settings, chunking, memory edits for every case
  // Also run each case with the notes made of the key's tokens never kept (every layer):
  // did the notes carry the key? (case "notes_dropped", cell "accuracy_notes_dropped")
  bool drop_key_notes = false;
  int32_t attention_topk = 8;
  Json meta = Json::object();  // checkpoint, hash, device... copied into the result
  // Spread the cases over this world's ranks (null: all here); only rank 0 gets the result.
  World* world = nullptr;
};

// How many answer tokens a case gets: at least `at_least`, and always room for the whole key
// (a piece per character at most, after the leading space) and two more, so that a long key is
// never cut by the budget and an answer that runs on past the key is seen to.
int64_t answer_token_budget(const PasskeyCase& c, int64_t at_least);

// The tokens of the key's digits in the needle, from the prompt's token byte ranges.
std::vector<int64_t> passkey_key_positions(const PasskeyCase& c, const std::vector<int64_t>& begin,
                                           const std::vector<int64_t>& end);
// The tokens of the values of the facts that were not asked (each mention inside its needle):
// what a read that confuses the facts attends to. Each maps to (the needle's index, the value's
// character the token holds, or -1 where it holds more than one). Empty for a single key.
using OtherValueTokens = std::map<int64_t, std::pair<int64_t, int64_t>>;
OtherValueTokens other_value_tokens(const PasskeyCase& c, const std::vector<int64_t>& begin,
                                    const std::vector<int64_t>& end);
// Their positions alone, in prompt order.
std::vector<int64_t> other_value_positions(const PasskeyCase& c, const std::vector<int64_t>& begin,
                                           const std::vector<int64_t>& end);
// One case's record from its trace (the prompt's first `prompt_tokens` tokens, maybe more) and the answer: truth, answer, hit,
// key token positions and, per layer, the notes holding the key (inserted, evicted, dropped,
// in the pool at the answer) and the answer's attention with its weight on key notes.
// With labelled facts, `other_values` (other_value_tokens) gives each layer's answer weight on
// the other facts' value notes too, and each answer token's most-read one.
Json passkey_case_record(const PasskeyCase& c, const Trace& trace, int64_t prompt_tokens,
                         const std::vector<int64_t>& key_positions, const std::string& answer_text,
                         const OtherValueTokens& other_values = {});

// One case as the grid runs it (`options`' run settings, answer budget and attention width):
// the prompt, then the greedy answer with each answer token's reads, as its record.
Json run_passkey_case(const MemMambaModel& model, const Tokenizer& tokenizer, const PasskeyCase& c,
                      const PasskeyGridOptions& options);

// Runs every (length, depth, sample) case; `progress(done, total)` may cancel (throws Cancelled).
// With a world of several ranks, the other ranks return null.
Json run_passkey_grid(const MemMambaModel& model, const Tokenizer& tokenizer, const PasskeyGenerator& generator,
                      const PasskeyGridOptions& options,
                      const std::function<bool(int64_t done, int64_t total)>& progress = {});

// One CSV row per case (length, depth, sample, key, answer, hit, ...).
std::string passkey_results_csv(const Json& results);

}  // namespace memmamba::eval
