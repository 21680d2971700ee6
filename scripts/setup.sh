#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks (as root, or through sudo) and builds.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(build-essential cmake ninja-build ccache pkg-config
          qt6-base-dev qt6-svg-dev libqcustomplot-dev libqcustomplot2.1-qt6 libtorch-dev libgloo-dev
          libsentencepiece-dev sentencepiece libspdlog-dev libopenblas0-pthread xvfb xauth
          libxml2-dev libzip-dev libpoppler-cpp-dev qpdf)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian's LibTorch uses whatever libblas.so.3 is selected; the reference BLAS is ~57x slower.
if [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 >/dev/null 2>&1 || true
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build --parallel "$(nproc)"
