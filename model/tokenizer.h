// The SentencePiece tokenizer, reached through a shim module in its own link namespace.
// Encoding returns byte offsets of every token in the text, so views can map tokens
// back to characters.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace memmamba {

class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Encoding {
  std::vector<int32_t> ids;
  std::vector<int64_t> begin;  // byte offsets into the encoded text
  std::vector<int64_t> end;
};

class Tokenizer {
 public:
  static Tokenizer load(const std::string& model_path);
  // A serialized model in memory; `origin` names it in errors.
  static Tokenizer from_bytes(const std::string& bytes, const std::string& origin);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  int64_t vocab_size() const;
  // Encodes in paragraph-sized pieces (split after newlines) so memory stays bounded on
  // books; `progress` (may be empty) gets bytes done and total, and may cancel by returning false.
  Encoding encode(const std::string& text, const std::function<bool(uint64_t, uint64_t)>& progress = {}) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string piece(int32_t id) const;
  const std::string& path() const { return path_; }

  // Trains a SentencePiece model (unigram) on the given text files.
  static void train(const std::vector<std::string>& inputs, const std::string& model_prefix, int64_t vocab_size,
                    int64_t max_sentences = 2000000);

 private:
  Tokenizer() = default;
  void* handle_ = nullptr;
  std::string path_;
};

// Where the shim module is looked for (for messages and tests).
std::string sentencepiece_module_path();

}  // namespace memmamba
