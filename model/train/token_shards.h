// Pre-tokenized training data: uint16 token ids in a small binary format, one file per
// split ("train", "heldout"), with a manifest naming the books of each split. Torch-free.
//   file: "MMTOKENS" | uint32 version (1) | uint32 vocab size | uint64 count | count x uint16 (LE)
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/json.h"

namespace memmamba {

class Tokenizer;

struct TokenShard {
  uint32_t vocab_size = 0;
  std::vector<uint16_t> tokens;

  void save(const std::string& path) const;  // atomic (temporary name, then rename)
  // Checks magic, version, size and that every id is below the vocabulary; throws FormatError.
  static TokenShard load(const std::string& path);
};

// Books that no training shard may hold: the bundled sample books, the default haystacks of the
// evaluations and the evaluation books (docs/model.md, "Held-out text").
const std::vector<std::string>& evaluation_books();

struct DataSplitOptions {
  // Kept out of training by name (file names; those not in the folder are skipped).
  std::vector<std::string> held_out_names = evaluation_books();
  int64_t heldout_books = 0;  // more books kept out, chosen by a hash of their names
  uint64_t seed = 0;
};

// Tokenizes every .txt book in `books_dir` (sorted by name), each book followed by a blank
// line, into out_dir/train.tokens and out_dir/heldout.tokens, and writes
// out_dir/manifest.json (books per split, token counts, tokenizer hash). Returns the manifest.
Json build_token_shards(const Tokenizer& tokenizer, const std::string& books_dir, const std::string& out_dir,
                        const DataSplitOptions& options,
                        const std::function<void(const std::string& book, int64_t done, int64_t total)>& progress = {});

}  // namespace memmamba
