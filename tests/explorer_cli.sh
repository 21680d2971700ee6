#!/usr/bin/env bash
# The Explorer's command line without a display: --help and --version answer, bad flags are
# refused with their exit codes, and none of them needs a windowing system.
# Then figures without clicking: a trace of the sample book exported at a paper's column size.
# Usage: explorer_cli.sh EXPLORER MEMMAMBA SAMPLE_DATA_DIR
set -u
explorer=$1
cli=$2
samples=$3
fail=0
expect() {  # expect CODE PATTERN ARGS...
  local code=$1 pattern=$2
  shift 2
  local out rc
  out=$(env -u DISPLAY -u WAYLAND_DISPLAY -u QT_QPA_PLATFORM "$explorer" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$code" ] || ! grep -q -- "$pattern" <<<"$out"; then
    echo "FAIL: memmamba-explorer $* -> exit $rc (want $code), output:"
    echo "$out" | head -5
    fail=1
  else
    echo "ok: memmamba-explorer $* -> exit $rc"
  fi
}
expect 0 "Usage:" --help
expect 0 "--trace" -h
expect 0 "MemMamba Explorer [0-9]" --version
expect 2 "cpu or cuda" --device tpu
expect 3 "no such file" --trace /nonexistent/x.trace
expect 3 "no such file" --checkpoint /nonexistent/m.safetensors
expect 2 "figure-size" --figure-size huge --trace /nonexistent/x.trace
expect 2 "needs a text" --export-figures /tmp/nowhere
expect 2 "needs --export-figures" --csv-full
expect 2 "encoding takes" --encoding klingon
expect 3 "cannot open" --edit /nonexistent/edits.json some.txt
expect 3 "--grid" --grid /nonexistent/grid.json
expect 2 "needs --grid" --case 1k,0.5
expect 2 "compare-grid needs --grid" --compare-grid /nonexistent/other.json
expect 2 "compare takes mamba, decimamba or both" --compare all
expect 2 "give one" --compare both --edit /nonexistent/edits.json some.txt
expect 2 "layer takes a whole number" --layer -1
expect 2 "token takes a whole number" --token 1e9

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cli" run "$samples/The-Time-Machine_35.txt" --out "$work/tm.trace" --checkpoint "$samples/memmamba-small.safetensors" \
  --tokenizer "$samples/tokenizer.model" --max-tokens 1500 >/dev/null 2>&1 || { echo "FAIL: could not trace the sample"; exit 1; }
expect 0 "figures written" --trace "$work/tm.trace" --export-figures "$work/figures" --figure-size column
pdfs=$(ls "$work/figures"/*.pdf 2>/dev/null | wc -l)
pngs=$(ls "$work/figures"/*.png 2>/dev/null | wc -l)
csvs=$(ls "$work/figures"/*.csv 2>/dev/null | wc -l)
if [ "$pdfs" -lt 4 ] || [ "$pngs" -ne "$pdfs" ] || [ "$csvs" -ne "$pdfs" ]; then
  echo "FAIL: export-figures wrote $pdfs PDFs, $pngs PNGs, $csvs CSVs"; fail=1
fi
# A column-wide PDF is 252 x 180 points; its PNG twin is drawn at 300 dpi (1050 x 750 pixels).
pdf=$(ls "$work/figures"/*.pdf | head -1)
if ! grep -a -q -E "MediaBox \[0 0 252(\.0+)? 180(\.0+)?\]" "$pdf"; then
  echo "FAIL: $pdf is not 252 x 180 pt: $(grep -a -o 'MediaBox[^]]*]' "$pdf" | head -1)"; fail=1
fi
png=$(ls "$work/figures"/*.png | head -1)
size=$(od -An -tu1 -j16 -N8 "$png" | tr -s ' ' | awk '{print ($1*16777216+$2*65536+$3*256+$4) "x" ($5*16777216+$6*65536+$7*256+$8)}')
if [ "$size" != "1050x750" ]; then echo "FAIL: $png is $size pixels, not 1050x750"; fail=1; fi
[ "$fail" -eq 0 ] && echo "ok: --export-figures wrote $pdfs figures at column size"
# CSVs hold what a figure draws (the raster's columns), or with --csv-full every token.
raster=$(ls "$work/figures"/*trigger-raster.csv | head -1)
head -1 "$raster" | grep -q "token_begin,token_end" || { echo "FAIL: $raster is not by column: $(head -1 "$raster")"; fail=1; }
expect 0 "figures written" --trace "$work/tm.trace" --export-figures "$work/full" --csv-full
raster=$(ls "$work/full"/*trigger-raster.csv | head -1)
if ! head -1 "$raster" | grep -q "^layer,token,noted" || [ "$(wc -l <"$raster")" -ne $((1 + 8 * 1500)) ]; then
  echo "FAIL: --csv-full raster $(head -1 "$raster"), $(wc -l <"$raster") lines"; fail=1
fi

# Memory edits from a file: a bad file is refused before any run; a good one runs the text
# twice and the figures show the edited run against the one before (the loss difference).
printf '{"kind": "drop"}' > "$work/object.json"
expect 3 "JSON list" --edit "$work/object.json" "$work/book.txt"
printf '[{"kind": "drop_from", "begin": 0, "end": 400}]' > "$work/edits.json"
expect 2 "needs a text" --edit "$work/edits.json" --trace "$work/tm.trace"
head -c 6000 "$samples/The-Time-Machine_35.txt" > "$work/book.txt"
expect 0 "figures written" "$work/book.txt" --edit "$work/edits.json" --export-figures "$work/edited" --checkpoint \
  "$samples/memmamba-small.safetensors" --tokenizer "$samples/tokenizer.model" --device cpu
rows=$(ls "$work/edited"/*loss-difference*.csv 2>/dev/null | head -1 | xargs -r wc -l | awk '{print $1}')
if [ -z "$rows" ] || [ "$rows" -lt 100 ]; then
  echo "FAIL: the edited run's loss difference has ${rows:-no} rows"; fail=1
else
  echo "ok: --edit ran the text twice and drew the loss difference ($rows rows)"
fi
# A grid's case from the command line: a cell that is not in the grid is refused before any
# window opens; one that is runs as the grid ran it and opens at its answer.
"$cli" eval passkey --out "$work/grid" --lengths 300 --depths 0.5 --samples 1 --max-new 3 --checkpoint \
  "$samples/memmamba-small.safetensors" --tokenizer "$samples/tokenizer.model" >/dev/null 2>&1 || { echo "FAIL: no grid"; exit 1; }
expect 2 "not a cell of the grid (lengths 300; depths 0.5)" --grid "$work/grid.json" --case 4k,0.5
expect 2 "instead of a book" --grid "$work/grid.json" --case 300,0.5 "$work/book.txt"
expect 2 "cases of a docs result are listed" --grid "$samples/../docs/grids/docs-memmamba-small.json" --case 10,0.5
printf '{"cells": 3}' > "$work/bad-grid.json"
expect 3 "--compare-grid $work/bad-grid.json" --grid "$work/grid.json" --compare-grid "$work/bad-grid.json"
out=$(QT_QPA_PLATFORM=offscreen timeout 300 "$explorer" --grid "$work/grid.json" --case 300,0.5 --screenshots "$work/case" \
  --checkpoint "$samples/memmamba-small.safetensors" --tokenizer "$samples/tokenizer.model" --device cpu 2>&1)
if [ $? -ne 0 ] || [ "$(ls "$work/case"/*.png 2>/dev/null | wc -l)" -lt 3 ]; then
  echo "FAIL: --grid --case did not run the case: $(echo "$out" | tail -3)"; fail=1
else
  echo "ok: --grid --case ran the grid's case and saved $(ls "$work/case"/*.png | wc -l) screenshots"
fi
# A grid alone loads nothing to wait for: the screenshots are taken at once (this hung before).
out=$(QT_QPA_PLATFORM=offscreen timeout 120 "$explorer" --grid "$samples/../docs/grids/passkey-memmamba-small.json" \
  --compare-grid "$samples/../docs/grids/passkey-mamba-small.json" --screenshots "$work/grid-only" 2>&1)
if [ $? -ne 0 ] || [ ! -s "$work/grid-only/retrieval.png" ]; then
  echo "FAIL: --grid --compare-grid --screenshots saved no retrieval.png: $(echo "$out" | tail -3)"; fail=1
else
  echo "ok: --grid alone saved $(ls "$work/grid-only"/*.png | wc -l) screenshots"
fi
exit $fail
