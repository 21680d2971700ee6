// What the CUDA test programs share: how a check is reported, how a program skips without a
// GPU (exit 77, which CTest reports as skipped) and ends (the failures counted), and the small
// model configs the memory's cases run on.
#pragma once
#include <torch/cuda.h>

#include <cstdio>
#include <functional>
#include <string>

#include "model/config.h"
#include "model/runtime.h"
#include "tests/test_helpers.h"

namespace memmamba::cuda_testing {

inline int failures = 0;

inline void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// The tests' tiny config with the given importance rule, pool policy and fusion.
inline ModelConfig model_case(ImportanceRule rule, PoolPolicy policy, FusionKind fusion) {
  ModelConfig c = testing::tiny_config();
  c.importance = rule;
  c.pool_policy = policy;
  c.fusion = fusion;
  return c;
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
