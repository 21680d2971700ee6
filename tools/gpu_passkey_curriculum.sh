#!/usr/bin/env bash
# Passkey fine-tuning with a short-to-long curriculum (memory-findings.md: copying is
# learned at short range first): one stage per T in STAGES, each from the previous stage's
# weights, every row a passkey example (filler haystack, book text before it); then the
# passkey grid. MODEL is mem (MemMamba-small, tau1 = TAU) or mamba. Results in $OUT/NAME-*.
#   tools/gpu_passkey_curriculum.sh NAME MODEL "128 256 512 1024" STEPS_PER_STAGE TAU LR
set -euo pipefail
name=$1 model=$2 stages=$3 steps=${4:-150} tau=${5:-0.75} lr=${6:-1e-3}
cli=build-gpu/bin/memmamba
out=${OUT:-runs}
mkdir -p "$out"
init=sample_data/memmamba-small.safetensors extra=(--tau-note "$tau")
[ "$model" = mamba ] && init=sample_data/mamba-small.safetensors extra=()
start=$(date +%s)
: > "$out/$name-metrics.csv"
for T in $stages; do
  batch=$(( T <= 256 ? 32 : 16 ))
  "$cli" train --data shards --device cuda --passkey-fraction 1.0 --haystack filler --seq-len $T --batch $batch \
    --lr "$lr" --schedule constant --warmup 20 --steps "$steps" --eval-every 0 --checkpoint-every 0 --eval-batches 1 \
    --init "$init" "${extra[@]}" --out /tmp/$name-$T >/dev/null 2>&1
  init=/tmp/$name-$T/model.safetensors extra=()
  sed "s/^/$T,/" /tmp/$name-$T/metrics.csv >> "$out/$name-metrics.csv"
  echo "$name T=$T: last loss $(tail -n 1 /tmp/$name-$T/metrics.csv | cut -d, -f3), $(( $(date +%s) - start )) s"
done
"$cli" eval passkey --checkpoint "$init" --device cuda --haystack filler \
  --lengths 256,1024,4096,16384 --depths 0.1,0.5,0.9 --samples 2 --out "$out/$name-filler" 2>&1 | tail -n 7
rm -f "$out/$name-filler.csv"
