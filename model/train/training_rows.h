// The rows a training step learns from: windows of the book shards, with passkey examples
// (a prompt, its key and an end) placed at the end of some rows, the positions the memory's
// losses supervise, and the spans that blind needles hide from the SSM.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "model/eval/documents.h"
#include "model/eval/passkey.h"
#include "model/tokenizer.h"
#include "model/train/token_shards.h"
#include "model/train/train_options.h"

namespace memmamba {

// Where a passkey row's answer predicts each piece of the key (`query`: the input position
// before the piece) and where the same bytes of the key stand in the needle's two copies
// (`first`, `second`): the notes a retrieval should read. Positions are within the row;
// -1 where a copy was cut off. `end_row`/`end_query`: where the answer predicts the piece right
// after the key, which the answer loss teaches too so that an answer stops after the key's
// last digit. With `end_from_notes` that position is instead one more `query`, whose
// `first`/`second` are the needle's pieces right after each key copy (end_row stays empty).
struct RetrievalTargets {
  std::vector<int64_t> row, query, first, second;
  // Per read (beside `row`): 1 where it is the first piece of an answer in a row with several
  // labelled facts, the read that has to choose a value by its label; the pieces after it can
  // follow the digits already written. Shorter than `row` (or empty) means 0 for the rest.
  std::vector<uint8_t> choice;
  std::vector<int64_t> end_row, end_query;
  // Row positions of the tokens of every needle's value that was not asked (rows with several
  // facts): the question could have asked any of them, so the selection loss lifts them too.
  std::vector<int64_t> other_value_row, other_value_position;
  // Row positions of the tokens of reference marks' numbers (TrainOptions::reference_marks):
  // the quiet loss keeps them under tau1 even where they are the row's most surprising tokens.
  std::vector<int64_t> mark_row, mark_position;
};

// The length in tokens of a passkey example in a row of `row_tokens` (>= 128) tokens, from a
// uniform random draw: between passkey_min_tokens (or its default) and row_tokens - 24.
int64_t passkey_example_tokens(const TrainOptions& o, int64_t row_tokens, uint64_t random);

// The text of a passkey training row: the prompt, the key and `answer_end`. What follows the
// key gives the answer an end to learn; the answer loss teaches its first piece (docs/model.md
// says which ends were tried).
std::string passkey_training_text(const eval::PasskeyCase& c, const std::string& answer_end = ".");

// A question that follows a row's answer (TrainOptions::follow_up_questions): the byte where
// its answer, the value of needle `needle`, begins in the row's text.
struct FollowUp {
  int64_t answer = 0;
  size_t needle = 0;
};

// Tokens a follow-up question and its answer take at most (a question of the fact wordings, a
// value of up to 10 digits, the end): the prompt is that much shorter for each, so that the row
// still holds its first needle.
constexpr int64_t kFollowUpTokens = 28;

// Appends to `text` (passkey_training_text) what follows the answer of a row with labelled facts
// when every fact is asked: each other fact's question, in an order drawn from `rng` (not the
// text's: the order must not tell the value), answered with its value and `answer_end`. Each
// FollowUp is appended to `out` with its answer's offset in `text`. Nothing for one needle.
void append_follow_ups(const eval::PasskeyCase& c, const std::string& answer_end, std::mt19937_64& rng, std::string& text,
                       std::vector<FollowUp>& out);

// Appends the targets of case `c` encoded as `enc` (passkey_training_text, then the text of
// `follow_ups` if any), whose last tokens fill the end of batch row `row` of `row_length`
// tokens: each answer's pieces read the notes of their value's needle, and its end. With
// `after_end` the piece after each answer's end (what follows the stop) is an end target too.
void add_retrieval_targets(const eval::PasskeyCase& c, const Encoding& enc, int64_t row, int64_t row_length,
                           RetrievalTargets& out, bool end_from_notes = false,
                           const std::vector<FollowUp>& follow_ups = {}, bool after_end = false);

// Row positions [begin, end) that a blind needle hides from the SSM for case `c` encoded as
// `enc`, whose last tokens fill the end of a row of `row_length` tokens: from the token holding
// the key's first digit to `margin` tokens past the one holding the last digit of its second
// copy (clipped to the row). {0, 0} when the key is not in the row.
std::pair<int64_t, int64_t> blind_needle_span(const eval::PasskeyCase& c, const Encoding& enc, int64_t row_length,
                                              int64_t margin);
// The spans a blind row hides: the asked key's (blind_needle_span), or with `every_fact` the
// same span for each labelled fact's value in its own needle (TrainOptions::blind_every_fact),
// in prompt order; spans not in the row are left out.
std::vector<std::pair<int64_t, int64_t>> blind_needle_spans(const eval::PasskeyCase& c, const Encoding& enc,
                                                            int64_t row_length, int64_t margin, bool every_fact);

// The case of a passkey row with varied cases (TrainOptions::varied_cases): keys of 3-10
// digits (70%), words or made-up names; one fact (half the rows) or 2-8 labelled facts; the
// trained wordings only; distractor numbers in half the digit rows.
// `mix` "passkey": one fact, digit keys, the trained wordings; "composed": the same in wordings
// put together from parts; "facts": digit keys, 2-6 labelled facts in half the rows;
// "composed-facts": the facts mix with its single-fact rows in composed wordings;
// "composed-all": that mix with half its rows with labelled facts in composed fact wordings too;
// "composed-any": "composed-all" with the whole mix's keys (words and names among the digits, up
// to 8 facts).
// Digit keys have `key_digits` digits.
eval::CaseSpec training_case_spec(std::mt19937_64& rng, const std::string& mix = "all",
                                  std::pair<int64_t, int64_t> key_digits = {3, 10});

// Documents for document rows: runs of 3-6 consecutive sentences (`sentences` in order).
std::vector<std::string> sentence_documents(const std::vector<std::string>& sentences);

// The text of a document row: the prompt, the golden document's id and the "|>" that closes it.
std::string document_training_text(const eval::DocumentCase& c);

// Appends the answer targets of document case `c` encoded as `enc` (document_training_text),
// whose last tokens fill the end of batch row `row` of `row_length` tokens: `end_row`/
// `end_query` at each piece of the id, or with `reads` a read at each (TrainOptions::
// document_reads): the same piece of the golden header's id, or the fact value's last piece.
void add_document_targets(const eval::DocumentCase& c, const Encoding& enc, int64_t row, int64_t row_length,
                          RetrievalTargets& out, bool reads = false);

// Appends the row positions of the tokens of `c`'s reference marks' numbers, encoded as `enc`
// (passkey_training_text), whose last tokens fill the end of batch row `row` of `row_length`.
void add_mark_positions(const eval::PasskeyCase& c, const Encoding& enc, int64_t row, int64_t row_length,
                        RetrievalTargets& out);

// Appends `from`'s targets to `to` (rows numbered as they are).
void append_targets(const RetrievalTargets& from, RetrievalTargets& to);

// Copies tokens [start, start + n) of a shard into an int64 row.
void copy_window(const TokenShard& shard, uint64_t start, int64_t n, int64_t* row);

// Every batch is a function of (seed, step, micro-batch): resuming needs no sampler state.
class BatchMaker {
 public:
  BatchMaker(const TrainOptions& o, const TokenShard& train, int64_t blind_margin);
  // [rows, seq_len + 1] int64 on the CPU. With `ssm_mask` and blind needles: [rows, seq_len]
  // floats, 0 where the SSM must not see the token (undefined when no row has a blind needle).
  torch::Tensor make(int64_t step, int64_t micro, int64_t rows, int* passkeys, RetrievalTargets* targets = nullptr,
                     torch::Tensor* ssm_mask = nullptr) const;
  // Rows [first, first + count) of micro-batch `micro` of `step`, numbered from 0 in the
  // result: each row depends only on (seed, step, micro, row), not on the batch's size, so
  // ranks make their own rows and the data do not depend on their number.
  torch::Tensor make_rows(int64_t step, int64_t micro, int64_t first, int64_t count, int* passkeys,
                          RetrievalTargets* targets = nullptr, torch::Tensor* ssm_mask = nullptr) const;

 private:
  const TrainOptions& o_;
  const TokenShard& train_;
  const int64_t blind_margin_;
  std::optional<Tokenizer> tokenizer_;
  std::optional<eval::PasskeyGenerator> generator_;
  std::optional<eval::DocumentRetrievalGenerator> documents_;  // with TrainOptions::document_fraction
};

}  // namespace memmamba
