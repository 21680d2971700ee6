#!/usr/bin/env bash
# Passkey fine-tuning with a short-to-long curriculum (memory-findings.md: copying is
# learned at short range first): stages of T = 128, 256, 512, 1024, each from the previous
# stage's weights, every row a passkey example (filler haystack); both models on the same
# rows, MemMamba with tau1 = TAU. Then the passkey grid for both. Results under $OUT.
#   tools/gpu_passkey_curriculum.sh STEPS_PER_STAGE TAU LR
set -euo pipefail
steps=${1:-200} tau=${2:-0.75} lr=${3:-1e-3}
cli=build-gpu/bin/memmamba
out=${OUT:-runs}
mkdir -p "$out"
for m in mem mamba; do
  init=sample_data/memmamba-small.safetensors extra=(--tau-note "$tau")
  [ $m = mamba ] && init=sample_data/mamba-small.safetensors extra=()
  start=$(date +%s)
  : > "$out/$m-metrics.csv"
  for T in 128 256 512 1024; do
    batch=$(( T <= 256 ? 32 : 16 ))
    "$cli" train --data shards --device cuda --passkey-fraction 1.0 --haystack filler --seq-len $T --batch $batch \
      --lr "$lr" --schedule constant --warmup 20 --steps "$steps" --eval-every 0 --checkpoint-every 0 --eval-batches 1 \
      --init "$init" "${extra[@]}" --out /tmp/cur-$m-$T 2>&1 | awk -v T=$T 'NR % 100 == 0 {print "T=" T ": " $0}'
    init=/tmp/cur-$m-$T/model.safetensors extra=()
    sed "s/^/$T,/" /tmp/cur-$m-$T/metrics.csv >> "$out/$m-metrics.csv"
  done
  echo "$m curriculum: $(( $(date +%s) - start )) s"
  cp /tmp/cur-$m-1024/model.safetensors /tmp/cur-$m.safetensors
done
for m in mem mamba; do
  "$cli" eval passkey --checkpoint /tmp/cur-$m.safetensors --device cuda --haystack filler \
    --lengths 256,1024,4096,16384 --depths 0.1,0.5,0.9 --samples 2 --out "$out/cur-$m-filler" 2>&1 | tail -n 7
  rm -f "$out/cur-$m-filler.csv"
done
"$cli" convert /tmp/cur-mem.safetensors "$out/cur-mem-bf16.safetensors" --dtype bf16 >/dev/null
