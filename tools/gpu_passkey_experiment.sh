#!/usr/bin/env bash
# One passkey fine-tuning experiment on the GPU machine, both models on the same rows:
# from the shipped checkpoints, every row a passkey example (filler haystack), T = 1024,
# MemMamba with tau1 = TAU; then the passkey grid for both. Results under $OUT.
#   tools/gpu_passkey_experiment.sh STEPS TAU SECONDS_CAP
set -euo pipefail
steps=${1:-240} tau=${2:-0.75} cap=${3:-240}
cli=build-gpu/bin/memmamba
out=${OUT:-runs}
mkdir -p "$out"
common=(--data shards --device cuda --passkey-fraction 1.0 --haystack filler --seq-len 1024 --batch 16 --lr 5e-4
        --schedule constant --warmup 20 --steps "$steps" --eval-every 0 --checkpoint-every 0 --eval-batches 1)
start=$(date +%s)
timeout -s INT "$cap" "$cli" train "${common[@]}" --init sample_data/memmamba-small.safetensors --tau-note "$tau" \
  --out /tmp/ft-mem 2>&1 | awk 'NR % 40 == 0 || /stopped/'
echo "memmamba fine-tune: $(( $(date +%s) - start )) s"
done_steps=$(tail -n 1 /tmp/ft-mem/metrics.csv | cut -d, -f1)
start=$(date +%s)
"$cli" train "${common[@]}" --steps "$done_steps" --init sample_data/mamba-small.safetensors --out /tmp/ft-mamba 2>&1 |
  awk 'NR % 40 == 0 || /stopped/'
echo "mamba fine-tune ($done_steps steps): $(( $(date +%s) - start )) s"
cp /tmp/ft-mem/metrics.csv "$out/mem-metrics.csv"
cp /tmp/ft-mamba/metrics.csv "$out/mamba-metrics.csv"
for m in mem mamba; do
  for h in filler book; do
    "$cli" eval passkey --checkpoint /tmp/ft-$m/model.safetensors --device cuda --haystack $h \
      --lengths 1024,4096,16384 --depths 0.1,0.5,0.9 --samples 2 --out "$out/$m-$h" 2>&1 | tail -n 6
    rm -f "$out/$m-$h.csv"
  done
done
