// The SentencePiece side of the tokenizer, behind a plain C interface. Built as a
// module and loaded with dlmopen into its own namespace: SentencePiece's protobuf
// must never meet LibTorch's in one link namespace. Only C types cross this line.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {
void set_error(char* err, int len, const std::string& msg) {
  if (!err || len <= 0) return;
  std::snprintf(err, static_cast<size_t>(len), "%s", msg.c_str());
}
}  // namespace

extern "C" {

void* mm_spm_create() { return new (std::nothrow) sentencepiece::SentencePieceProcessor(); }

void mm_spm_destroy(void* h) { delete static_cast<sentencepiece::SentencePieceProcessor*>(h); }

int mm_spm_load_from_bytes(void* h, const char* data, size_t len, char* err, int errlen) {
  try {
    auto status = static_cast<sentencepiece::SentencePieceProcessor*>(h)->LoadFromSerializedProto(
        std::string(data, len));
    if (!status.ok()) { set_error(err, errlen, status.ToString()); return 1; }
    return 0;
  } catch (const std::exception& e) {
    set_error(err, errlen, e.what());
    return 1;
  }
}

int mm_spm_vocab_size(void* h) { return static_cast<sentencepiece::SentencePieceProcessor*>(h)->GetPieceSize(); }

// Encodes `len` bytes; the three arrays are malloc'ed here and freed with mm_spm_free_buffer.
int64_t mm_spm_encode(void* h, const char* text, size_t len, int32_t** ids, uint32_t** begins, uint32_t** ends,
                      char* err, int errlen) {
  try {
    auto spt = static_cast<sentencepiece::SentencePieceProcessor*>(h)->EncodeAsImmutableProto(
        std::string_view(text, len));
    const auto pieces = spt.pieces();
    const size_t n = pieces.size();
    *ids = static_cast<int32_t*>(std::malloc(sizeof(int32_t) * (n ? n : 1)));
    *begins = static_cast<uint32_t*>(std::malloc(sizeof(uint32_t) * (n ? n : 1)));
    *ends = static_cast<uint32_t*>(std::malloc(sizeof(uint32_t) * (n ? n : 1)));
    if (!*ids || !*begins || !*ends) { set_error(err, errlen, "out of memory"); return -1; }
    for (size_t i = 0; i < n; ++i) {
      (*ids)[i] = static_cast<int32_t>(pieces[i].id());
      (*begins)[i] = pieces[i].begin();
      (*ends)[i] = pieces[i].end();
    }
    return static_cast<int64_t>(n);
  } catch (const std::exception& e) {
    set_error(err, errlen, e.what());
    return -1;
  }
}

// Decodes ids to a malloc'ed NUL-terminated string (freed with mm_spm_free_buffer).
char* mm_spm_decode(void* h, const int32_t* ids, size_t n) {
  try {
    std::vector<int> v(ids, ids + n);
    std::string s;
    auto status = static_cast<sentencepiece::SentencePieceProcessor*>(h)->Decode(v, &s);
    if (!status.ok()) return nullptr;
    char* out = static_cast<char*>(std::malloc(s.size() + 1));
    if (!out) return nullptr;
    std::memcpy(out, s.data(), s.size());
    out[s.size()] = '\0';
    return out;
  } catch (...) {
    return nullptr;
  }
}

int mm_spm_id_to_piece(void* h, int32_t id, char* buf, int buflen) {
  auto* p = static_cast<sentencepiece::SentencePieceProcessor*>(h);
  if (id < 0 || id >= p->GetPieceSize()) return -1;
  std::snprintf(buf, static_cast<size_t>(buflen), "%s", p->IdToPiece(id).c_str());
  return 0;
}

void mm_spm_free_buffer(void* p) { std::free(p); }

// Trains a model with SentencePiece's command-line style arguments.
int mm_spm_train(const char* args, char* err, int errlen) {
  try {
    auto status = sentencepiece::SentencePieceTrainer::Train(args);
    if (!status.ok()) { set_error(err, errlen, status.ToString()); return 1; }
    return 0;
  } catch (const std::exception& e) {
    set_error(err, errlen, e.what());
    return 1;
  }
}

}  // extern "C"
