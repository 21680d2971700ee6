#!/usr/bin/env bash
# Builds the library, the app and every test with AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan) and runs the tests; any report fails the run. Suppressions are narrow and
# explained in tests/sanitizers/*.supp.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEMMAMBA_SANITIZE=ON -DMEMMAMBA_CUDA=OFF
cmake --build build-asan --parallel "$(nproc)"
supp=$PWD/tests/sanitizers
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:suppressions=$supp/asan.supp"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
# The screenshots' failure journey on a 4k-token passkey cell: the same code paths as a longer one.
export SCREENSHOT_FAILURE_GRID=trained-long-memmamba-small.json SCREENSHOT_FAILURE_CELL=4k,0.5
cd build-asan
QT_QPA_PLATFORM=offscreen ctest --output-on-failure --timeout 1800 -j "$(nproc)" -LE "cuda|soak"
