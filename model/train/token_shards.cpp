#include "model/train/token_shards.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "model/checkpoint.h"
#include "model/file_io.h"
#include "model/safetensors.h"
#include "model/text_input.h"
#include "model/tokenizer.h"

namespace memmamba {

namespace {
constexpr char kMagic[8] = {'M', 'M', 'T', 'O', 'K', 'E', 'N', 'S'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 24;

uint64_t name_hash(const std::string& s, uint64_t seed) {
  uint64_t h = 1469598103934665603ULL ^ seed;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}
}  // namespace

void TokenShard::save(const std::string& path) const {
  write_file_atomic(path, [&](std::FILE* f) {
    const uint64_t count = tokens.size();
    std::fwrite(kMagic, 1, 8, f);
    std::fwrite(&kVersion, 4, 1, f);
    std::fwrite(&vocab_size, 4, 1, f);
    std::fwrite(&count, 8, 1, f);
    if (count) std::fwrite(tokens.data(), 2, count, f);
  });
}

TokenShard TokenShard::load(const std::string& path) {
  const std::string bytes = read_file(path, uint64_t{1} << 34);
  auto bad = [&](const std::string& why) { return FormatError(path + ": " + why); };
  if (bytes.size() < kHeader || std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw bad("not a MemMamba token shard (make one with `memmamba data`)");
  uint32_t version = 0;
  TokenShard s;
  uint64_t count = 0;
  std::memcpy(&version, bytes.data() + 8, 4);
  std::memcpy(&s.vocab_size, bytes.data() + 12, 4);
  std::memcpy(&count, bytes.data() + 16, 8);
  if (version != kVersion) throw bad("shard version " + std::to_string(version) + " is not supported");
  if (s.vocab_size == 0 || s.vocab_size > 65536) throw bad("bad vocabulary size " + std::to_string(s.vocab_size));
  if (count > (bytes.size() - kHeader) / 2 || bytes.size() != kHeader + 2 * count)
    throw bad("holds " + std::to_string(bytes.size() - kHeader) + " bytes of tokens but claims " + std::to_string(count) +
              " tokens: truncated or corrupt");
  s.tokens.resize(count);
  if (count) std::memcpy(s.tokens.data(), bytes.data() + kHeader, 2 * count);
  const auto over = std::find_if(s.tokens.begin(), s.tokens.end(), [&](uint16_t t) { return t >= s.vocab_size; });
  if (over != s.tokens.end())
    throw bad("token " + std::to_string(*over) + " at " + std::to_string(over - s.tokens.begin()) +
              " is outside the vocabulary of " + std::to_string(s.vocab_size));
  return s;
}

const std::vector<std::string>& evaluation_books() {
  static const std::vector<std::string> names = {
      // bundled sample books and the default haystack
      "The-Time-Machine_35.txt", "Alice-s-Adventures-in-Wonderland_11.txt", "Pride-and-Prejudice_1342.txt",
      // evaluation books (perplexity, haystacks, DeciMamba's sweep)
      "The-Adventures-of-Tom-Sawyer_74.txt", "Siddhartha_2500.txt", "The-Iliad_6130.txt", "Leviathan_3207.txt"};
  return names;
}

Json build_token_shards(const Tokenizer& tokenizer, const std::string& books_dir, const std::string& out_dir,
                        const DataSplitOptions& options,
                        const std::function<void(const std::string&, int64_t, int64_t)>& progress) {
  namespace fs = std::filesystem;
  if (tokenizer.vocab_size() > 65536) throw std::invalid_argument("uint16 shards need a vocabulary of at most 65536");
  std::error_code ec;
  if (!fs::is_directory(books_dir, ec)) throw FileError(books_dir + " is not a directory of books");
  std::vector<std::string> books;
  for (const auto& e : fs::directory_iterator(books_dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".txt") books.push_back(e.path().filename().string());
  std::sort(books.begin(), books.end());
  if (books.empty()) throw FileError(books_dir + " holds no .txt books");
  std::vector<std::string> heldout, by_hash;
  for (const std::string& b : books)
    (std::find(options.held_out_names.begin(), options.held_out_names.end(), b) != options.held_out_names.end() ? heldout
                                                                                                              : by_hash)
        .push_back(b);
  if (options.heldout_books < 0 || options.heldout_books >= static_cast<int64_t>(by_hash.size()))
    throw std::invalid_argument("--heldout must leave at least one training book (" + std::to_string(by_hash.size()) +
                                " books besides the evaluation books)");
  // More held-out books: the smallest name hashes (stable under adding books elsewhere in the list).
  std::sort(by_hash.begin(), by_hash.end(), [&](const std::string& a, const std::string& b) {
    return name_hash(a, options.seed) < name_hash(b, options.seed);
  });
  heldout.insert(heldout.end(), by_hash.begin(), by_hash.begin() + options.heldout_books);
  TokenShard train, held;
  train.vocab_size = held.vocab_size = static_cast<uint32_t>(tokenizer.vocab_size());
  Json train_books = Json::array(), heldout_books = Json::array();
  int64_t done = 0;
  for (const std::string& name : books) {
    if (progress) progress(name, done, static_cast<int64_t>(books.size()));
    const std::string text = load_text_file((fs::path(books_dir) / name).string()) + "\n\n";
    const Encoding enc = tokenizer.encode(text);
    const bool is_heldout = std::find(heldout.begin(), heldout.end(), name) != heldout.end();
    TokenShard& dst = is_heldout ? held : train;
    for (int32_t id : enc.ids) dst.tokens.push_back(static_cast<uint16_t>(id));
    Json b = Json::object();
    b["book"] = name;
    b["tokens"] = static_cast<int64_t>(enc.ids.size());
    (is_heldout ? heldout_books : train_books).push_back(b);
    ++done;
  }
  fs::create_directories(out_dir, ec);
  if (ec) throw FileError("cannot create " + out_dir + ": " + ec.message());
  train.save((fs::path(out_dir) / "train.tokens").string());
  held.save((fs::path(out_dir) / "heldout.tokens").string());
  Json m = Json::object();
  m["format"] = "memmamba-token-shards";
  m["tokenizer"] = tokenizer.path();
  m["tokenizer_hash"] = file_hash(tokenizer.path());
  m["vocab_size"] = static_cast<int64_t>(tokenizer.vocab_size());
  m["train_tokens"] = static_cast<int64_t>(train.tokens.size());
  m["heldout_tokens"] = static_cast<int64_t>(held.tokens.size());
  m["train_books"] = train_books;
  m["heldout_books"] = heldout_books;
  m["seed"] = static_cast<int64_t>(options.seed);
  Json names = Json::array();
  for (const std::string& n : options.held_out_names) names.push_back(n);
  m["held_out_by_name"] = names;
  write_file_atomic((fs::path(out_dir) / "manifest.json").string(), m.dump(1) + "\n");
  return m;
}

}  // namespace memmamba
