#!/usr/bin/env bash
# The bundled model, tokenizer and book are found wherever the binary runs: from a build
# directory outside the source tree (the binary and its tokenizer module copied to a fresh
# folder, run from another working folder), and from an install prefix (`cmake --install`),
# where the installed copies are the ones used.
# Usage: bundled_files.sh MEMMAMBA BUILD_DIR SOURCE_DIR
set -u
cli=$1
build=$2
source=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
printf 'A short text for the bundled model to read.\n' > "$work/text.txt"

# Runs MEMMAMBA on the text with no --checkpoint or --tokenizer, from $work, and checks that
# the trace names files under EXPECTED_DIR.
check() {  # check LABEL MEMMAMBA EXPECTED_DIR
  local label=$1 bin=$2 expected=$3
  rm -f "$work/t.trace"
  if ! (cd "$work" && "$bin" run text.txt --out t.trace >"$work/run.log" 2>&1); then
    echo "FAIL ($label): the run failed:"; head -5 "$work/run.log"; fail=1; return
  fi
  local info
  info=$(cd "$work" && "$bin" info t.trace | grep '^run ')
  for name in memmamba-small.safetensors tokenizer.model; do
    if ! grep -q "\"$expected/$name\"" <<<"$info"; then
      echo "FAIL ($label): $name not taken from $expected:"; echo "$info" | cut -c1-400; fail=1; return
    fi
  done
  echo "ok ($label): bundled files from $expected"
}

# A build outside the source tree: bin/ and lib/ of a fresh folder.
mkdir -p "$work/outside/bin" "$work/outside/lib"
cp "$cli" "$work/outside/bin/memmamba"
cp "$build/lib/memmamba_spm.so" "$work/outside/lib/"
check "built outside the source tree" "$work/outside/bin/memmamba" "$(realpath "$source/sample_data")"

# An install prefix, as the .deb lays it out under /usr.
if cmake --install "$build" --prefix "$work/prefix" >"$work/install.log" 2>&1; then
  check "installed" "$work/prefix/bin/memmamba" "$work/prefix/share/memmamba/sample_data"
else
  echo "FAIL: cmake --install:"; tail -5 "$work/install.log"; fail=1
fi
exit $fail
