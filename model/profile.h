// Where a run's time goes, by named section (set MEMMAMBA_PROFILE=1). A section waits for
// the GPU at both ends, so the figures are the GPU's time per section (and the run is a
// little slower while profiling). Off, a section costs one branch.
#pragma once
#include <torch/types.h>

#include <string>

namespace memmamba::profile {

bool enabled();
void set_enabled(bool on);

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
};

// One line per section: total seconds, calls, share of `total_seconds` (sorted by time).
std::string report(double total_seconds);
void reset();

}  // namespace memmamba::profile
