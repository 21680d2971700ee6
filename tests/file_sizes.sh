#!/usr/bin/env bash
# No source file over 800 lines: a file that grows past it holds more than one idea.
# Usage: file_sizes.sh SOURCE_DIR
set -u
cd "$1" || exit 1
limit=800
files() { git ls-files 2>/dev/null || find . -path ./build -prune -o -type f -print; }
over=$(files | grep -E '\.(cpp|h|cu|sh|py|cmake)$|CMakeLists\.txt$' | while read -r f; do
  [ -f "$f" ] && n=$(wc -l < "$f") && [ "$n" -gt "$limit" ] && echo "$f: $n lines"
done)
if [ -n "$over" ]; then
  echo "over $limit lines:"; echo "$over"; exit 1
fi
echo "ok: every source file has at most $limit lines"
