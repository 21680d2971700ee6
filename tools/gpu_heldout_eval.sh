#!/usr/bin/env bash
# Held-out evaluations of one checkpoint on the GPU machine (docs/model.md, "Held-out
# retraining"): haystacks from $BOOK (a book outside every training shard), wordings that
# training never used. Results go to $OUT/heldout/NAME-*.json; each grid's table is printed.
#   passkey    keys of 3-10 digits, held-out wordings, 1k/4k/16k/64k x 3 depths x 2 samples
#   trained    5-digit keys in the first (trained) wording, the same grid
#   trainedlong keys of 7-10 digits in the trained wordings, 1k-64k (wording and length apart)
#   far        the held-out passkey task at 256k and 1M (3 depths, 1 sample)
#   trainedfar the trained-wording task at 256k and 1M (3 depths, 1 sample)
#   facts      4 labelled facts, one asked, held-out wording, 16k/64k/256k
#   words      word and name keys, held-out wordings, 4k and 64k
#   docs       DeciMamba's multi-document retrieval from $BOOK's paragraphs at 10/20/50 documents
#   ppl        perplexity by context 1k-60k on every book in $BOOKS (default gpu-carry/eval-books: copy
#              the evaluation books there, Tom Sawyer, Siddhartha, The Iliad and Leviathan)
# Usage: [BOOK=file] [BOOKS=dir] [CLI=memmamba DEVICE=cpu] tools/gpu_heldout_eval.sh NAME CHECKPOINT WHAT... [-- extra eval flags]
set -euo pipefail
name=$1 checkpoint=$2
shift 2
cli=${CLI:-build-gpu/bin/memmamba}
device=${DEVICE:-cuda}  # CLI=build/bin/memmamba DEVICE=cpu runs it here (slowly: 256k-token cases take minutes)
book=${BOOK:-sample_data/The-Adventures-of-Tom-Sawyer_74.txt}
results=${OUT:-runs}/heldout
mkdir -p "$results"
what=() extra=()
while (($#)); do
  if [[ $1 == -- ]]; then shift; extra=("$@"); break; fi
  what+=("$1"); shift
done
# Prints the case kind, the exact-match and the digits-in-place tables.
run() { "$cli" eval "$@" --checkpoint "$checkpoint" --device "$device" --book "$book" "${extra[@]}" 2>&1 | grep -av $'\r'; }
for w in "${what[@]}"; do
  start=$(date +%s)
  case $w in
    passkey) run passkey --wording held-out --key-digits 3-10 --lengths 1k,4k,16k,64k --depths 0.1,0.5,0.9 --samples 2 \
               --out "$results/$name-passkey" ;;
    trained) run passkey --wording 0 --key-digits 5 --lengths 1k,4k,16k,64k --depths 0.1,0.5,0.9 --samples 2 \
               --out "$results/$name-trained" ;;
    trainedlong) run passkey --wording trained --key-digits 7-10 --lengths 1k,4k,16k,64k --depths 0.1,0.5,0.9 --samples 2 \
                   --out "$results/$name-trainedlong" ;;
    far) run passkey --wording held-out --key-digits 3-10 --lengths 256k,1m --depths 0.1,0.5,0.9 --samples 1 \
           --out "$results/$name-far" ;;
    trainedfar) run passkey --wording 0 --key-digits 5 --lengths 256k,1m --depths 0.1,0.5,0.9 --samples 1 \
                  --out "$results/$name-trainedfar" ;;
    facts) run facts --facts 4 --wording held-out --key-digits 3-10 --lengths 16k,64k,256k --depths 0.1,0.5,0.9 \
             --samples 2 --out "$results/$name-facts" ;;
    words)
      for kind in word name; do
        run passkey --wording held-out --key-kind $kind --lengths 4k,64k --depths 0.1,0.5,0.9 --samples 2 \
          --out "$results/$name-$kind"
      done ;;
    docs) "$cli" eval docs --checkpoint "$checkpoint" --device "$device" --book "$book" --noise 10,20,50 --samples 10 \
            --out "$results/$name-docs.json" "${extra[@]}" 2>&1 | grep -v '^\[' ;;
    ppl)
      for b in "${BOOKS:-gpu-carry/eval-books}"/*.txt; do
        "$cli" eval ppl "$b" --checkpoint "$checkpoint" --device "$device" --lengths 1k,2k,4k,10k,20k,30k,40k,60k \
          --windows 3 --scored 100 --by-context --out "$results/$name-ppl-$(basename "$b" .txt).json" "${extra[@]}" >/dev/null
      done
      python3 - "$results" "$name" <<'PY'
import glob, json, sys
res, name = sys.argv[1], sys.argv[2]
import math
by = {}
for f in sorted(glob.glob(f"{res}/{name}-ppl-*.json")):
    d = json.load(open(f))
    rows = d.get("by_context") or d.get("results") or []
    for r in rows:
        by.setdefault(r["context"] if "context" in r else r["length"], []).append(r.get("nll", r.get("mean_nll", float("nan"))))
print(name, "ppl by context:", " ".join(f"{k}:{math.exp(sum(v)/len(v)):.1f}" for k, v in sorted(by.items())))
PY
      ;;
    *) echo "unknown evaluation '$w'" >&2; exit 2 ;;
  esac
  echo "$name $w: $(( $(date +%s) - start )) s"
done
rm -f "$results"/*.csv
