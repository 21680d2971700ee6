// What the CUDA test programs share: how a check is reported, and how a program skips
// without a GPU (exit 77, which CTest reports as skipped) and ends (the failures counted).
#pragma once
#include <torch/cuda.h>

#include <cstdio>
#include <functional>
#include <string>

#include "model/runtime.h"

namespace memmamba::cuda_testing {

inline int failures = 0;

inline void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

inline int run_on_gpu(const std::function<void()>& tests) {
  if (!torch::cuda::is_available()) {
    std::printf("SKIPPED: no CUDA device (or this LibTorch has no CUDA); the CUDA tests run on the GPU machine\n");
    return 77;
  }
  configure_cpu_runtime();
  tests();
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace memmamba::cuda_testing
