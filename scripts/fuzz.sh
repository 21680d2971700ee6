#!/usr/bin/env bash
# Builds the fuzz targets (clang, libFuzzer + ASan + UBSan) into build-fuzz and runs each
# for SECONDS (default 30) from the seed corpora in tests/fuzz/corpus. New inputs go to
# build-fuzz/corpus/TARGET; a crash leaves build-fuzz/crash-* and fails the script.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(safetensors checkpoint trace config text passkey_grid tokenizer book)
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev
fi
torch_dir=$(dirname "$(find /usr/lib /usr/share -name TorchConfig.cmake -print -quit 2>/dev/null || true)")
cmake -S tests/fuzz -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ ${torch_dir:+-DTorch_DIR=$torch_dir} >/dev/null
cmake --build build-fuzz --parallel "$(nproc)"
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for t in "${targets[@]}"; do
  [ -x build-fuzz/fuzz_$t ] || { echo "fuzz_$t: not built"; status=1; continue; }
  mkdir -p build-fuzz/corpus/$t
  log=build-fuzz/fuzz_$t.log
  if build-fuzz/fuzz_$t build-fuzz/corpus/$t tests/fuzz/corpus/$t -max_total_time="$seconds" -rss_limit_mb=4096 \
       -malloc_limit_mb=2048 -timeout=20 -print_final_stats=1 -artifact_prefix=build-fuzz/crash-$t- >"$log" 2>&1; then
    echo "fuzz_$t: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}') execs in ${seconds} s, no crash"
  else
    echo "fuzz_$t: FAILED (see $log)"; tail -n 40 "$log"; status=1
  fi
done
exit $status
