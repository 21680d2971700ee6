#!/usr/bin/env bash
# Prints a shard directory for the GPU scripts: $1 when it exists, else shards made with
# `memmamba data` from the gzipped books carried in gpu-carry/books (the corpus does not
# travel to the GPU machine). Usage: tools/gpu_shards.sh DIR MEMMAMBA_BINARY
set -euo pipefail
want=$1 bin=$2
if [ -d "$want" ]; then echo "$want"; exit 0; fi
ls gpu-carry/books/*.txt.gz >/dev/null 2>&1 || { echo "no shards at $want and no books in gpu-carry/books" >&2; exit 1; }
rm -rf /tmp/books /tmp/shards-carried && mkdir -p /tmp/books
for f in gpu-carry/books/*.txt.gz; do gunzip -c "$f" > "/tmp/books/$(basename "$f" .gz)"; done
"$bin" data /tmp/books --out /tmp/shards-carried >&2
echo /tmp/shards-carried
