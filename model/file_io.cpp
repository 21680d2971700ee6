#include "model/file_io.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace memmamba {

uint64_t file_size_checked(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw FileError("cannot open " + path + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw FileError(path + " is a directory, not a file");
  if (!S_ISREG(st.st_mode)) throw FileError(path + " is not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

std::string read_file(const std::string& path, uint64_t max_bytes) {
  uint64_t size = file_size_checked(path);
  if (size > max_bytes)
    throw FileError(path + " is " + std::to_string(size) + " bytes, more than the limit of " + std::to_string(max_bytes));
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw FileError("cannot open " + path + ": " + std::strerror(errno));
  std::string data(size, '\0');
  size_t got = size ? std::fread(data.data(), 1, size, f) : 0;
  bool err = std::ferror(f);
  std::fclose(f);
  if (err || got != size) throw FileError("cannot read " + path + " completely");
  return data;
}

void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& writer) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw FileError("cannot write " + tmp + ": " + std::strerror(errno));
  try {
    writer(f);
    if (std::fflush(f) != 0 || std::ferror(f)) throw FileError("cannot write " + path + ": " + std::strerror(errno));
    ::fsync(::fileno(f));
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    throw FileError("cannot write " + path + ": " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    throw FileError("cannot replace " + path + ": " + std::strerror(e));
  }
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_file_atomic(path, [&](std::FILE* f) {
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())
      throw FileError("cannot write " + path + ": " + std::strerror(errno));
  });
}

}  // namespace memmamba
