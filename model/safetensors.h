// The safetensors container (8-byte little-endian header length, JSON header,
// raw little-endian arrays), read with every offset and size checked. Torch-free,
// so traces can be read by the views alone.
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace memmamba {

class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, U16, U32, U64, Bool };
size_t dtype_size(DType t);
const char* dtype_name(DType t);
DType dtype_from_name(const std::string& name);  // throws FormatError

struct TensorView {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the owning SafetensorsFile
  uint64_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  static constexpr uint64_t kMaxHeaderBytes = 100u << 20;

  // Parses and validates; `origin` names the source in error messages.
  static SafetensorsFile parse(std::string bytes, const std::string& origin);
  // Reads the file; large files are memory-mapped instead of copied (a 1M-token trace
  // is over a gigabyte: mapping saves that copy and its time), small ones read.
  static SafetensorsFile load(const std::string& path);

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  bool has(const std::string& name) const { return tensors_.count(name) > 0; }
  // Throws FormatError naming the file and tensor when missing or of another dtype.
  const TensorView& get(const std::string& name, DType expected) const;
  template <typename T>
  std::vector<T> read_vector(const std::string& name, DType expected) const;
  const std::string& origin() const { return origin_; }
  // Owns the bytes every TensorView points into: keep it to use views after this object.
  const std::shared_ptr<const void>& storage() const { return storage_; }

 private:
  static SafetensorsFile parse_bytes(std::shared_ptr<const void> owner, const char* bytes, uint64_t size,
                                     const std::string& origin);
  std::shared_ptr<const void> storage_;  // the bytes (a string or a file mapping) the views point into
  std::string origin_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorView> tensors_;
};

// Collects arrays and writes them atomically in one file.
class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // The data is copied, so temporaries may be passed.
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data, uint64_t nbytes);
  // The data is not copied: it must stay alive and unchanged until write() or serialize()
  // (large traces are written without a second copy in memory).
  void add_view(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data, uint64_t nbytes);
  template <typename T>
  void add_vector(const std::string& name, DType dtype, const std::vector<T>& v) {
    add(name, dtype, {static_cast<int64_t>(v.size())}, v.data(), v.size() * sizeof(T));
  }
  // Any contiguous container with data() and size() (std::vector, Column).
  template <typename Container>
  void add_vector_view(const std::string& name, DType dtype, const Container& v) {
    add_view(name, dtype, {static_cast<int64_t>(v.size())}, v.data(),
             v.size() * sizeof(typename Container::value_type));
  }
  void write(const std::string& path) const;
  std::string serialize() const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::string owned;               // copied data (used when `view` is null)
    const char* view = nullptr;      // the caller's data, not copied
    uint64_t nbytes = 0;
    const char* bytes() const { return view ? view : owned.data(); }
  };
  std::string header() const;
  std::vector<const std::pair<std::string, Entry>*> data_order() const;
  std::map<std::string, std::string> metadata_;
  std::vector<std::pair<std::string, Entry>> entries_;
};

template <typename T>
std::vector<T> SafetensorsFile::read_vector(const std::string& name, DType expected) const {
  const TensorView& v = get(name, expected);
  if (dtype_size(expected) != sizeof(T)) throw FormatError("internal: element size mismatch for " + name);
  std::vector<T> out(static_cast<size_t>(v.nbytes / sizeof(T)));
  if (v.nbytes) std::memcpy(out.data(), v.data, v.nbytes);
  return out;
}

}  // namespace memmamba
