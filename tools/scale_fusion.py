#!/usr/bin/env python3
"""Writes a copy of a bf16/f32 MemMamba checkpoint with every fusion scale (the per-channel
weight of the memory's contribution) multiplied by FACTOR: a probe of how loud the memory's
read-out must be (docs/model.md, "R5 and the shipped pair").
Usage: tools/scale_fusion.py IN.safetensors OUT.safetensors FACTOR"""
import json, struct, sys

src, dst, factor = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = bytearray(open(src, "rb").read())
header_len = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + header_len])
base = 8 + header_len


def scaled(raw, dtype):
    if dtype == "F32":
        values = struct.unpack(f"<{len(raw) // 4}f", raw)
        return struct.pack(f"<{len(values)}f", *[v * factor for v in values])
    if dtype == "BF16":
        out = []
        for u in struct.unpack(f"<{len(raw) // 2}H", raw):
            x = struct.unpack("<f", struct.pack("<I", u << 16))[0] * factor
            bits = struct.unpack("<I", struct.pack("<f", x))[0]
            out.append(((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF)  # round to nearest even
        return struct.pack(f"<{len(out)}H", *out)
    sys.exit(f"fusion scale stored as {dtype}: only F32 and BF16 are handled")


count = 0
for name, info in header.items():
    if name == "__metadata__" or not name.endswith("fusion.scale"):
        continue
    begin, end = info["data_offsets"]
    data[base + begin:base + end] = scaled(bytes(data[base + begin:base + end]), info["dtype"])
    count += 1
if count == 0:
    sys.exit(f"{src} has no fusion scales (a Mamba-only checkpoint?)")
open(dst, "wb").write(data)
print(f"scaled {count} fusion scales by {factor}")
