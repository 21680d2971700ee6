#!/usr/bin/env bash
# Training beyond the SSM's horizon: a Mamba-small that learned the passkey at short range
# (curriculum D: T 128 -> 1024, STEPS each) lends its mixers, embedding and final norm to
# MemMamba-small (`--init-backbone`; memory weights from the shipped MemMamba, tau1 = TAU);
# both then train on the same passkey rows at T = LONG, where the SSM alone loses the key.
# Passkey grids for D, D+long (Mamba) and E (MemMamba) go to $OUT, with bf16 checkpoints.
#   tools/gpu_passkey_backbone.sh STEPS LONG LONG_STEPS TAU
set -euo pipefail
steps=${1:-1000} long=${2:-4096} long_steps=${3:-100} tau=${4:-0.75}
cli=build-gpu/bin/memmamba
out=${OUT:-runs}
mkdir -p "$out"
tools/gpu_passkey_curriculum.sh D mamba "128 256 512 1024" "$steps" 0 1e-3
common=(--data shards --device cuda --passkey-fraction 1.0 --haystack filler --seq-len "$long" --batch 8 --lr 5e-4
        --schedule constant --warmup 10 --steps "$long_steps" --eval-every 0 --checkpoint-every 0 --eval-batches 1)
start=$(date +%s)
"$cli" train "${common[@]}" --init sample_data/memmamba-small.safetensors --init-backbone /tmp/D-1024/model.safetensors \
  --tau-note "$tau" --out /tmp/E >/dev/null 2>&1
echo "E (MemMamba, backbone D, T=$long): last loss $(tail -n 1 /tmp/E/metrics.csv | cut -d, -f3), $(( $(date +%s) - start )) s"
start=$(date +%s)
"$cli" train "${common[@]}" --init /tmp/D-1024/model.safetensors --out /tmp/DL >/dev/null 2>&1
echo "DL (Mamba D, T=$long): last loss $(tail -n 1 /tmp/DL/metrics.csv | cut -d, -f3), $(( $(date +%s) - start )) s"
cp /tmp/E/metrics.csv "$out/E-metrics.csv"
cp /tmp/DL/metrics.csv "$out/DL-metrics.csv"
for m in E DL; do
  "$cli" eval passkey --checkpoint /tmp/$m/model.safetensors --device cuda --haystack filler \
    --lengths 1024,4096,16384,65536 --depths 0.1,0.5,0.9 --samples 2 --out "$out/$m-filler" 2>&1 | tail -n 7
  rm -f "$out/$m-filler.csv"
  "$cli" convert /tmp/$m/model.safetensors "$out/$m-bf16.safetensors" --dtype bf16 >/dev/null
done
rm -f "$out/D-metrics.csv"
