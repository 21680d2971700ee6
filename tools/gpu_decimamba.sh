#!/usr/bin/env bash
# DeciMamba beside Mamba and MemMamba on the GPU machine in one call: the CUDA tests, a small
# sweep of the decimation settings on a held-out book (perplexity at long contexts), then the
# passkey grid and perplexity by context for the three on that book. Logs and results to $OUT.
# Usage: [STAGES="test sweep grid ppl"] [LENGTHS=1k,4k,16k,64k,256k,1m] [DEPTHS=0.1,0.5,0.9]
#        [SAMPLES=2] [BOOK=file] [DECIMATE="--decimate"] tools/gpu_decimamba.sh
set -uo pipefail
out=${OUT:-/tmp}
book=${BOOK:-gpu-carry/The-Adventures-of-Tom-Sawyer_74.txt}
stages=${STAGES:-test sweep grid ppl}
[ -x build-gpu/bin/memmamba ] || tools/gpu_build.sh build-gpu || exit 1
bin=build-gpu/bin/memmamba
mamba=sample_data/mamba-small.safetensors
memmamba=sample_data/memmamba-small.safetensors
decimate=${DECIMATE:---decimate}
has() { [[ " $stages " == *" $1 "* ]]; }
if has test; then
  build-gpu/tests/test_cuda 2>&1 | grep -E "decimation|failure" | tee "$out/test_cuda.log"
fi
if has sweep; then
  echo "== sweep: perplexity of Mamba-small with decimation, $book (5 windows, 100 scored tokens)"
  printf "%-28s %10s %10s\n" settings "ppl@16k" "ppl@60k" | tee "$out/sweep.txt"
  for layers in 2 4 6; do
    for base in 500 1000 2000 4000; do
      "$bin" eval ppl "$book" --device cuda --checkpoint "$mamba" --lengths 16k,60k --windows 5 \
        --decimate-layers "$layers" --decimate-base "$base" --out "/tmp/sweep-$layers-$base.json" >/dev/null 2>&1
      python3 - "/tmp/sweep-$layers-$base.json" "layers=$layers base=$base" <<'PY' | tee -a "$out/sweep.txt"
import json, sys
r = json.load(open(sys.argv[1]))
p = {row["length"]: row["perplexity"] for row in r["lengths"]}
num = lambda v: float("nan") if v is None else v
print("%-28s %10.2f %10.2f" % (sys.argv[2], num(p.get(16384)), num(p.get(61440))))
PY
    done
  done
fi
if has grid; then
  for model in mamba decimamba memmamba; do
    case $model in
      mamba) args=(--checkpoint "$mamba") ;;
      decimamba) args=(--checkpoint "$mamba" $decimate) ;;
      memmamba) args=(--checkpoint "$memmamba") ;;
    esac
    echo "== passkey, $model ${args[*]}, $book"
    "$bin" eval passkey --device cuda --book "$book" --lengths "${LENGTHS:-1k,4k,16k,64k,256k,1m}" \
      --depths "${DEPTHS:-0.1,0.5,0.9}" --samples "${SAMPLES:-2}" "${args[@]}" --out "$out/passkey-$model" 2>&1 |
      grep -v "^passkey \[" | sed -n '/^accuracy/,/^key digits/p' | head -n -1
  done
fi
if has ppl; then
  for model in mamba decimamba memmamba; do
    case $model in
      mamba) args=(--checkpoint "$mamba") ;;
      decimamba) args=(--checkpoint "$mamba" $decimate) ;;
      memmamba) args=(--checkpoint "$memmamba") ;;
    esac
    echo "== perplexity by context, $model"
    "$bin" eval ppl "$book" --device cuda --lengths 1k,2k,4k,10k,20k,40k,60k --windows 10 "${args[@]}" \
      --out "$out/ppl-$model.json" 2>&1 | grep -v "^perplexity \[" | sed -n '/length/,/wrote/p' | head -9
  done
fi
