#!/usr/bin/env bash
# Sets up, builds, and traces the bundled sample book with the bundled model, printing
# a summary (per-layer note, trigger and eviction figures) and writing build/sample.trace.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
model_args=()
if [ ! -e sample_data/memmamba-small.safetensors ]; then
  # No trained model is bundled yet: use untrained weights (the mechanism, not a trained model).
  model_args=(--random-init 0)
fi
./build/bin/memmamba run sample_data/The-Time-Machine_35.txt --out build/sample.trace \
  --retention-sources 100,1000 "${model_args[@]}" "$@"
