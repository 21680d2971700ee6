#!/usr/bin/env bash
# On the GPU machine: builds (tools/gpu_build.sh), runs the CUDA tests, then traces one
# million tokens on the GPU and reports wall time, peak host RSS and peak GPU memory.
#   tools/gpu_check.sh TEXT_FILE
set -euo pipefail
text=${1:?text file}
tools/gpu_build.sh
build-gpu/tests/test_cuda 2>&1 | tail -n 40
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > /tmp/gpu-mem.log &
sampler=$!
/usr/bin/time -v build-gpu/bin/memmamba run "$text" --device cuda --max-tokens 1000000 --out /tmp/million.trace \
  2>&1 | tr '\r' '\n' | grep -E "wrote|layer|^ +[0-9]|Elapsed|Maximum resident" | tail -n 14
kill $sampler
echo "peak GPU memory used (MiB, nvidia-smi): $(sort -n /tmp/gpu-mem.log | tail -n 1)"
