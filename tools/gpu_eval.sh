#!/usr/bin/env bash
# The report's figures for one checkpoint on the GPU machine, written to $OUT/results/NAME-*:
#   book    passkey in book-sentence haystacks (the app's default) at 1k, 4k, 16k, 64k, 5 depths
#   far     passkey at 256k (book) and 256k, 1M (filler), 5 depths
#   book256k, book1m, filler: one part of that (book1m: book-sentence haystacks at 1M)
#   ppl     perplexity by context length, by position and by context (the same tokens) on the
#           three held-out books in BOOKS
# Usage: [BOOKS=dir] [SAMPLES=n] [SEED=s] tools/gpu_eval.sh NAME CHECKPOINT book|far|book256k|book1m|filler|ppl...
set -euo pipefail
name=$1 checkpoint=$2
shift 2
cli=build-gpu/bin/memmamba
results=${OUT:-runs}/results
mkdir -p "$results"
depths=0.1,0.3,0.5,0.7,0.9
for what in "$@"; do
  start=$(date +%s)
  case $what in
    book)
      "$cli" eval passkey --checkpoint "$checkpoint" --device cuda --lengths 1k,4k,16k,64k --depths $depths \
        --samples 1 --out "$results/$name-book" 2>&1 | tail -n 7 ;;
    far) "$0" "$name" "$checkpoint" book256k filler ;;
    book256k)
      "$cli" eval passkey --checkpoint "$checkpoint" --device cuda --lengths 256k --depths $depths \
        --samples "${SAMPLES:-1}" --seed "${SEED:-0}" --out "$results/$name-book256k" 2>&1 | tail -n 4 ;;
    book1m)
      "$cli" eval passkey --checkpoint "$checkpoint" --device cuda --lengths 1m --depths $depths \
        --samples "${SAMPLES:-1}" --seed "${SEED:-0}" --out "$results/$name-book1m" 2>&1 | tail -n 4 ;;
    filler)
      "$cli" eval passkey --checkpoint "$checkpoint" --device cuda --haystack filler --lengths 256k,1m --depths $depths \
        --samples "${SAMPLES:-1}" --seed "${SEED:-0}" --out "$results/$name-filler" 2>&1 | tail -n 5 ;;
    ppl)
      for book in "${BOOKS:-gpu-carry/books}"/*.txt; do
        "$cli" eval ppl "$book" --checkpoint "$checkpoint" --device cuda --lengths 1k,2k,4k,10k,20k,30k,40k,60k \
          --windows 3 --scored 100 --by-context --out "$results/$name-ppl-$(basename "$book" .txt).json" >/dev/null
      done ;;
    *) echo "unknown evaluation '$what' (book, far, book256k, book1m, filler or ppl)" >&2; exit 2 ;;
  esac
  echo "$name $what: $(( $(date +%s) - start )) s"
done
rm -f "$results"/*.csv
