// What the selective scan returns: shared by the scan (model/selective_scan.h) and its CUDA
// kernels' seam (model/cuda/scan_dispatch.h), so neither includes the other.
#pragma once
#include <torch/types.h>

namespace memmamba {

struct ScanOutput {
  torch::Tensor y;           // [B, T, Di], dtype of u
  torch::Tensor last_state;  // [B, Di, N], fp32
};

}  // namespace memmamba
