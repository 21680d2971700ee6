// File helpers shared by every reader and writer: bounded whole-file reads
// and atomic writes (temporary name, fsync, rename), so no reader ever sees half a file.
#pragma once
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>

namespace memmamba {

class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Reads a regular file; refuses directories, unreadable files and files above max_bytes.
std::string read_file(const std::string& path, uint64_t max_bytes = (uint64_t{1} << 32));
uint64_t file_size_checked(const std::string& path);

// Writes through `writer` into path + ".tmp-<pid>", flushes, then renames over path.
// On any error the temporary file is removed and the old file stays as it was.
void write_file_atomic(const std::string& path, const std::function<void(std::FILE*)>& writer);
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace memmamba
