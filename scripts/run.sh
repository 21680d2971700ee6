#!/usr/bin/env bash
# Sets up, builds, traces the bundled sample book with the bundled model (a per-layer
# summary is printed and build/sample.trace written), then opens MemMamba Explorer on it.
# Without a display (no $DISPLAY / $WAYLAND_DISPLAY) the Explorer runs under xvfb-run and
# saves screenshots of every view into build/screenshots instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
model_args=()
if [ ! -e sample_data/memmamba-small.safetensors ]; then
  # No trained model is bundled yet: use untrained random weights (the mechanism, not a trained model).
  model_args=(--random-init 0)
fi
book=sample_data/The-Time-Machine_35.txt
if [ ! -e build/sample.trace ] || [ "$book" -nt build/sample.trace ] || [ build/bin/memmamba -nt build/sample.trace ]; then
  ./build/bin/memmamba run "$book" --out build/sample.trace --retention-sources 100,1000 --fidelity 4096 "${model_args[@]}" "$@"
fi
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  exec ./build/bin/memmamba-explorer --trace build/sample.trace
fi
echo "no display: running the Explorer under xvfb-run and saving screenshots to build/screenshots"
exec xvfb-run -a -s "-screen 0 1600x1000x24" ./build/bin/memmamba-explorer --trace build/sample.trace --screenshots build/screenshots
