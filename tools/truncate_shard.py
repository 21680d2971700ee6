#!/usr/bin/env python3
"""Copies a shard folder keeping only the first N training tokens, so that a GPU call can carry
it together with two checkpoints under the 64 MiB transfer limit.
Usage: tools/truncate_shard.py SRC_DIR DST_DIR N"""
import os, shutil, struct, sys

src, dst, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(os.path.join(src, "train.tokens"), "rb") as f:
    header = f.read(24)
    magic, (version, vocab, count) = header[:8], struct.unpack("<IIQ", header[8:24])
    if magic != b"MMTOKENS":
        sys.exit(f"{src}/train.tokens is not a token shard")
    keep = min(keep, count)
    body = f.read(2 * keep)
os.makedirs(dst, exist_ok=True)
with open(os.path.join(dst, "train.tokens"), "wb") as f:
    f.write(magic + struct.pack("<IIQ", version, vocab, keep) + body)
for name in ("heldout.tokens", "manifest.json"):
    shutil.copy(os.path.join(src, name), dst)
print(f"kept {keep} of {count} training tokens")
