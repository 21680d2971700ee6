#!/usr/bin/env bash
# Trains one model on the GPU machine from the carried token shards (shards/, made here
# with `memmamba data`), then writes a bf16 copy and the metrics under $OUT/NAME.
# Usage: tools/gpu_train.sh NAME STEPS [memmamba train options...]
#   STEPS = "probe:SECONDS": time 12 steps first and pick the steps that fill SECONDS.
set -euo pipefail
name=$1 steps=$2
shift 2
cli=build-gpu/bin/memmamba
out=${OUT:-runs}/$name
mkdir -p "$out"
common=(--data shards --device cuda --seq-len 2048 --batch 8 --lr 2e-3 --warmup 100 --eval-batches 2 "$@")
if [[ $steps == probe:* ]]; then
  seconds=${steps#probe:}
  "$cli" train "${common[@]}" --out /tmp/probe-"$name" --steps 12 --eval-every 0 --checkpoint-every 0 --passkey-fraction 0.25 >/dev/null 2>&1
  tps=$(tail -n 6 /tmp/probe-"$name"/metrics.csv | head -n 5 | awk -F, '{s += $6} END {print s / NR}')
  steps=$(awk -v s="$seconds" -v t="$tps" 'BEGIN {n = int(s * t / (8 * 2048)); print (n < 50 ? 50 : n)}')
  echo "probe: $tps tokens/s -> $steps steps for $seconds s"
fi
start=$(date +%s)
"$cli" train "${common[@]}" --out /tmp/run-"$name" --steps "$steps" --eval-every 100 --checkpoint-every 0 2>&1 |
  awk 'NR % 50 == 0 || /held-out/ || /stopped/'
echo "trained $steps steps in $(( $(date +%s) - start )) s"
"$cli" convert /tmp/run-"$name"/model.safetensors "$out/model-bf16.safetensors" --dtype bf16
cp /tmp/run-"$name"/metrics.csv "$out/metrics.csv"
