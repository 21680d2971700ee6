#include "model/safetensors.h"
#include <string_view>
#include <cerrno>
#include <unistd.h>
#include <sys/mman.h>
#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "model/file_io.h"
#include "model/json.h"

namespace memmamba {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: case DType::U64: return 8;
    case DType::F32: case DType::I32: case DType::U32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: case DType::U16: return 2;
    case DType::I8: case DType::U8: case DType::Bool: return 1;
  }
  return 1;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::U16: return "U16";
    case DType::U32: return "U32";
    case DType::U64: return "U64";
    case DType::Bool: return "BOOL";
  }
  return "?";
}

DType dtype_from_name(const std::string& n) {
  static const std::pair<const char*, DType> table[] = {
      {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
      {"I64", DType::I64}, {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8},
      {"U8", DType::U8},   {"U16", DType::U16}, {"U32", DType::U32}, {"U64", DType::U64},
      {"BOOL", DType::Bool}};
  for (const auto& [name, t] : table)
    if (n == name) return t;
  throw FormatError("unknown dtype \"" + n + "\"");
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile SafetensorsFile::load(const std::string& path) {
  constexpr uint64_t kMapAbove = uint64_t{64} << 20;
  const uint64_t size = file_size_checked(path);
  if (size < kMapAbove) return parse(read_file(path, uint64_t{1} << 36), path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw FileError("cannot open " + path + ": " + std::strerror(errno));
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (map == MAP_FAILED) throw FileError("cannot map " + path + ": " + std::strerror(map_errno));
  ::madvise(map, size, MADV_SEQUENTIAL);
  std::shared_ptr<const void> owner(map, [size](const void* p) { ::munmap(const_cast<void*>(p), size); });
  return parse_bytes(std::move(owner), static_cast<const char*>(map), size, path);
}

SafetensorsFile SafetensorsFile::parse(std::string bytes, const std::string& origin) {
  auto owned = std::make_shared<const std::string>(std::move(bytes));
  const char* data = owned->data();
  const uint64_t size = owned->size();
  return parse_bytes(std::shared_ptr<const void>(owned, owned.get()), data, size, origin);
}

SafetensorsFile SafetensorsFile::parse_bytes(std::shared_ptr<const void> owner, const char* data, uint64_t size,
                                             const std::string& origin) {
  const std::string_view bytes(data, size);
  auto fail = [&](const std::string& msg) -> FormatError { return FormatError(origin + ": " + msg); };
  if (bytes.size() < 8) throw fail("truncated: " + std::to_string(bytes.size()) + " bytes is too short for a safetensors file");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > kMaxHeaderBytes)
    throw fail("header too large: " + std::to_string(header_len) + " bytes (limit " + std::to_string(kMaxHeaderBytes) + ")");
  if (header_len > bytes.size() - 8)
    throw fail("truncated: header claims " + std::to_string(header_len) + " bytes but the file holds " +
               std::to_string(bytes.size() - 8) + " after the length");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = bytes.size() - data_start;

  Json header;
  try {
    header = Json::parse(std::string(bytes.substr(8, header_len)));
  } catch (const JsonError& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw fail("header is not a JSON object");

  SafetensorsFile f;
  f.origin_ = origin;
  struct Span { uint64_t begin, end; std::string name; };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.as_object()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw fail("__metadata__ is not an object");
      for (const auto& [k, v] : entry.as_object()) {
        if (!v.is_string()) throw fail("__metadata__ value \"" + k + "\" is not a string");
        f.metadata_[k] = v.as_string();
      }
      continue;
    }
    try {
      TensorView view;
      view.dtype = dtype_from_name(entry.at("dtype").as_string("dtype"));
      uint64_t numel = 1;
      for (const Json& d : entry.at("shape").as_array("shape")) {
        int64_t dim = d.as_int("shape entry");
        if (dim < 0) throw FormatError("negative dimension");
        if (dim > 0 && numel > (uint64_t{1} << 48) / static_cast<uint64_t>(dim)) throw FormatError("shape too large");
        numel *= static_cast<uint64_t>(dim);
        view.shape.push_back(dim);
      }
      const auto& offsets = entry.at("data_offsets").as_array("data_offsets");
      if (offsets.size() != 2) throw FormatError("data_offsets must hold two integers");
      int64_t begin = offsets[0].as_int("data_offsets"), end = offsets[1].as_int("data_offsets");
      if (begin < 0 || end < begin) throw FormatError("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] are invalid");
      if (static_cast<uint64_t>(end) > data_size)
        throw FormatError("data_offsets end " + std::to_string(end) + " is past the end of the data (" + std::to_string(data_size) +
                          " bytes): the file is truncated or corrupt");
      view.nbytes = static_cast<uint64_t>(end - begin);
      if (view.nbytes != numel * dtype_size(view.dtype))
        throw FormatError("holds " + std::to_string(view.nbytes) + " bytes but shape and dtype need " +
                          std::to_string(numel * dtype_size(view.dtype)));
      if (end > begin) spans.push_back({static_cast<uint64_t>(begin), static_cast<uint64_t>(end), name});
      view.data = nullptr;  // set once bytes_ has its final address
      f.tensors_.emplace(name, std::move(view));
    } catch (const std::exception& e) {
      throw fail("tensor \"" + name + "\": " + e.what());
    }
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end)
      throw fail("tensors \"" + spans[i - 1].name + "\" and \"" + spans[i].name + "\" overlap");
  f.storage_ = std::move(owner);
  for (auto& [name, view] : f.tensors_) view.data = reinterpret_cast<const uint8_t*>(data) + data_start;
  for (const Span& s : spans) {
    f.tensors_[s.name].data = reinterpret_cast<const uint8_t*>(data) + data_start + s.begin;
  }
  return f;
}

const TensorView& SafetensorsFile::get(const std::string& name, DType expected) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw FormatError(origin_ + ": missing tensor \"" + name + "\"");
  if (it->second.dtype != expected)
    throw FormatError(origin_ + ": tensor \"" + name + "\" has dtype " + dtype_name(it->second.dtype) + ", expected " +
                      dtype_name(expected));
  return it->second;
}

namespace {
uint64_t checked_bytes(const std::string& name, DType dtype, const std::vector<int64_t>& shape, uint64_t nbytes) {
  uint64_t numel = 1;
  for (int64_t d : shape) numel *= static_cast<uint64_t>(d);
  if (numel * dtype_size(dtype) != nbytes) throw FormatError("internal: size mismatch writing " + name);
  return nbytes;
}
}  // namespace

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
                            uint64_t nbytes) {
  checked_bytes(name, dtype, shape, nbytes);
  entries_.emplace_back(name, Entry{dtype, std::move(shape), std::string(static_cast<const char*>(data), nbytes), nullptr, nbytes});
}

void SafetensorsWriter::add_view(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
                                 uint64_t nbytes) {
  checked_bytes(name, dtype, shape, nbytes);
  entries_.emplace_back(name, Entry{dtype, std::move(shape), {}, static_cast<const char*>(data), nbytes});
}

std::vector<const std::pair<std::string, SafetensorsWriter::Entry>*> SafetensorsWriter::data_order() const {
  // Widest elements first: with the 8-byte aligned header every array then starts at an
  // offset aligned for its type, so readers can use the mapped bytes in place.
  std::vector<const std::pair<std::string, Entry>*> order;
  for (const auto& entry : entries_) order.push_back(&entry);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return dtype_size(a->second.dtype) > dtype_size(b->second.dtype);
  });
  return order;
}

std::string SafetensorsWriter::header() const {
  Json header = Json::object();
  if (!metadata_.empty()) {
    Json meta = Json::object();
    for (const auto& [k, v] : metadata_) meta[k] = v;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const auto* item : data_order()) {
    const auto& [name, e] = *item;
    Json entry = Json::object();
    entry["dtype"] = dtype_name(e.dtype);
    Json shape = Json::array();
    for (int64_t d : e.shape) shape.push_back(d);
    entry["shape"] = shape;
    entry["data_offsets"] = Json(Json::Array{Json(static_cast<int64_t>(offset)), Json(static_cast<int64_t>(offset + e.nbytes))});
    header[name] = entry;
    offset += e.nbytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h += ' ';  // keep arrays 8-byte aligned
  std::string out(8, '\0');
  uint64_t len = h.size();
  std::memcpy(out.data(), &len, 8);
  return out + h;
}

std::string SafetensorsWriter::serialize() const {
  std::string out = header();
  for (const auto* entry : data_order()) out.append(entry->second.bytes(), entry->second.nbytes);
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
  const std::string head = header();
  write_file_atomic(path, [&](std::FILE* f) {
    auto put = [&](const char* data, uint64_t n) {
      if (n && std::fwrite(data, 1, n, f) != n) throw FileError("cannot write " + path + ": disk full?");
    };
    put(head.data(), head.size());
    for (const auto* entry : data_order()) put(entry->second.bytes(), entry->second.nbytes);
  });
}

}  // namespace memmamba
