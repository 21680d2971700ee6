#!/usr/bin/env python3
"""Sums up a Chrome trace written by MEMMAMBA_TIMELINE (LibTorch's Kineto profiler).

Prints: the span, how busy the GPU was, the kernels that take the time, the CUDA calls on
the host (synchronisations show here), what the host was doing while the GPU idled, and the
host's own work: per thread, the operators it issued at the top level (autograd nodes on the
backward thread) by name and by the annotated section (MEMMAMBA_PROFILE) they ran in.
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

    host_work(by_cat["cpu_op"], by_cat["user_annotation"], table)


def host_work(cpu_ops, annotations, table):
    """The host's dispatch: each thread's outermost operators, by name and by section."""
    threads = collections.defaultdict(list)
    for e in cpu_ops:
        threads[e.get("tid")].append(e)
    notes_by_thread = collections.defaultdict(list)
    for e in annotations:
        notes_by_thread[e.get("tid")].append(e)
    for tid, evs in sorted(threads.items(), key=lambda kv: -len(kv[1])):
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        top, end = [], None
        for e in evs:
            if end is None or e["ts"] >= end:
                top.append(e)
                end = e["ts"] + e["dur"]
        if len(top) < 50:
            continue
        busy = sum(e["dur"] for e in top)
        print(f"\nhost thread {tid}: {len(top)} outermost operators, {busy / 1e3:.1f} ms inside them")
        names = collections.defaultdict(lambda: [0.0, 0])
        for e in top:
            names[e["name"]][0] += e["dur"]
            names[e["name"]][1] += 1
        table(f"thread {tid}: outermost operators by total time (share of its operator time)",
              sorted(names.items(), key=lambda kv: -kv[1][0]), busy)
        notes = sorted(notes_by_thread.get(tid, []), key=lambda e: e["ts"])
        if not notes:
            continue
        sections = collections.defaultdict(lambda: [0.0, 0])
        for e in top:
            inner = None  # the innermost section holding the operator
            for a in notes:
                if a["ts"] > e["ts"]:
                    break
                if a["ts"] + a["dur"] >= e["ts"] + e["dur"] and (inner is None or a["dur"] < inner["dur"]):
                    inner = a
            key = inner["name"] if inner else "(no section)"
            sections[key][0] += e["dur"]
            sections[key][1] += 1
        table(f"thread {tid}: outermost operators by section", sorted(sections.items(), key=lambda kv: -kv[1][0]), busy)


if __name__ == "__main__":
    main()
