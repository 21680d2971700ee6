#include "model/sample_files.h"

#include <filesystem>
#include <system_error>
#include <vector>

namespace memmamba {

std::string find_sample_file(const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::vector<fs::path> dirs;
  if (!ec) {
    dirs.push_back(exe.parent_path() / "../../sample_data");
    dirs.push_back(exe.parent_path() / "../share/memmamba/sample_data");
  }
  dirs.push_back("sample_data");
#ifdef MEMMAMBA_SOURCE_SAMPLES
  // A build directory outside the source tree (tools/gpu_build.sh /tmp/b) still finds the
  // source tree's samples.
  dirs.push_back(MEMMAMBA_SOURCE_SAMPLES);
#endif
  dirs.push_back("/usr/share/memmamba/sample_data");
  for (const auto& d : dirs)
    if (fs::exists(d / name, ec)) return fs::weakly_canonical(d / name, ec).string();
  return {};
}

}  // namespace memmamba
