#!/usr/bin/env bash
# The memory's speed on the GPU machine in one call: build, the CUDA tests, then the
# benchmarks behind docs/performance.md (the bundled models on a sample book, untrained
# weights for dense notes, the three-model comparison, a profile by section, training
# throughput from carried shards). Logs go to $OUT (or /tmp).
# Shards: SHARDS, else made from gzipped books carried in gpu-carry/books (tools/gpu_shards.sh).
# Stages "rows" (step time by rows, to split a step into a fixed and a per-row part) and
# "timeline" (a Kineto timeline of training steps, summed up by tools/timeline_summary.py).
# Stage "step": step mode with and without the fused kernels (MEMMAMBA_NO_FUSED_STEP), alternated.
# Usage: [LENGTHS=4k,64k,256k,1m] [STAGES="test bench compare profile train rows timeline step"] [SHARDS=dir] tools/gpu_speed.sh
set -uo pipefail
out=${OUT:-/tmp}
lengths=${LENGTHS:-4k,64k,256k,1m}
stages=" ${STAGES:-test bench compare profile train} "
shards=${SHARDS:-gpu-carry/shards-speed}
start=$(date +%s)
tools/gpu_build.sh build-gpu || exit 1
echo "build: $(( $(date +%s) - start )) s"
bin=build-gpu/bin/memmamba
book=sample_data/The-Time-Machine_35.txt
mem=sample_data/memmamba-small.safetensors
base=sample_data/mamba-small.safetensors
has() { [[ "$stages" == *" $1 "* ]]; }
shards=$(tools/gpu_shards.sh "$shards" "$bin") || shards=""
source tools/gpu_lib.sh
run() { echo "== memmamba $*"; "$bin" "$@" 2>&1 | tee -a "$out/bench.log" | grep -v "^scan "; }
if has test; then
  build-gpu/tests/test_cuda 2>&1 | tee "$out/test_cuda.log" | grep -v "^ok  " | grep -v "ran out of memory" | tail -30
  echo "$(grep -c "^ok  " "$out/test_cuda.log") checks passed"
  build-gpu/tests/test_cuda_step 2>&1 | tee "$out/test_cuda_step.log" | grep -v "^ok  " | tail -20
fi
if has step; then  # step mode through the fused kernels and without them, two alternated rounds
  for round in 1 2; do
    for fused_off in 0 1; do
      for memory in "" --no-memory; do
        tps=$(MEMMAMBA_NO_FUSED_STEP=$fused_off "$bin" bench --device cuda --checkpoint "$mem" --no-trace $memory \
              --text "$book" --lengths 1k --step-tokens 1024 2>&1 | awk '/^step/{print $4}')
        echo "step mode, round $round, MEMMAMBA_NO_FUSED_STEP=$fused_off ${memory:-memory on}: $tps tokens/s"
      done
    done
  done
fi
if has bench; then
  run bench --device cuda --checkpoint "$mem" --no-trace --text "$book" --lengths "$lengths" --step-tokens 512
  run bench --device cuda --checkpoint "$mem" --no-trace --no-memory --text "$book" --lengths "$lengths" --step-tokens 512
  run bench --device cuda --checkpoint "$mem" --no-trace --bf16 --text "$book" --lengths "$lengths" --step-tokens 0
  run bench --device cuda --checkpoint "$mem" --no-trace --bf16 --no-memory --text "$book" --lengths "$lengths" --step-tokens 0
  run bench --device cuda --checkpoint "$mem" --text "$book" --lengths 64k --step-tokens 0
  run bench --device cuda --random-init 0 --no-trace --lengths 4k,64k --step-tokens 0
fi
has compare && run bench --device cuda --checkpoint "$mem" --compare transformer --lengths "$lengths"
if has profile; then
  export MEMMAMBA_PROFILE=1
  run bench --device cuda --checkpoint "$mem" --no-trace --text "$book" --lengths 64k --step-tokens 0
  run bench --device cuda --checkpoint "$mem" --no-trace --bf16 --text "$book" --lengths 64k --step-tokens 0
  run bench --device cuda --checkpoint "$mem" --text "$book" --lengths 64k --step-tokens 0
  # Step mode without its graph (profiling waits inside the step): where a step's time goes.
  run bench --device cuda --checkpoint "$mem" --no-trace --text "$book" --lengths 1k --step-tokens 256
  unset MEMMAMBA_PROFILE
fi
if has train && [ -n "$shards" ]; then
  for model in "$mem" "$base"; do
    echo "== train from $model, T 4096, batch 8, bf16"
    rm -rf /tmp/speed-run
    "$bin" train --data "$shards" --out /tmp/speed-run --device cuda --init "$model" --seq-len 4096 --batch 8 \
      --steps 25 --eval-every 100000 --checkpoint-every 100000 --passkey-fraction 0 2>&1 | tail -3
    cp /tmp/speed-run/metrics.csv "$out/train-$(basename "$model" .safetensors).csv"
    head -1 /tmp/speed-run/metrics.csv; tail -3 /tmp/speed-run/metrics.csv
  done
fi
train_args=(--data "$shards" --device cuda --init "$mem" --seq-len 4096 --steps 14 --eval-every 100000
            --checkpoint-every 100000 --passkey-fraction 0.25 --varied-cases)
if has rows && [ -n "$shards" ]; then
  echo "== step time by rows (MemMamba-small, T 4096, bf16, passkey rows 0.25; median of steps 5-14)"
  for rows in 1 2 4 8 16; do
    rm -rf /tmp/rows-run
    "$bin" train "${train_args[@]}" --out /tmp/rows-run --batch "$rows" > /dev/null 2>&1
    tps=$(median_tps /tmp/rows-run/metrics.csv 10)
    echo "rows $rows: $tps tokens/s, $(awk -v t="$tps" -v r="$rows" 'BEGIN{printf "%.1f", 4096*r/t*1000}') ms a step"
  done
fi
if has timeline && [ -n "$shards" ]; then
  for rows in 8 16; do
    rm -rf /tmp/tl-run
    MEMMAMBA_TIMELINE="$out/timeline-b$rows.json" MEMMAMBA_TIMELINE_STEPS=6-8 \
      "$bin" train "${train_args[@]}" --out /tmp/tl-run --batch "$rows" 2>&1 | grep -i timeline
    echo "== timeline, batch $rows, steps 6-8"
    python3 tools/timeline_summary.py "$out/timeline-b$rows.json" --top 25
    gzip -f "$out/timeline-b$rows.json"
  done
fi
echo "total: $(( $(date +%s) - start )) s"
