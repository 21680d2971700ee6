// What a retrieval case is made of, without the text: the key's kind and length, the task's
// wordings (some kept out of training), how many labelled facts, distractors; and how an answer
// is scored. Torch- and tokenizer-free: the Explorer's views read these from result files.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/json.h"

namespace memmamba::eval {

enum class KeyKind { Digits, Word, Name };

// One wording of the task. Placeholders: {key} (the value), {label} (a fact's label).
struct Wording {
  const char* name;
  const char* instruction;
  const char* needle;    // ends with a space
  const char* question;  // ends with "Answer: "
  bool held_out;         // never in training rows
};
// Wordings of the single-key task and of the labelled facts; index 0 of each is the one the
// bundled models were first trained on.
const std::vector<Wording>& passkey_wordings();
const std::vector<Wording>& fact_wordings();

struct CaseSpec {
  KeyKind key_kind = KeyKind::Digits;
  // Digits of the key, drawn uniformly from [min, max], the first never 0. 0/0: the keys of the
  // first grids (0-99999, so some had fewer than five digits); kept to reproduce their cases.
  int64_t key_digits_min = 5, key_digits_max = 5;
  std::vector<int64_t> wordings{0};  // one is drawn per case
  int64_t facts = 1;                 // needles in the haystack; one of them is asked for
  int64_t distractors = 0;           // sentences with other numbers of the key's length
  // The share of the other numbers (the other facts' values, the distractors) made to look like
  // the key: a run of its last 2-3 digits inside them, with digits after the run. Misses of
  // labelled facts mostly run on past the key into another value from where their digits match
  // (docs/model.md, "Where a fact's answer runs on"); these cases ask for exactly that.
  double look_alikes = 0;
  // Training only (not in result files): the case's wording is put together from parts (a
  // noun, an instruction, a needle and a question form; composed_wording and
  // composed_fact_wording in passkey.cpp) instead of drawn from `wordings`, so that rows share
  // no fixed template. No part is one of a held-out wording's.
  bool composed = false;
  // Training only (not in result files): reference marks (footnote, verse, page and chapter
  // numbers, "poetry.(3)") put into the haystack's sentences at about this many per 1,000
  // haystack tokens. Books of that kind are full of numbers that are not facts; the training
  // rows teach the note rule to leave them alone (docs/model.md, "D7").
  double reference_marks = 0;

  Json to_json() const;
  // Throws std::invalid_argument on anything malformed.
  static CaseSpec from_json(const Json& j);
  // The spec a result file was made with ("settings" -> "case"); files from before specs
  // existed give the legacy spec (five digits or fewer, wording 0, one fact).
  static CaseSpec of_results(const Json& results);
  static CaseSpec legacy();
  std::string describe() const;  // "5-digit keys, wording 0" / "4 facts, word keys, held-out wordings"
};

const char* key_kind_name(KeyKind kind);
// "digits", "word" or "name"; throws std::invalid_argument otherwise.
KeyKind parse_key_kind(const std::string& text);
// "5" or "3-10"; throws std::invalid_argument outside 1-18.
std::pair<int64_t, int64_t> parse_key_digits(const std::string& text);
// "trained", "held-out", "all" or a comma list of indices, against the facts' wordings when
// `facts` > 1; throws std::invalid_argument otherwise.
std::vector<int64_t> parse_wordings(const std::string& text, bool facts);

// A hit when the key appears among the whitespace-separated words of the output
// (punctuation around a word is ignored; letters compare exactly).
bool passkey_found(const std::string& output, const std::string& key);

// Partial credit, for failures that are nearly right: the most characters of the key that one
// word of the output has in their places (0 to the key's length).
int64_t passkey_digits_right(const std::string& output, const std::string& key);

// How an answer's first word (punctuation around it ignored) stands to the key: the key itself,
// the key cut short (a proper prefix of it, at least two characters), the key run on past its end
// (the key a proper prefix of the word), or something else.
enum class AnswerShape { Key, CutShort, RanOn, Other };
AnswerShape answer_shape(const std::string& output, const std::string& key);

// The key of a case record as text (older result files hold it as a number).
std::string case_key_text(const Json& case_record);

// A SentencePiece piece as a reader would write it: a printable byte the vocabulary has no piece
// for ("<0x39>") as its character; every other piece ("▁" marks a space) as it is.
std::string readable_piece(const std::string& piece);

}  // namespace memmamba::eval
