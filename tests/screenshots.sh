#!/usr/bin/env bash
# Screenshots of the Explorer's journeys, each in a folder of OUT_DIR:
#   sample/      the first 6,000 tokens of the sample book, every view (and the window after a
#                switch to the dark palette: main-window-dark.png)
#   three-ways/  the same text beside Mamba-small and DeciMamba on Mamba-small (notes,
#                forgetting, dropped tokens)
#   failure/     a case that MemMamba-small misses (four labelled facts 16k tokens long, the asked
#                one's value 3418984278 answered "341898427.", from docs/grids/heldout-facts-memmamba-small.json),
#                with both comparisons' answers under it; $SCREENSHOT_FAILURE_GRID (a file of
#                docs/grids) and $SCREENSHOT_FAILURE_CELL choose another (the sanitizer run takes
#                a 4k passkey cell: a 64k one ran 988 s under AddressSanitizer)
# Usage: screenshots.sh MEMMAMBA_CLI EXPLORER SAMPLE_DIR OUT_DIR
set -euo pipefail
cli=$1 explorer=$2 samples=$3 out=$4
grids=$(cd "$samples/../docs/grids" && pwd)
rm -rf "$out"
mkdir -p "$out"
model=()
[ -e "$samples/memmamba-small.safetensors" ] || model=(--random-init 0)
"$cli" run "$samples/The-Time-Machine_35.txt" --out "$out/sample.trace" --max-tokens 6000 \
  --tokenizer "$samples/tokenizer.model" --retention-sources 100,1000 --fidelity 2048 "${model[@]}" >/dev/null
export XDG_CONFIG_HOME="$out/config"
"$explorer" --trace "$out/sample.trace" --screenshots "$out/sample"
"$explorer" --trace "$out/sample.trace" --compare both --screenshots "$out/three-ways"
if [ ${#model[@]} -eq 0 ]; then
  "$explorer" --grid "$grids/${SCREENSHOT_FAILURE_GRID:-heldout-facts-memmamba-small.json}" \
    --case "${SCREENSHOT_FAILURE_CELL:-16k,0.5}" --compare both \
    --screenshots "$out/failure"
fi
for shot in sample/main-window sample/main-window-dark sample/pool sample/triggers sample/attention sample/decay \
  sample/retrieval three-ways/main-window three-ways/loss-difference three-ways/triggers three-ways/decay; do
  test -s "$out/$shot.png" || { echo "missing screenshot $shot.png"; exit 1; }
done
[ ${#model[@]} -ne 0 ] || test -s "$out/failure/retrieval.png" || { echo "missing screenshot failure/retrieval.png"; exit 1; }
echo "screenshots in $out"
