#include "model/eval/passkey.h"

#include <algorithm>
#include <cctype>
#include <random>
#include <sstream>
#include <stdexcept>

namespace memmamba::eval {

namespace {
const char* kFiller = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
}

const char* PasskeyGenerator::instruction() {
  return "There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it:\n";
}
const char* PasskeyGenerator::question() { return "\nWhat is the pass key?\nAnswer: "; }

std::string PasskeyGenerator::needle(int64_t key) {
  const std::string k = std::to_string(key);
  return "The pass key is " + k + ". Remember it. " + k + " is the pass key. ";
}

std::vector<std::string> split_sentences(const std::string& text, int64_t min_words) {
  std::vector<std::string> out;
  std::string current;
  int64_t words = 0;
  bool in_word = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (space) {
      if (!current.empty() && current.back() != ' ') current += ' ';
      in_word = false;
      continue;
    }
    if (!in_word) ++words;
    in_word = true;
    current += c;
    const bool end = (c == '.' || c == '!' || c == '?') &&
                     (i + 1 == text.size() || text[i + 1] == ' ' || text[i + 1] == '\n');
    if (end) {
      if (words >= min_words) out.push_back(current);
      current.clear();
      words = 0;
    }
  }
  return out;
}

PasskeyGenerator::PasskeyGenerator(const Tokenizer& tokenizer, std::vector<std::string> sentences, Haystack haystack)
    : tokenizer_(tokenizer), sentences_(std::move(sentences)), haystack_(haystack) {
  if (haystack_ == Haystack::RepeatedFiller) sentences_ = split_sentences(kFiller, 1);
  if (sentences_.empty()) throw std::invalid_argument("passkey: no haystack sentences (the book has none of 5+ words)");
  sentence_tokens_.assign(sentences_.size(), -1);
}

int64_t PasskeyGenerator::tokens_of(size_t i) const {
  // Counted as the sentence appears mid-text: after a space.
  int64_t& cached = sentence_tokens_[i];
  if (cached < 0) cached = static_cast<int64_t>(tokenizer_.encode(sentences_[i] + " ").ids.size());
  return cached;
}

PasskeyCase PasskeyGenerator::make(int64_t target_tokens, double depth, uint64_t seed) const {
  if (target_tokens < 64) throw std::invalid_argument("passkey: a prompt needs at least 64 tokens");
  if (!(depth >= 0.0 && depth <= 1.0)) throw std::invalid_argument("passkey: depth must be in [0, 1]");
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(target_tokens) * 31 +
                      static_cast<uint64_t>(depth * 1000));
  PasskeyCase c;
  c.depth = depth;
  c.target_tokens = target_tokens;
  c.key = std::uniform_int_distribution<int64_t>(0, 99999)(rng);
  const std::string needle_text = needle(c.key);
  const int64_t fixed = static_cast<int64_t>(tokenizer_.encode(instruction()).ids.size() +
                                             tokenizer_.encode(question()).ids.size() +
                                             tokenizer_.encode(needle_text).ids.size());
  const int64_t budget = std::max<int64_t>(0, target_tokens - fixed);
  // Haystack: consecutive sentences from a random start (wrapping around the book); the
  // last one is cut at a word boundary so that the prompt meets the length.
  std::vector<std::string> chosen;
  std::vector<int64_t> chosen_tokens;
  int64_t used = 0;
  size_t at = haystack_ == Haystack::RepeatedFiller ? 0 : std::uniform_int_distribution<size_t>(0, sentences_.size() - 1)(rng);
  const std::string key_text = std::to_string(c.key);
  const size_t max_steps = sentences_.size() + static_cast<size_t>(budget) + 1;
  for (size_t step = 0; used < budget && step < max_steps; ++step) {
    const size_t i = at++ % sentences_.size();
    if (sentences_[i].find(key_text) != std::string::npos) continue;  // the key must occur only in the needle
    const int64_t n = tokens_of(i);
    if (used + n <= budget) {
      chosen.push_back(sentences_[i]);
      chosen_tokens.push_back(n);
      used += n;
      continue;
    }
    // The longest word prefix that fits.
    std::vector<size_t> word_ends;
    for (size_t k = 0; k < sentences_[i].size(); ++k)
      if (sentences_[i][k] == ' ') word_ends.push_back(k);
    size_t lo = 0, hi = word_ends.size();
    int64_t lo_tokens = 0;
    while (lo < hi) {
      const size_t mid = (lo + hi + 1) / 2;
      const int64_t t = static_cast<int64_t>(tokenizer_.encode(sentences_[i].substr(0, word_ends[mid - 1]) + " ").ids.size());
      if (used + t <= budget) { lo = mid; lo_tokens = t; } else { hi = mid - 1; }
    }
    if (lo > 0) {
      chosen.push_back(sentences_[i].substr(0, word_ends[lo - 1]));
      chosen_tokens.push_back(lo_tokens);
      used += lo_tokens;
    }
    break;
  }
  // The needle goes at the sentence boundary nearest to depth * haystack tokens.
  const double wanted = depth * static_cast<double>(used);
  int64_t before = 0;
  size_t boundary = 0;
  double best = wanted;
  for (size_t k = 0; k < chosen.size(); ++k) {
    before += chosen_tokens[k];
    const double distance = std::abs(static_cast<double>(before) - wanted);
    if (distance < best) { best = distance; boundary = k + 1; }
  }
  int64_t tokens_before = 0;
  for (size_t k = 0; k < boundary; ++k) tokens_before += chosen_tokens[k];
  c.actual_depth = used > 0 ? static_cast<double>(tokens_before) / static_cast<double>(used) : 0.0;
  c.sentence_index = static_cast<int64_t>(boundary);
  std::string prompt = instruction();
  for (size_t k = 0; k <= chosen.size(); ++k) {
    if (k == boundary) {
      c.needle_begin = static_cast<int64_t>(prompt.size());
      prompt += needle_text;
      c.needle_end = static_cast<int64_t>(prompt.size()) - 1;  // without the trailing space
    }
    if (k < chosen.size()) prompt += chosen[k] + " ";
  }
  prompt += question();
  c.prompt = std::move(prompt);
  return c;
}

bool passkey_found(const std::string& output, int64_t key) {
  const std::string k = std::to_string(key);
  std::istringstream words(output);
  std::string w;
  while (words >> w) {
    size_t b = 0, e = w.size();
    while (b < e && !std::isalnum(static_cast<unsigned char>(w[b]))) ++b;
    while (e > b && !std::isalnum(static_cast<unsigned char>(w[e - 1]))) --e;
    if (w.compare(b, e - b, k) == 0 && e - b == k.size()) return true;
  }
  return false;
}

int64_t passkey_digits_right(const std::string& output, int64_t key) {
  const std::string k = std::to_string(key);
  std::istringstream words(output);
  std::string w;
  int64_t best = 0;
  while (words >> w) {
    size_t b = 0, e = w.size();
    while (b < e && !std::isalnum(static_cast<unsigned char>(w[b]))) ++b;
    while (e > b && !std::isalnum(static_cast<unsigned char>(w[e - 1]))) --e;
    int64_t right = 0;
    for (size_t i = 0; i < k.size() && b + i < e; ++i) right += w[b + i] == k[i];
    best = std::max(best, right);
  }
  return best;
}

}  // namespace memmamba::eval
