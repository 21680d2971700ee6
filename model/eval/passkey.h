// Passkey retrieval prompts in DeciMamba's format (docs/eval-protocols.md): an
// instruction, a haystack of book sentences (or the repeated Landmark filler), the
// needle at a sentence boundary near the requested depth, the question, "Answer: ".
// Torch-free; token lengths are measured with the tokenizer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace memmamba::eval {

enum class Haystack { BookSentences, RepeatedFiller };

struct PasskeyCase {
  int64_t key = 0;
  double depth = 0;            // requested, 0..1
  double actual_depth = 0;     // where the needle landed, as a fraction of the haystack's tokens
  int64_t target_tokens = 0;
  std::string prompt;          // ends with "Answer: "
  int64_t needle_begin = 0;    // byte range [begin, end) of the needle in the prompt
  int64_t needle_end = 0;
  int64_t sentence_index = 0;  // the needle went before this haystack sentence
};

// Splits text into sentences (ending in . ! or ?), whitespace collapsed; keeps those of at
// least `min_words` words. Used to build haystacks from any book.
std::vector<std::string> split_sentences(const std::string& text, int64_t min_words = 5);

class PasskeyGenerator {
 public:
  // `sentences` may be empty for the repeated filler.
  PasskeyGenerator(const Tokenizer& tokenizer, std::vector<std::string> sentences, Haystack haystack);
  // Deterministic in (target_tokens, depth, seed). The prompt's token count is within a few
  // tokens of target_tokens (sentences are whole); the key never occurs in the haystack.
  PasskeyCase make(int64_t target_tokens, double depth, uint64_t seed) const;

  static std::string needle(int64_t key);
  static const char* instruction();
  static const char* question();

 private:
  int64_t tokens_of(size_t sentence) const;
  const Tokenizer& tokenizer_;
  std::vector<std::string> sentences_;
  mutable std::vector<int64_t> sentence_tokens_;  // filled on first use
  Haystack haystack_;
};

// A hit when the key appears among the whitespace-separated words of the output
// (punctuation around a word is ignored).
bool passkey_found(const std::string& output, int64_t key);

// Partial credit, for failures that are nearly right: the most digits of the key that one
// word of the output has in their places (0 to the key's length).
int64_t passkey_digits_right(const std::string& output, int64_t key);

}  // namespace memmamba::eval
