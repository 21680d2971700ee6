#!/usr/bin/env bash
# The Explorer's command line without a display: --help and --version answer, bad flags are
# refused with their exit codes, and none of them needs a windowing system.
# Usage: explorer_cli.sh EXPLORER
set -u
explorer=$1
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
exit $fail
