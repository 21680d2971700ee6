#!/usr/bin/env bash
# Data parallel on the two-GPU machine (nvidia-h200-x2), measured in one call:
#  train  MemMamba-small from the bundled weights, T 4096, global batch 16, bf16, 20 steps, on one
#         GPU and on two (--gpus 2): the losses side by side, tokens/s and their ratio;
#  alternate  1 GPU and 2 GPUs at global batch 16 alternated, three rounds: the ratio each round;
#  buckets 2 GPUs with 1 MB gradient buckets against one of 25 MB;
#  profile where a step's time goes: one GPU at batch 8 and 16, two GPUs at 16;
#  faults a rank killed mid-training, and one stopped (a hang, --dist-timeout 20): exit, time;
#  eval   a 40-case 256k passkey grid on one GPU and on two: the files compared, the time ratio.
# Usage: [STAGES="train profile faults eval"] [SHARDS=dir] tools/gpu_distributed.sh   (logs in $OUT)
# Shards: SHARDS, else made from the books carried in gpu-carry/books (tools/gpu_shards.sh).
set -uo pipefail
out=${OUT:-/tmp}
stages=" ${STAGES:-train faults eval} "
shards=${SHARDS:-gpu-carry/shards-speed}
has() { [[ "$stages" == *" $1 "* ]]; }
start=$(date +%s)
tools/gpu_build.sh build-gpu || exit 1
echo "build: $(( $(date +%s) - start )) s"
nvidia-smi -L
bin=build-gpu/bin/memmamba
shards=$(tools/gpu_shards.sh "$shards" "$bin") || exit 1
mem=sample_data/memmamba-small.safetensors
train=(train --data "$shards" --device cuda --init "$mem" --seq-len 4096 --batch 16 --steps 20 --eval-every 100000
       --checkpoint-every 100000 --passkey-fraction 0.25 --varied-cases ${ACCUMULATION:+--accumulation $ACCUMULATION})
source tools/gpu_lib.sh
# train_run GPUS BATCH: 20 steps; prints the median tokens/s of the last 15 and leaves $out/metrics-GPUS-BATCH.csv.
train_run() {
  rm -rf /tmp/dp-$1-$2
  local t0=$(date +%s.%N)
  "$bin" "${train[@]}" --batch "$2" --out /tmp/dp-$1-$2 $( [ "$1" -gt 1 ] && echo --gpus "$1" ) >"$out/train-$1-$2.log" 2>&1
  local rc=$?
  cp /tmp/dp-$1-$2/metrics.csv "$out/metrics-$1-$2.csv" 2>/dev/null
  echo "train on $1 GPU(s), batch $2: exit $rc, $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s," \
       "$(median_tps "$out/metrics-$1-$2.csv") tokens/s (median of the last 15 steps)" >&2
  median_tps "$out/metrics-$1-$2.csv"
}
if has train; then
  one=$(train_run 1 16) two=$(train_run 2 16)
  grep "data parallel" "$out/train-2-16.log"
  echo "step, loss on 1 GPU, loss on 2, relative difference; held-out loss at the end"
  paste -d, <(tail -n +2 "$out/metrics-1-16.csv") <(tail -n +2 "$out/metrics-2-16.csv") |
    awk -F, '{n = NF / 2; d = ($3 - $(n + 3)) / $3; if (d < 0) d = -d; if (d > m) m = d
              printf "%s, %.5f, %.5f, %.2e%s\n", $1, $3, $(n + 3), d, ($7 != "nan" ? ", held-out " $7 " vs " $(n + 7) : "")}
              END {printf "largest relative loss difference: %.2e\n", m}' | tee "$out/loss-difference.txt"
  # bf16 autocast: the ranks' sums differ from one GPU's in the last bits, nothing more.
  awk '/largest/ {exit ($5 > 2e-3)}' "$out/loss-difference.txt" || { echo "FAIL: two GPUs' losses differ from one GPU's"; status=1; }
  half=$(train_run 1 8)
  echo "global batch 16: 2 GPUs / 1 GPU = $(awk -v a="$one" -v b="$two" 'BEGIN {printf "%.3f", b / a}');" \
       "scaling efficiency against two 1-GPU runs of 8 rows: $(awk -v a="$half" -v b="$two" 'BEGIN {printf "%.3f", b / (2 * a)}')"
  one32=$(train_run 1 32) two32=$(train_run 2 32)
  echo "global batch 32: 2 GPUs / 1 GPU = $(awk -v a="$one32" -v b="$two32" 'BEGIN {printf "%.3f", b / a}')"
fi
if has alternate; then
  # The ratio at global batch 16 with one GPU and two alternated, three rounds (the host's
  # speed varies from machine to machine and a rank's host work bounds a step of 8 rows).
  ratios=()
  for round in 1 2 3; do
    a=$(train_run 1 16) b=$(train_run 2 16)
    ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", b / a}')")
    echo "round $round: 1 GPU $a, 2 GPUs $b tokens/s: ${ratios[-1]}"
  done
  echo "global batch 16, 2 GPUs / 1 GPU by round: ${ratios[*]}; median $(printf '%s\n' "${ratios[@]}" | sort -g | sed -n 2p)"
fi
if has buckets; then
  # Overlap: the gradients in 1 MB buckets (summed while the backward pass goes on) against one
  # 25 MB bucket (summed after it), alternated to see the noise.
  for round in 1 2; do
    for mb in 25 1; do
      rm -rf /tmp/dp-b
      "$bin" "${train[@]}" --batch 16 --out /tmp/dp-b --gpus 2 --bucket-mb $mb >"$out/bucket-$mb.log" 2>&1
      echo "2 GPUs, batch 16, --bucket-mb $mb (round $round): $(median_tps /tmp/dp-b/metrics.csv) tokens/s;" \
           "$(grep -o "gradients in [0-9]* buckets" "$out/bucket-$mb.log")"
    done
  done
fi
if has profile; then
  # Where a step's time goes (MEMMAMBA_PROFILE: each section waits for the GPU at both ends).
  for run in "1 8" "1 16" "2 16"; do
    set -- $run
    rm -rf /tmp/dp-profile
    MEMMAMBA_PROFILE=1 "$bin" "${train[@]}" --batch "$2" --steps 12 --out /tmp/dp-profile $( [ "$1" -gt 1 ] && echo --gpus "$1" ) \
      >"$out/profile-$1-$2.log" 2>&1
    echo "== profile: $1 GPU(s), batch $2, 12 steps; last step $(tail -1 /tmp/dp-profile/metrics.csv | cut -d, -f6) tokens/s"
    sed -n '/training profile/,$p' "$out/profile-$1-$2.log" | grep -v "^step\|stopped\|Warning" | head -24
  done
fi
if has faults; then
  long=("${train[@]}" --steps 100000 --dist-timeout 20)
  for fault in KILL STOP; do
    rm -rf /tmp/dp-fault
    "$bin" "${long[@]}" --out /tmp/dp-fault --gpus 2 >"$out/fault-$fault.log" 2>&1 &
    launcher=$!
    for _ in $(seq 600); do grep -q "^step 3/" "$out/fault-$fault.log" && break; sleep 0.2; done
    victim=""
    for p in $(pgrep -P $launcher); do tr '\0' '\n' <"/proc/$p/environ" | grep -qx "RANK=1" && victim=$p; done
    t0=$(date +%s.%N)
    kill -$fault "$victim"
    wait $launcher
    rc=$?
    echo "SIG$fault of rank 1 at step 3: exit $rc after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s; $(grep -a "error" "$out/fault-$fault.log" | tail -2 | cut -c1-200)"
    kill -KILL "$victim" 2>/dev/null
    ls /tmp/dp-fault
  done
fi
if has eval; then
  grid=(eval passkey --device cuda --checkpoint "$mem" --lengths 256k --depths 0,0.25,0.5,0.75,1 --samples 8)
  for run in "1 default" "2 default" "2 8"; do
    set -- $run
    t0=$(date +%s.%N)
    ( [ "$2" != default ] && export MEMMAMBA_THREADS=$2
      "$bin" "${grid[@]}" --out "$out/grid-$1" $( [ "$1" -gt 1 ] && echo --gpus "$1" ) >"$out/grid-$1.log" 2>&1 )
    echo "40-case 256k grid on $1 GPU(s), CPU threads per rank $2: exit $?," \
         "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s (whole command); $(tail -1 "$out/grid-$1.log")"
    grep -o '"seconds": [0-9.]*' "$out/grid-$1.json" | awk '{s += $2} END {printf "  sum of the cases'"'"' seconds: %.1f\n", s}'
  done
  strip() { grep -v '"seconds"\|"wall_seconds"' "$1" | sed '/"devices": \[/,/\]/d'; }
  if diff <(strip "$out/grid-1.json") <(strip "$out/grid-2.json") >/dev/null; then echo "grid files: identical up to timings and devices"
  else echo "grid files DIFFER:"; diff <(strip "$out/grid-1.json") <(strip "$out/grid-2.json") | head -20; fi
fi
echo "total: $(( $(date +%s) - start )) s"
exit ${status:-0}
