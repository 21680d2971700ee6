#!/usr/bin/env bash
# Help and flags cannot drift apart: every --option that a command's --help names is one the
# command accepts (it is never refused as unknown). Usage: cli_help.sh MEMMAMBA
set -u
cli=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
checked=0
for command in info run generate bench tokenizer-train data train convert init "eval passkey" "eval ppl" "eval fidelity" "eval docs"; do
  # Backquoted text names other commands' options (`memmamba train --init`): left out.
  # shellcheck disable=SC2086
  help=$(cd "$work" && "$cli" $command --help 2>&1 | sed 's/`[^`]*`//g')
  options=$(grep -o -- '--[a-z][a-z0-9-]*' <<<"$help" | sort -u)
  # Every option with a value, then an unknown one: the parser reads each option (or stops at
  # the first it does not know) before it meets the unknown one, so nothing runs.
  probe=()
  for option in $options; do
    [ "$option" = "--help" ] && continue
    probe+=("$option" 1)
    checked=$((checked + 1))
  done
  # shellcheck disable=SC2086
  out=$(cd "$work" && timeout 20 "$cli" $command "${probe[@]}" --zz-probe 2>&1 </dev/null)
  if ! grep -q "unknown option --zz-probe" <<<"$out"; then
    echo "FAIL: memmamba $command --help names an option the command refuses:"
    echo "$out" | tail -2
    fail=1
  fi
done
echo "checked $checked options named in the help of 13 commands"
[ "$checked" -gt 100 ] || { echo "FAIL: too few options found in the help texts"; fail=1; }
exit $fail
