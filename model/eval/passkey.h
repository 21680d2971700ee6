// Retrieval prompts in DeciMamba's passkey format (docs/eval-protocols.md): an instruction,
// a haystack of book sentences (or the repeated Landmark filler), one or more needles at
// sentence boundaries near the requested depths, the question, "Answer: ".
//
// A case is drawn from a CaseSpec: the key's kind (digits of a given length, a word, a made-up
// name), the wording of the instruction, needle and question (some wordings are kept out of
// training, for evaluation only), how many labelled facts the haystack holds (one: the passkey
// task; several: "The code for the red door is 4821."), and distractor numbers.
// Torch-free; token lengths are measured with the tokenizer.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/eval/retrieval_case.h"
#include "model/tokenizer.h"

namespace memmamba::eval {

enum class Haystack { BookSentences, RepeatedFiller };
struct NeedleInfo {
  std::string label;           // empty for the single-key task
  std::string value;
  double depth = 0;            // requested, 0..1
  double actual_depth = 0;     // where it landed, as a fraction of the haystack's tokens
  int64_t begin = 0, end = 0;  // byte range [begin, end) of the needle in the prompt, without its trailing space
};

struct PasskeyCase {
  std::string key;             // the value asked for
  double depth = 0;            // the asked needle's, requested, 0..1
  double actual_depth = 0;
  int64_t target_tokens = 0;
  std::string prompt;          // ends with "Answer: "
  int64_t needle_begin = 0;    // byte range [begin, end) of the asked needle in the prompt
  int64_t needle_end = 0;
  int64_t sentence_index = 0;  // the asked needle went before this haystack sentence
  int64_t wording = 0;
  std::vector<NeedleInfo> needles;  // every needle in prompt order (the passkey task: one)
  int64_t asked = 0;                // index into needles
  // The question's form, "{label}" a placeholder ("\nWhat is the code for the {label}?\nAnswer: "):
  // a composed wording (wording -1) is in no list.
  std::string question_form;
  // Byte ranges [begin, end) in the prompt of the numbers of its reference marks
  // (CaseSpec::reference_marks), in order.
  std::vector<std::pair<int64_t, int64_t>> marks;
};

// Byte offsets in `prompt` of each mention of `value` within bytes [begin, end), in order.
// Empty for an empty value.
std::vector<int64_t> mentions(const std::string& prompt, const std::string& value, int64_t begin, int64_t end);
// The mentions of the asked value inside the asked needle (the passkey wordings mention it once
// or twice).
std::vector<int64_t> key_mentions(const PasskeyCase& c);
// The question of a case with labelled facts, asking for needle `needle` in the case's wording
// ("\nWhat is the code for the blue box?\nAnswer: "). Throws std::invalid_argument for a case
// without labelled facts or an index out of range.
std::string fact_question(const PasskeyCase& c, size_t needle);

// Splits text into sentences (ending in . ! or ?), whitespace collapsed; keeps those of at
// least `min_words` words. Used to build haystacks from any book.
std::vector<std::string> split_sentences(const std::string& text, int64_t min_words = 5);

class PasskeyGenerator {
 public:
  // `sentences` may be empty for the repeated filler.
  PasskeyGenerator(const Tokenizer& tokenizer, std::vector<std::string> sentences, Haystack haystack);
  // Deterministic in (target_tokens, depth, seed, spec). The prompt's token count is within a
  // few tokens of target_tokens (sentences are whole); a value never occurs in the haystack
  // outside its needle. `forced_key` (same kind) replaces the drawn value of the asked needle.
  PasskeyCase make(int64_t target_tokens, double depth, uint64_t seed, const CaseSpec& spec = CaseSpec{},
                   const std::string& forced_key = {}) const;

  // The first wording's texts (the bundled models' training wording).
  static std::string needle(const std::string& key);
  static const char* instruction();
  static const char* question();

 private:
  int64_t tokens_of(size_t sentence) const;
  int64_t tokens_of_text(const std::string& text) const;
  const Tokenizer& tokenizer_;
  std::vector<std::string> sentences_;
  // Each sentence's token count, filled on first use (atomics: training makes rows on
  // several threads with one generator).
  std::shared_ptr<std::atomic<int64_t>[]> sentence_tokens_;
  Haystack haystack_;
};

}  // namespace memmamba::eval
