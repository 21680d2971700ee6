// Where a run's time goes, by named section (set MEMMAMBA_PROFILE=1). A section waits for
// the GPU at both ends, so the figures are the GPU's time per section (and the run is a
// little slower while profiling). Off, a section costs one branch.
#pragma once
#include <torch/types.h>

#include <memory>
#include <string>

namespace at {
class RecordFunction;
}

namespace memmamba::profile {

bool enabled();
void set_enabled(bool on);

// A named section; while a Timeline records, it also shows there (as a user annotation).
class Section {
 public:
  Section(const char* name, const torch::Device& device);
  ~Section();
  Section(const Section&) = delete;
  Section& operator=(const Section&) = delete;

 private:
  const char* name_ = nullptr;
  bool cuda_ = false;
  double start_ = 0;
  std::unique_ptr<at::RecordFunction> annotation_;
};

// One line per section: total seconds, calls, share of `total_seconds` (sorted by time).
std::string report(double total_seconds);
void reset();

// A timeline of every operator and GPU kernel (LibTorch's Kineto profiler), saved as a
// Chrome trace (chrome://tracing, Perfetto; tools/timeline_summary.py sums it up). Asked for
// with MEMMAMBA_TIMELINE=PATH: training records steps FIRST-LAST of MEMMAMBA_TIMELINE_STEPS
// (default 5-8), `memmamba bench` each length's timed run (PATH.LENGTH). Where the LibTorch at
// hand cannot record one (Debian's has no Kineto), a warning says so.
class Timeline {
 public:
  // Reads the environment; does nothing unless MEMMAMBA_TIMELINE is set. `suffix` goes
  // after the path (each rank of a job writes its own file).
  Timeline(bool cuda, const std::string& suffix);
  ~Timeline();
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;
  // Called before each training step: starts recording at the first step asked for and
  // saves the file after the last.
  void before_step(int64_t step);
  // Starts recording now (a benchmark's timed run), whatever the steps asked for.
  void start();
  // Saves what was recorded (if recording), e.g. when a loop ends early.
  void finish();

 private:
  std::string path_;
  int64_t first_ = 5, last_ = 8;
  bool cuda_ = false, recording_ = false;
};

}  // namespace memmamba::profile
