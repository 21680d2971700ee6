#!/usr/bin/env bash
# Builds the model library, CLI and CUDA tests on the GPU machine (CUDA LibTorch from
# Python's torch package, no Qt). Usage: tools/gpu_build.sh [build dir]
set -euo pipefail
build=${1:-build-gpu}
mkdir -p "$build"
prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DMEMMAMBA_CUDA=ON \
  -DCMAKE_CUDA_COMPILER=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)} >"$build/configure.log" 2>&1 ||
  { tail -40 "$build/configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" 2>&1 | grep -E "error|warning: |FAILED" | head -60 || true
test -x "$build/bin/memmamba" && test -x "$build/tests/test_cuda"
