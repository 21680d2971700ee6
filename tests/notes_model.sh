#!/usr/bin/env bash
# The bundled notes model (memmamba-small-notes) takes notes on a book it never trained on:
# over The Adventures of Tom Sawyer's first 50,000 tokens, at the checkpoint's own thresholds,
# every layer's pool fills (at least pool_slots notes enter) and evicts; the default
# MemMamba-small, for contrast, fills none.
# Usage: notes_model.sh MEMMAMBA SAMPLE_DATA
set -u
cli=$1
samples=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
check() {  # check MODEL EXPECT(fills|none)
  local model=$1 expect=$2
  if ! "$cli" run "$samples/The-Adventures-of-Tom-Sawyer_74.txt" --checkpoint "$samples/$model" \
      --tokenizer "$samples/tokenizer.model" --max-tokens 50000 --out "$work/t.trace" >"$work/run.log" 2>&1; then
    echo "FAIL: $model did not run:"; tail -3 "$work/run.log"; fail=1; return
  fi
  local info slots
  info=$("$cli" info "$work/t.trace")
  slots=$(grep -o '"pool_slots":[0-9]*' <<<"$info" | head -1 | cut -d: -f2)
  # The per-layer table: layer noted% triggered% meanI notes evictions drops ...
  awk -v k="$slots" -v expect="$expect" -v model="$model" '
    /^layer/ { table = 1; next }
    table && /^ *[0-9]+ / {
      layers++; entered = $5 - $7
      if (entered >= k && $6 > 0) filled++
      printf "  %s layer %d: %d notes, %d evictions, %d dropped\n", model, $1, $5, $6, $7
    }
    table && !/^ *[0-9]+ / { table = 0 }
    END {
      if (layers == 0) { print "FAIL: " model ": no layer table"; exit 1 }
      if (expect == "fills" && filled != layers) { printf "FAIL: %s: %d of %d pools filled and evicted\n", model, filled, layers; exit 1 }
      if (expect == "none" && filled != 0) { printf "FAIL: %s: %d pools filled (expected none)\n", model, filled; exit 1 }
      printf "ok: %s: %d of %d pools filled and evicted over 50,000 tokens of a held-out book\n", model, filled, layers
    }' <<<"$info" || fail=1
}
check memmamba-small-notes.safetensors fills
check memmamba-small.safetensors none
exit $fail
