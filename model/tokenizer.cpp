#include "model/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "model/file_io.h"

#ifndef MEMMAMBA_SPM_INSTALL_DIR
#define MEMMAMBA_SPM_INSTALL_DIR "/usr/lib/memmamba"
#endif

namespace memmamba {

namespace {

struct ShimApi {
  void* (*create)();
  void (*destroy)(void*);
  int (*load_from_bytes)(void*, const char*, size_t, char*, int);
  int (*vocab_size)(void*);
  int64_t (*encode)(void*, const char*, size_t, int32_t**, uint32_t**, uint32_t**, char*, int);
  char* (*decode)(void*, const int32_t*, size_t);
  int (*id_to_piece)(void*, int32_t, char*, int);
  void (*free_buffer)(void*);
  int (*train)(const char*, char*, int);
};

std::string executable_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.find_last_of('/'));
}

std::vector<std::string> module_candidates() {
  std::vector<std::string> c;
  if (const char* env = std::getenv("MEMMAMBA_SPM_MODULE")) c.emplace_back(env);
  const std::string dir = executable_dir();
  c.push_back(dir + "/../lib/memmamba_spm.so");
  c.push_back(dir + "/memmamba_spm.so");
  c.push_back(dir + "/../lib/memmamba/memmamba_spm.so");
  c.push_back(std::string(MEMMAMBA_SPM_INSTALL_DIR) + "/memmamba_spm.so");
  return c;
}

const ShimApi& shim() {
  static std::once_flag once;
  static ShimApi api{};
  static std::string error;
  std::call_once(once, [] {
    void* handle = nullptr;
    std::string tried;
    for (const std::string& path : module_candidates()) {
      if (::access(path.c_str(), R_OK) != 0) { tried += " " + path; continue; }
      // A fresh namespace keeps SentencePiece's protobuf away from LibTorch's.
      handle = ::dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle) break;
      tried += " " + path + " (" + ::dlerror() + ")";
    }
    if (!handle) { error = "the SentencePiece module could not be loaded; tried:" + tried; return; }
    auto sym = [&](const char* name) {
      void* p = ::dlsym(handle, name);
      if (!p) error = std::string("the SentencePiece module lacks ") + name;
      return p;
    };
    api.create = reinterpret_cast<void* (*)()>(sym("mm_spm_create"));
    api.destroy = reinterpret_cast<void (*)(void*)>(sym("mm_spm_destroy"));
    api.load_from_bytes = reinterpret_cast<int (*)(void*, const char*, size_t, char*, int)>(sym("mm_spm_load_from_bytes"));
    api.vocab_size = reinterpret_cast<int (*)(void*)>(sym("mm_spm_vocab_size"));
    api.encode = reinterpret_cast<int64_t (*)(void*, const char*, size_t, int32_t**, uint32_t**, uint32_t**, char*, int)>(
        sym("mm_spm_encode"));
    api.decode = reinterpret_cast<char* (*)(void*, const int32_t*, size_t)>(sym("mm_spm_decode"));
    api.id_to_piece = reinterpret_cast<int (*)(void*, int32_t, char*, int)>(sym("mm_spm_id_to_piece"));
    api.free_buffer = reinterpret_cast<void (*)(void*)>(sym("mm_spm_free_buffer"));
    api.train = reinterpret_cast<int (*)(const char*, char*, int)>(sym("mm_spm_train"));
  });
  if (!error.empty()) throw TokenizerError(error);
  return api;
}

}  // namespace

std::string sentencepiece_module_path() {
  for (const std::string& p : module_candidates())
    if (::access(p.c_str(), R_OK) == 0) return p;
  return {};
}

namespace {

// SentencePiece trusts the normalization table inside a model file: a corrupt one that
// still parses makes every later encode read out of bounds (found by fuzz_tokenizer). The
// table is checked here first, reading just enough of the protobuf wire format to find it.
bool read_varint(std::string_view& in, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    const auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    value |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}

// Calls `on_bytes(field, payload)` for every length-delimited field of a message; false
// when the message is malformed.
template <typename OnBytes>
bool for_each_bytes_field(std::string_view message, OnBytes&& on_bytes) {
  while (!message.empty()) {
    uint64_t key = 0, n = 0;
    if (!read_varint(message, key)) return false;
    switch (key & 7) {
      case 0: if (!read_varint(message, n)) return false; break;
      case 1: if (message.size() < 8) return false; message.remove_prefix(8); break;
      case 5: if (message.size() < 4) return false; message.remove_prefix(4); break;
      case 2:
        if (!read_varint(message, n) || n > message.size()) return false;
        on_bytes(static_cast<uint32_t>(key >> 3), message.substr(0, n));
        message.remove_prefix(n);
        break;
      default: return false;  // groups (3, 4) and unknown wire types: not in this format
    }
  }
  return true;
}

// The table is a uint32 trie size, a Darts double-array trie and the NUL-separated
// replacement strings. Every node reachable by any byte must lie inside the trie and every
// value must start a NUL-terminated string inside the strings: what the library's lookup reads.
std::string charsmap_problem(std::string_view blob) {
  if (blob.empty()) return {};
  uint32_t trie_bytes = 0;
  if (blob.size() <= 4) return "too short";
  std::memcpy(&trie_bytes, blob.data(), 4);
  if (trie_bytes >= blob.size() - 4 || trie_bytes % 4 != 0 || trie_bytes == 0) return "bad trie size";
  const size_t units = trie_bytes / 4;
  std::vector<uint32_t> trie(units);
  std::memcpy(trie.data(), blob.data() + 4, trie_bytes);
  const std::string_view strings = blob.substr(4 + trie_bytes);
  if (strings.back() != '\0') return "replacement strings are not terminated";
  auto offset = [](uint32_t u) { return static_cast<size_t>((u >> 10) << ((u & (1u << 9)) >> 6)); };
  auto label = [](uint32_t u) { return u & ((1u << 31) | 0xFFu); };
  std::vector<uint8_t> seen(units, 0);
  std::vector<size_t> stack{0};
  seen[0] = 1;
  while (!stack.empty()) {
    const size_t node = stack.back();
    stack.pop_back();
    const size_t base = node ^ offset(trie[node]);
    for (uint32_t c = 0; c < 256; ++c) {
      const size_t child = base ^ c;
      if (child >= units) return "trie node out of range";
      if (label(trie[child]) != c) continue;
      const size_t leaf = child ^ offset(trie[child]);
      if (leaf >= units) return "trie node out of range";
      if ((trie[child] >> 8) & 1u) {
        if ((trie[leaf] & 0x7FFFFFFFu) >= strings.size()) return "replacement out of range";
      }
      if (!seen[child]) {
        seen[child] = 1;
        stack.push_back(child);
      }
    }
  }
  return {};
}

// Empty when the model's normalizer and denormalizer tables are sound (or absent).
std::string normalization_problem(std::string_view model) {
  std::string problem;
  const bool parsed = for_each_bytes_field(model, [&](uint32_t field, std::string_view spec) {
    if (field != 3 && field != 5) return;  // ModelProto.normalizer_spec, .denormalizer_spec
    const bool spec_parsed = for_each_bytes_field(spec, [&](uint32_t f, std::string_view charsmap) {
      if (f == 2 && problem.empty()) problem = charsmap_problem(charsmap);  // precompiled_charsmap
    });
    if (!spec_parsed && problem.empty()) problem = "malformed normalizer";
  });
  if (!parsed && problem.empty()) problem = "malformed protobuf";
  return problem;
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& model_path) {
  std::string bytes;
  try {
    bytes = read_file(model_path, 256u << 20);
  } catch (const FileError& e) {
    throw TokenizerError(std::string("tokenizer: ") + e.what());
  }
  return from_bytes(bytes, model_path);
}

Tokenizer Tokenizer::from_bytes(const std::string& bytes, const std::string& model_path) {
  if (bytes.empty()) throw TokenizerError("tokenizer: " + model_path + " is empty");
  const std::string problem = normalization_problem(bytes);
  if (!problem.empty())
    throw TokenizerError("tokenizer: " + model_path + " is not a SentencePiece model or is corrupt (" + problem + ")");
  const ShimApi& api = shim();
  Tokenizer t;
  t.handle_ = api.create();
  if (!t.handle_) throw TokenizerError("tokenizer: out of memory");
  char err[512] = {0};
  if (api.load_from_bytes(t.handle_, bytes.data(), bytes.size(), err, sizeof err) != 0)
    throw TokenizerError("tokenizer: " + model_path + " is not a SentencePiece model (" + err + ")");
  if (api.vocab_size(t.handle_) <= 0) throw TokenizerError("tokenizer: " + model_path + " has no pieces");
  t.path_ = model_path;
  return t;
}

Tokenizer::~Tokenizer() {
  if (handle_) shim().destroy(handle_);
}
Tokenizer::Tokenizer(Tokenizer&& o) noexcept : handle_(o.handle_), path_(std::move(o.path_)) { o.handle_ = nullptr; }
Tokenizer& Tokenizer::operator=(Tokenizer&& o) noexcept {
  if (this != &o) {
    if (handle_) shim().destroy(handle_);
    handle_ = o.handle_;
    path_ = std::move(o.path_);
    o.handle_ = nullptr;
  }
  return *this;
}

int64_t Tokenizer::vocab_size() const { return shim().vocab_size(handle_); }

Encoding Tokenizer::encode(const std::string& text, const std::function<bool(uint64_t, uint64_t)>& progress) const {
  const ShimApi& api = shim();
  Encoding out;
  constexpr size_t kPiece = 1 << 16;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = std::min(text.size(), pos + kPiece);
    if (end < text.size()) {
      const size_t nl = text.rfind('\n', end);
      if (nl != std::string::npos && nl > pos) end = nl + 1;
      else while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;  // whole characters
    }
    int32_t* ids = nullptr;
    uint32_t *begins = nullptr, *ends = nullptr;
    char err[512] = {0};
    const int64_t n = api.encode(handle_, text.data() + pos, end - pos, &ids, &begins, &ends, err, sizeof err);
    if (n < 0) {
      api.free_buffer(ids); api.free_buffer(begins); api.free_buffer(ends);
      throw TokenizerError(std::string("tokenizer: encoding failed: ") + err);
    }
    for (int64_t i = 0; i < n; ++i) {
      out.ids.push_back(ids[i]);
      out.begin.push_back(static_cast<int64_t>(pos + begins[i]));
      out.end.push_back(static_cast<int64_t>(pos + ends[i]));
    }
    api.free_buffer(ids); api.free_buffer(begins); api.free_buffer(ends);
    pos = end;
    if (progress && !progress(pos, text.size())) throw std::runtime_error("cancelled");
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const ShimApi& api = shim();
  const int64_t V = vocab_size();
  for (int32_t id : ids)
    if (id < 0 || id >= V) throw TokenizerError("tokenizer: id " + std::to_string(id) + " is outside the vocabulary");
  char* s = api.decode(handle_, ids.data(), ids.size());
  if (!s) throw TokenizerError("tokenizer: decoding failed");
  std::string out(s);
  api.free_buffer(s);
  return out;
}

std::string Tokenizer::piece(int32_t id) const {
  char buf[256];
  if (shim().id_to_piece(handle_, id, buf, sizeof buf) != 0) throw TokenizerError("tokenizer: no piece " + std::to_string(id));
  return buf;
}

void Tokenizer::train(const std::vector<std::string>& inputs, const std::string& model_prefix, int64_t vocab_size,
                      int64_t max_sentences) {
  if (inputs.empty()) throw TokenizerError("tokenizer-train: no input files");
  if (vocab_size < 64 || vocab_size > 65535) throw TokenizerError("tokenizer-train: vocabulary size must be in [64, 65535]");
  std::string files;
  for (const std::string& f : inputs) {
    file_size_checked(f);
    if (f.find(',') != std::string::npos || f.find(' ') != std::string::npos)
      throw TokenizerError("tokenizer-train: file names with commas or spaces are not supported: " + f);
    files += (files.empty() ? "" : ",") + f;
  }
  if (model_prefix.empty() || model_prefix.find(' ') != std::string::npos || model_prefix.find(',') != std::string::npos)
    throw TokenizerError("tokenizer-train: the output prefix must be non-empty, without spaces or commas: \"" +
                         model_prefix + "\"");
  // SentencePiece writes PREFIX.model and PREFIX.vocab itself: it writes them under a
  // temporary prefix here, renamed into place only when training succeeded.
  const std::string partial = model_prefix + ".partial-" + std::to_string(::getpid());
  const std::string args = "--input=" + files + " --model_prefix=" + partial +
                           " --vocab_size=" + std::to_string(vocab_size) +
                           " --model_type=unigram --character_coverage=0.9999 --byte_fallback=true"
                           " --split_digits=true --input_sentence_size=" + std::to_string(max_sentences) +
                           " --shuffle_input_sentence=true --num_threads=" + std::to_string(std::max(1u, std::thread::hardware_concurrency())) +
                           " --minloglevel=1";
  char err[1024] = {0};
  const int status = shim().train(args.c_str(), err, sizeof err);
  if (status != 0) {
    std::remove((partial + ".model").c_str());
    std::remove((partial + ".vocab").c_str());
    throw TokenizerError(std::string("tokenizer-train: ") + err);
  }
  for (const char* ext : {".vocab", ".model"})
    if (std::rename((partial + ext).c_str(), (model_prefix + ext).c_str()) != 0)
      throw TokenizerError("tokenizer-train: cannot write " + model_prefix + ext + ": " + std::strerror(errno));
}

}  // namespace memmamba
