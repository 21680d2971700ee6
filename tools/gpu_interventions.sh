#!/usr/bin/env bash
# Memory edits on the GPU machine in one call: the same edited trace on CPU and GPU (the
# decisions must agree), then the passkey grid with the key's notes dropped on a held-out
# book (BOOK, default The Adventures of Tom Sawyer, carried in gpu-carry/). Logs to $OUT.
# Usage: [LENGTHS=4k,64k,256k] [DEPTHS=0.1,0.5,0.9] [SAMPLES=2] [BOOK=file] tools/gpu_interventions.sh
set -uo pipefail
out=${OUT:-/tmp}
book=${BOOK:-gpu-carry/The-Adventures-of-Tom-Sawyer_74.txt}
start=$(date +%s)
[ -x build-gpu/bin/memmamba ] || tools/gpu_build.sh build-gpu || exit 1
bin=build-gpu/bin/memmamba
head -c 60000 "$book" > /tmp/edit-text.txt
cat > /tmp/edits.json <<'JSON'
[{"kind": "drop", "layer": 0, "note": 1}, {"kind": "pin", "layer": 2, "note": 0},
 {"kind": "plant", "layer": 3, "source": 40, "position": 900}, {"kind": "drop_from", "layer": 5, "begin": 0, "end": 2000},
 {"kind": "thresholds", "layer": 6, "tau_note": 0.6}, {"kind": "mask_read", "layer": 7, "begin": 100, "end": 3000}]
JSON
for device in cpu cuda; do
  "$bin" run /tmp/edit-text.txt --out "$out/edited-$device.trace" --device "$device" --edit /tmp/edits.json 2>&1 | grep -E "^(wrote|error)"
done
"$bin" info "$out/edited-cpu.trace" > "$out/edited-cpu.info" 2>&1
"$bin" info "$out/edited-cuda.trace" > "$out/edited-cuda.info" 2>&1
# Per layer: notes, evictions, drops (the decisions; float noise moves only the means).
decisions() { awk '/^layer/ {on=1; next} on && NF >= 7 {print $1, $5, $6, $7}' "$1"; }
echo "== the edited run's decisions per layer (layer notes evictions drops), CPU | GPU:"
paste -d'|' <(decisions "$out/edited-cpu.info") <(decisions "$out/edited-cuda.info")
diff <(decisions "$out/edited-cpu.info") <(decisions "$out/edited-cuda.info") >/dev/null && echo "CPU and GPU decide the same" || echo "CPU and GPU differ"
echo "== passkey with the key's notes dropped, $book"
"$bin" eval passkey --device cuda --book "$book" --lengths "${LENGTHS:-4k,64k,256k}" --depths "${DEPTHS:-0.1,0.5,0.9}" \
  --samples "${SAMPLES:-2}" --drop-key-notes --out "$out/passkey-dropped" 2>&1 | grep -v "^passkey \["
echo "total: $(( $(date +%s) - start )) s"
