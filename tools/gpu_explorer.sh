#!/usr/bin/env bash
# The Explorer on the GPU machine, which has no Qt: unpacks Debian's Qt 6 and QCustomPlot
# (gpu-carry/qt-prefix.tar.xz, made by tools/qt_prefix.sh) into a prefix, builds the Explorer
# against it and the CUDA LibTorch, and runs its journeys offscreen on cuda:
#   book/      a whole sample book traced through the worker, beside Mamba-small and DeciMamba
#   case-256k/ a 256k passkey case of docs/grids run from the retrieval panel, with both
#              comparisons' answers
# Screenshots go to OUT (default $OUT or ./explorer-gpu). Usage: tools/gpu_explorer.sh [build dir]
set -euo pipefail
build=${1:-build-gui}
archive=${QT_PREFIX_ARCHIVE:-gpu-carry/qt-prefix.tar.xz}
qt=${QT_PREFIX_DIR:-/tmp/qt-prefix}
shots=${OUT:-$PWD/explorer-gpu}
device=${DEVICE:-cuda}  # cpu, with MEMMAMBA_CUDA=OFF, tries the same steps on a machine without a GPU

[ -f "$archive" ] || { echo "no $archive: make it with tools/qt_prefix.sh and carry it" >&2; exit 2; }
# The prefix folder is replaced: only one this script made (its marker), or an empty one.
if [ -e "$qt" ] && [ ! -e "$qt/.memmamba-qt-prefix" ] && [ -n "$(ls -A "$qt" 2>/dev/null)" ]; then
  echo "$qt is not empty and not a prefix this script made: set QT_PREFIX_DIR to another folder" >&2
  exit 2
fi
torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')  # before our libraries are on the path
rm -rf "$qt" && mkdir -p "$qt" && touch "$qt/.memmamba-qt-prefix" && tar -C "$qt" -xJf "$archive"
lib=$qt/usr/lib/x86_64-linux-gnu
# Some packages (D-Bus, systemd, ...) still install into /lib: one library folder for all.
if [ -d "$qt/lib/x86_64-linux-gnu" ]; then cp -a "$qt/lib/x86_64-linux-gnu/." "$lib/" && rm -rf "$qt/lib/x86_64-linux-gnu"; fi
# The base libraries that the build tools load too (compressors, expat, PCRE) are this
# machine's own where it has them (newer than Debian 12's); the rest (Qt, ICU 72, D-Bus, fonts,
# GL, ...) come from the prefix. (With the GPU machine's own D-Bus, Qt's failed to link.)
base='^(libz|libzstd|liblzma|libexpat|libpcre2-8|libbsd|libmd|libcap|libgcrypt|libgpg-error|liblz4|libsystemd)\.so\.'
kept=0 dropped=0
for f in "$lib"/lib*.so.*; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  soname=$(objdump -p "$f" 2>/dev/null | awk '/SONAME/{print $2}')
  if [[ "$soname" =~ $base ]] && ldconfig -p | grep -q "^[[:space:]]*$soname "; then
    rm -f "$f" "$lib/$soname"
    dropped=$((dropped + 1))
  else
    kept=$((kept + 1))
  fi
done
echo "qt prefix: $kept libraries from Debian 12, $dropped left to this machine's own"
export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export QT_PLUGIN_PATH=$lib/qt6/plugins QT_QPA_PLATFORM=offscreen
# Fonts: the carried DejaVu set, through a fontconfig file of our own.
mkdir -p /tmp/fontconfig-cache
cat >"$qt/fonts.conf" <<EOF
<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig><dir>$qt/usr/share/fonts</dir><cachedir>/tmp/fontconfig-cache</cachedir></fontconfig>
EOF
export FONTCONFIG_FILE=$qt/fonts.conf

export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix;$qt/usr" -DMEMMAMBA_CUDA=${MEMMAMBA_CUDA:-ON} \
  -DCMAKE_CUDA_COMPILER=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)} >"$build/configure.log" 2>&1 ||
  { tail -40 "$build/configure.log"; exit 1; }
grep -E "MemMamba: Qt=" "$build/configure.log" || true
cmake --build "$build" -j"$(nproc)" --target memmamba memmamba-explorer 2>&1 | grep -E "error|FAILED" | head -40 || true
test -x "$build/bin/memmamba-explorer"

explorer=$build/bin/memmamba-explorer
mkdir -p "$shots"
export XDG_CONFIG_HOME=$shots/config
book=sample_data/The-Adventures-of-Tom-Sawyer_74.txt
echo "== a whole book on $device, beside Mamba-small and DeciMamba"
time ("$explorer" --device "$device" --compare both --screenshots "$shots/book" "$book" 2>&1 |
  grep -v -E "QPainter|QCPLayer|propagateSizeHints|raise\(\)|XDG_RUNTIME" | tail -25)
echo "== a 256k passkey case from the grid, beside Mamba-small and DeciMamba"
time ("$explorer" --device "$device" --grid docs/grids/passkey-memmamba-small.json \
  --case 256k,0.5 --compare both --screenshots "$shots/case-256k" 2>&1 |
  grep -v -E "QPainter|QCPLayer|propagateSizeHints|raise\(\)|XDG_RUNTIME" | tail -25)
ls "$shots"/*
