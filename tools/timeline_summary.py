#!/usr/bin/env python3
"""Sums up a Chrome trace written by MEMMAMBA_TIMELINE (LibTorch's Kineto profiler).

Prints: the span, how busy the GPU was, the kernels that take the time, the CUDA calls on
the host (synchronisations show here), and what the host was doing while the GPU idled.
Usage: tools/timeline_summary.py TRACE.json [--top N]
"""
import argparse
import bisect
import collections
import json
import sys


def union_length(intervals):
    total, end = 0.0, None
    start = None
    for a, b in sorted(intervals):
        if end is None or a > end:
            if end is not None:
                total += end - start
            start, end = a, b
        else:
            end = max(end, b)
    if end is not None:
        total += end - start
    return total


def gaps_of(intervals, min_us):
    gaps, end = [], None
    for a, b in sorted(intervals):
        if end is not None and a - end >= min_us:
            gaps.append((end, a))
        end = b if end is None else max(end, b)
    return gaps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--gap-us", type=float, default=50.0, help="GPU idle stretches at least this long are attributed")
    args = parser.parse_args()
    try:
        with open(args.trace) as f:
            events = json.load(f).get("traceEvents", [])
    except (OSError, ValueError) as e:
        sys.exit(f"error: cannot read {args.trace}: {e}")
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e and "ts" in e]
    if not spans:
        sys.exit(f"error: {args.trace} holds no timed events")
    by_cat = collections.defaultdict(list)
    for e in spans:
        by_cat[e.get("cat", "")].append(e)
    t0 = min(e["ts"] for e in spans)
    t1 = max(e["ts"] + e["dur"] for e in spans)
    span = t1 - t0
    gpu = by_cat["kernel"] + by_cat["gpu_memcpy"] + by_cat["gpu_memset"]
    gpu_iv = [(e["ts"], e["ts"] + e["dur"]) for e in gpu]
    busy = union_length(gpu_iv)
    print(f"span {span / 1e3:.1f} ms; GPU busy {busy / 1e3:.1f} ms ({100 * busy / span:.0f}%); "
          f"{len(by_cat['kernel'])} kernels, {len(by_cat['gpu_memcpy'])} copies, {len(by_cat['cpu_op'])} operators")

    def table(title, rows, total):
        print(f"\n{title}")
        print(f"{'ms':>9} {'share':>6} {'calls':>7} {'us/call':>8}  name")
        for name, (t, n) in rows[: args.top]:
            print(f"{t / 1e3:9.2f} {100 * t / total:5.1f}% {n:7d} {t / n:8.1f}  {name[:110]}")

    def totals(evs):
        acc = collections.defaultdict(lambda: [0.0, 0])
        for e in evs:
            acc[e["name"]][0] += e["dur"]
            acc[e["name"]][1] += 1
        return sorted(acc.items(), key=lambda kv: -kv[1][0])

    if gpu:
        table("GPU kernels and copies by total time (share of GPU busy time)", totals(gpu), busy)
    runtime = by_cat["cuda_runtime"] + by_cat["cuda_driver"]
    if runtime:
        table("CUDA calls on the host (share of the span)", totals(runtime), span)

    # While the GPU idles, what is the host inside? The outermost operator running then.
    ops = sorted(by_cat["cpu_op"] + by_cat["user_annotation"], key=lambda e: e["ts"])
    if gpu_iv and ops:
        starts = [e["ts"] for e in ops]
        idle = gaps_of(gpu_iv, args.gap_us)
        blame = collections.defaultdict(lambda: [0.0, 0])
        for a, b in idle:
            mid = (a + b) / 2
            i = bisect.bisect_right(starts, mid)
            outer = None
            # Operators that began before the middle and end after it; the longest is the outermost.
            for e in ops[max(0, i - 4000):i]:
                if e["ts"] + e["dur"] >= mid and (outer is None or e["dur"] > outer["dur"]):
                    outer = e
            name = outer["name"] if outer else "(no operator: the host between operators)"
            blame[name][0] += b - a
            blame[name][1] += 1
        idle_total = sum(b - a for a, b in idle)
        print(f"\nGPU idle in stretches of {args.gap_us:.0f} us or more: {idle_total / 1e3:.1f} ms "
              f"({100 * idle_total / span:.0f}% of the span) in {len(idle)} stretches")
        table("what the host was inside during them (share of the span)",
              sorted(blame.items(), key=lambda kv: -kv[1][0]), span)


if __name__ == "__main__":
    main()
