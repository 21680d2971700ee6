#!/usr/bin/env bash
# The memory's speed on the GPU machine in one call: build, the CUDA tests, then the
# benchmarks behind docs/performance.md (the bundled models on a sample book, untrained
# weights for dense notes, the three-model comparison). Logs go to $OUT (or /tmp).
# Usage: tools/gpu_speed.sh   (LENGTHS=4k,64k,256k,1m by default)
set -uo pipefail
out=${OUT:-/tmp}
lengths=${LENGTHS:-4k,64k,256k,1m}
start=$(date +%s)
tools/gpu_build.sh build-gpu || exit 1
echo "build: $(( $(date +%s) - start )) s"
bin=build-gpu/bin/memmamba
book=sample_data/The-Time-Machine_35.txt
mem=sample_data/memmamba-small.safetensors
base=sample_data/mamba-small.safetensors
build-gpu/tests/test_cuda 2>&1 | tee "$out/test_cuda.log" | grep -v "^ok  " | tail -30
echo "$(grep -c "^ok  " "$out/test_cuda.log") checks passed"
run() { echo "== memmamba $*"; "$bin" "$@" 2>&1 | tee -a "$out/bench.log" | grep -v "^scan "; }
run bench --device cuda --checkpoint "$mem" --no-trace --text "$book" --lengths "$lengths" --step-tokens 512
run bench --device cuda --checkpoint "$mem" --no-trace --no-memory --text "$book" --lengths "$lengths" --step-tokens 512
run bench --device cuda --checkpoint "$mem" --no-trace --bf16 --text "$book" --lengths "$lengths" --step-tokens 0
run bench --device cuda --checkpoint "$mem" --no-trace --bf16 --no-memory --text "$book" --lengths "$lengths" --step-tokens 0
run bench --device cuda --checkpoint "$mem" --compare transformer --lengths "$lengths"
run bench --device cuda --checkpoint "$mem" --text "$book" --lengths 64k --step-tokens 0
run bench --device cuda --random-init 0 --no-trace --lengths 4k,64k --step-tokens 0
echo "total: $(( $(date +%s) - start )) s"
