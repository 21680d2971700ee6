#!/usr/bin/env bash
# The bundled MemMamba-small takes notes on a book it never trained on: over The Adventures of
# Tom Sawyer's first 50,000 tokens, at the checkpoint's own thresholds, every layer's pool fills
# (at least pool_slots notes enter) and evicts, and the noted tokens are rare ones: in every layer
# a noted token occurs a median of at most a quarter as often in the text as any token does
# (notes taken at random would sit near the text's median).
# Usage: notes_model.sh MEMMAMBA SAMPLE_DATA
set -u
cli=$1
samples=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
model=memmamba-small.safetensors
if ! "$cli" run "$samples/The-Adventures-of-Tom-Sawyer_74.txt" --checkpoint "$samples/$model" \
    --tokenizer "$samples/tokenizer.model" --max-tokens 50000 --out "$work/t.trace" >"$work/run.log" 2>&1; then
  echo "FAIL: $model did not run:"; tail -3 "$work/run.log"; exit 1
fi
info=$("$cli" info "$work/t.trace" --top-noted 8)
slots=$(grep -o '"pool_slots":[0-9]*' <<<"$info" | head -1 | cut -d: -f2)
# The per-layer table (layer noted% triggered% meanI notes evictions drops ...), then per layer
# "most noted, layer L ..." and "  how common: ... median X times in the text, any token Y".
awk -v k="$slots" -v model="$model" '
  /^layer/ { table = 1; next }
  table && /^ *[0-9]+ / {
    layers++; entered = $5 - $7
    if (entered >= k && $6 > 0) filled++
    printf "  layer %d: %d notes, %d evictions, %d dropped\n", $1, $5, $6, $7
    next
  }
  table { table = 0 }
  /^most noted, layer/ { print "  " $0 }
  /how common:/ {
    rated++
    for (i = 1; i <= NF; i++) { if ($i == "median") noted = $(i + 1); if ($i == "token") text = $(i + 1) }
    if (noted <= text / 4) rare++
    print "  " $0
  }
  END {
    if (layers == 0) { print "FAIL: " model ": no layer table"; exit 1 }
    if (filled != layers) { printf "FAIL: %s: %d of %d pools filled and evicted\n", model, filled, layers; exit 1 }
    if (rated != layers || rare != layers) { printf "FAIL: %s: the noted tokens are rare in %d of %d layers\n", model, rare, layers; exit 1 }
    printf "ok: %s: %d of %d pools filled and evicted over 50,000 tokens of a held-out book, its notes on rare tokens\n", model, filled, layers
  }' <<<"$info"
