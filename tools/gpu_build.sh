#!/usr/bin/env bash
# Builds the model library, CLI and CUDA tests on the GPU machine (CUDA LibTorch from
# Python's torch package, no Qt). Usage: tools/gpu_build.sh [build dir]
set -euo pipefail
build=${1:-build-gpu}
mkdir -p "$build"
prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
# NCCL's header for the data-parallel process group: the wheel's nvidia-nccl package has it.
nccl=()
nccl_include=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "include"))' 2>/dev/null || true)
[ -f "$nccl_include/nccl.h" ] && nccl=(-DNCCL_INCLUDE_DIR="$nccl_include")
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" -DMEMMAMBA_CUDA=ON "${nccl[@]}" \
  -DCMAKE_CUDA_COMPILER=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)} >"$build/configure.log" 2>&1 ||
  { tail -40 "$build/configure.log"; exit 1; }
grep -E "data parallel" "$build/configure.log" || true
cmake --build "$build" -j"$(nproc)" 2>&1 | grep -E "error|warning: |FAILED" | head -60 || true
test -x "$build/bin/memmamba" && test -x "$build/tests/test_cuda" && test -x "$build/tests/test_cuda_step"
