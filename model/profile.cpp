#include "model/profile.h"

#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/cuda.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "model/log.h"

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
// True while a Timeline records: sections then annotate it.
std::atomic<bool>& timeline_recording() {
  static std::atomic<bool> on{false};
  return on;
}
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

bool enabled() { return switch_state(); }
void set_enabled(bool on) { switch_state() = on; }

Section::Section(const char* name, const torch::Device& device) {
  if (timeline_recording()) {
    annotation_ = std::make_unique<at::RecordFunction>(at::RecordScope::USER_SCOPE);
    if (annotation_->isActive()) annotation_->before(name);
  }
  if (!enabled()) return;
  name_ = name;
  cuda_ = device.is_cuda();
  if (cuda_) torch::cuda::synchronize();
  start_ = now_seconds();
}

Section::~Section() {
  annotation_.reset();  // ends the annotation before the wait below
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

Timeline::Timeline(bool cuda, const std::string& suffix) : cuda_(cuda) {
  const char* path = std::getenv("MEMMAMBA_TIMELINE");
  if (path == nullptr || *path == '\0') return;
  path_ = std::string(path) + suffix;
  if (const char* steps = std::getenv("MEMMAMBA_TIMELINE_STEPS")) {
    long long a = 0, b = 0;
    if (std::sscanf(steps, "%lld-%lld", &a, &b) == 2 && a >= 0 && b >= a) {
      first_ = a;
      last_ = b;
    } else {
      log::warn("MEMMAMBA_TIMELINE_STEPS should read FIRST-LAST (e.g. 5-8), not '" + std::string(steps) +
                "': recording steps 5-8");
    }
  }
}

Timeline::~Timeline() {
  try {
    finish();
  } catch (...) {  // a destructor must not throw; finish() already warned
  }
}

void Timeline::before_step(int64_t step) {
  if (path_.empty()) return;
  if (step == first_ && !recording_) start();
  else if (step == last_ + 1) finish();
}

void Timeline::start() {
  if (path_.empty() || recording_) return;
  namespace prof = torch::profiler::impl;
  try {
    const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
    std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
    if (cuda_) activities.insert(prof::ActivityType::CUDA);
    if (cuda_) torch::cuda::synchronize();
    torch::autograd::profiler::prepareProfiler(config, activities);
    torch::autograd::profiler::enableProfiler(config, activities);
    recording_ = true;
    timeline_recording() = true;
    log::info("timeline: recording to " + path_);
  } catch (const std::exception& e) {
    const std::string why = e.what();
    log::warn("timeline: this LibTorch cannot record one (" + why.substr(0, why.find('\n')) + ")");
    path_.clear();
  }
}

void Timeline::finish() {
  if (!recording_) return;
  recording_ = false;
  timeline_recording() = false;
  if (cuda_) torch::cuda::synchronize();
  try {
    auto result = torch::autograd::profiler::disableProfiler();
    result->save(path_);
    log::info("timeline: saved " + path_);
  } catch (const std::exception& e) {  // LibTorch's message goes on with a backtrace: its first line says it
    const std::string why = e.what();
    log::warn("timeline: could not save " + path_ + ": " + why.substr(0, why.find('\n')));
  }
  path_.clear();
}

}  // namespace memmamba::profile
