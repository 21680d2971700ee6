#include "model/profile.h"

#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace memmamba::profile {

namespace {
struct Totals {
  double seconds = 0;
  int64_t calls = 0;
};
std::mutex& totals_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, Totals>& totals() {
  static std::map<std::string, Totals> t;
  return t;
}
bool& switch_state() {
  static bool on = [] {
    const char* v = std::getenv("MEMMAMBA_PROFILE");
    return v != nullptr && *v != '\0' && std::string(v) != "0";
  }();
  return on;
}
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

bool enabled() { return switch_state(); }
void set_enabled(bool on) { switch_state() = on; }

Section::Section(const char* name, const torch::Device& device) {
  if (!enabled()) return;
  name_ = name;
  cuda_ = device.is_cuda();
  if (cuda_) torch::cuda::synchronize();
  start_ = now_seconds();
}

Section::~Section() {
  if (name_ == nullptr) return;
  if (cuda_) torch::cuda::synchronize();
  const double elapsed = now_seconds() - start_;
  std::lock_guard<std::mutex> lock(totals_mutex());
  Totals& t = totals()[name_];
  t.seconds += elapsed;
  ++t.calls;
}

std::string report(double total_seconds) {
  std::vector<std::pair<std::string, Totals>> rows;
  {
    std::lock_guard<std::mutex> lock(totals_mutex());
    rows.assign(totals().begin(), totals().end());
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  std::string out;
  char line[160];
  std::snprintf(line, sizeof line, "%-28s %10s %8s %8s\n", "section", "seconds", "calls", "share");
  out += line;
  for (const auto& [name, t] : rows) {
    std::snprintf(line, sizeof line, "%-28s %10.4f %8lld %7.1f%%\n", name.c_str(), t.seconds,
                  static_cast<long long>(t.calls), total_seconds > 0 ? 100.0 * t.seconds / total_seconds : 0.0);
    out += line;
  }
  return out;
}

void reset() {
  std::lock_guard<std::mutex> lock(totals_mutex());
  totals().clear();
}

}  // namespace memmamba::profile
