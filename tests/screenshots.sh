#!/usr/bin/env bash
# Traces the first 6,000 tokens of the sample book and saves screenshots of every view.
# Usage: screenshots.sh MEMMAMBA_CLI EXPLORER SAMPLE_DIR OUT_DIR
set -euo pipefail
cli=$1 explorer=$2 samples=$3 out=$4
mkdir -p "$out"
model=()
[ -e "$samples/memmamba-small.safetensors" ] || model=(--random-init 0)
"$cli" run "$samples/The-Time-Machine_35.txt" --out "$out/sample.trace" --max-tokens 6000 \
  --tokenizer "$samples/tokenizer.model" --retention-sources 100,1000 --fidelity 2048 "${model[@]}" >/dev/null
XDG_CONFIG_HOME="$out/config" "$explorer" --trace "$out/sample.trace" --screenshots "$out"
for view in main-window pool triggers attention decay retrieval; do
  test -s "$out/$view.png" || { echo "missing screenshot $view.png"; exit 1; }
done
echo "screenshots in $out"
