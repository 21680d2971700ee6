#!/usr/bin/env bash
# Teaching the read-out: MemMamba-small (the shipped one unless INIT is set) trains on passkey
# rows at T with the retrieval loss of weight W (each answer piece of the key is taught to
# attend to that piece's note), tau2 = TAU2; then the passkey grid. Metrics, the grid and a
# bf16 checkpoint go to $OUT/NAME-*. ANSWER weighs an extra loss on the answer's key pieces, NOTE the selection loss;
# GRID=0 skips the grid (the fp32 checkpoint stays in /tmp/NAME for a later call on the same machine);
# HAYSTACK=book trains on book-sentence haystacks, SEED picks other rows, DATA another shard folder,
# SCHEDULE=cosine decays the learning rate, ANSWER_END sets what follows the key in a passkey row,
# MIN_LENGTH the shortest passkey example in tokens, FREEZE=1 holds the fusion scales as loaded,
# BLIND the share of passkey rows whose key the SSM does not see (--blind-needles).
#   [ANSWER=A] [NOTE=N] [INIT=M] [GRID=0] [HAYSTACK=book] [SEED=S] [DATA=D] tools/gpu_retrieval.sh NAME STEPS T W TAU2 LR [PASSKEY_FRACTION] [LENGTHS]
set -euo pipefail
name=$1 steps=$2 T=$3 weight=$4 tau2=$5 lr=$6 fraction=${7:-1.0} lengths=${8:-1024,4096,16384,65536}
cli=build-gpu/bin/memmamba
out=${OUT:-runs}
init=${INIT:-sample_data/memmamba-small.safetensors}
mkdir -p "$out"
batch=$(( T >= 8192 ? 4 : 8 ))
start=$(date +%s)
"$cli" train --data "${DATA:-shards}" --device cuda --passkey-fraction "$fraction" --haystack "${HAYSTACK:-filler}" --seed "${SEED:-0}" --seq-len "$T" --batch "$batch" \
  --lr "$lr" --schedule "${SCHEDULE:-constant}" --warmup 10 --steps "$steps" --eval-every 0 --checkpoint-every 100 --eval-batches 1 \
  --init "$init" --tau-retrieve "$tau2" --retrieval-loss "$weight" --answer-loss "${ANSWER:-0}" --note-loss "${NOTE:-0}" ${ANSWER_END:+--answer-end "$ANSWER_END"} ${MIN_LENGTH:+--passkey-min-length "$MIN_LENGTH"} ${FREEZE:+--freeze-fusion} ${BLIND:+--blind-needles "$BLIND"} --out /tmp/$name 2>&1 | awk 'NR % 25 == 0' | cut -c1-160
echo "$name: $(( $(date +%s) - start )) s of training"
cp /tmp/$name/metrics.csv "$out/$name-metrics.csv"
"$cli" convert /tmp/$name/model.safetensors "$out/$name-bf16.safetensors" --dtype bf16 >/dev/null
[ "${GRID:-1}" = 0 ] && exit 0
"$cli" eval passkey --checkpoint /tmp/$name/model.safetensors --device cuda --haystack filler \
  --lengths "$lengths" --depths 0.1,0.5,0.9 --samples 2 --out "$out/$name-filler" 2>&1 | tail -n 8
rm -f "$out/$name-filler.csv"
