#!/usr/bin/env python3
"""Markdown tables for docs/PERFORMANCE.md from one run of bundle/bench/run.sh.

Usage: python3 tools/perf_tables.py docs/perf/h200-w2 [docs/perf/h200-w4 ...]

Reads <dir>/inc_bench.csv (inc bench --csv) and <dir>/torch_baseline.txt (the torch script
run by the same command) and prints, per mode, one row per size: inc auto (with its path),
each inc path, zero-copy (symmetric tensor), NCCL, NCCL-symm, torch one_shot / two_shot, the
best peer and inc auto / best peer (bold when <= 0.85), zero-copy / best peer. Peers' numbers
are only those of the same run.
"""
import csv
import os
import sys

SHORT = {"push-one-shot": "LL", "one-shot": "1S", "two-shot": "2S"}


def size_name(b):
    for unit, k in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if b >= k and b % k == 0:
            return f"{b // k}{unit}"
    return str(b)


def load_inc(path):
    t, paths = {}, {}
    for r in csv.DictReader(open(path)):
        if not r["time_us"]:
            continue
        k = (r["mode"], r["algo"], int(r["size_bytes"]))
        t[k] = float(r["time_us"])
        if r.get("path"):
            paths[k] = r["path"]
    return t, paths


def load_torch(path):
    t = {}
    if not os.path.exists(path):
        return t
    for line in open(path):
        p = line.split()
        if len(p) >= 4 and p[0] in ("one_shot_all_reduce", "two_shot_all_reduce_", "nccl"):
            try:
                mode = "graph" if p[1] == "True" else "eager"
                t[(mode, p[0], int(p[2]))] = float(p[3])
            except ValueError:
                pass
    return t


def fmt(x):
    return "-" if x is None else f"{x:.2f}"


def table(d):
    inc, paths = load_inc(os.path.join(d, "inc_bench.csv"))
    torch = load_torch(os.path.join(d, "torch_baseline.txt"))
    sizes = sorted({k[2] for k in inc})
    for mode in ("graph", "eager"):
        print(f"\n### {mode}, {os.path.basename(d)}\n")
        print("| size | inc auto (path) | LL | one-shot | two-shot | zero-copy | NCCL | NCCL-symm "
              "| torch 1S | torch 2S | best peer | auto / best | zero-copy / best |")
        print("|---:" * 13 + "|")
        for s in sizes:
            g = lambda a: inc.get((mode, a, s))
            peers = {
                "NCCL": g("nccl"),
                "NCCL-symm": g("nccl-symm"),
                "torch 1S": torch.get((mode, "one_shot_all_reduce", s)),
                "torch 2S": torch.get((mode, "two_shot_all_reduce_", s)),
            }
            have = {k: v for k, v in peers.items() if v is not None}
            best = min(have.items(), key=lambda kv: kv[1]) if have else None
            auto = g("auto")
            zc = g("zero-copy")
            ratio = zc_ratio = "-"
            if best and auto:
                r = auto / best[1]
                ratio = f"**{r:.2f}**" if r <= 0.85 else f"{r:.2f}"
            if best and zc:
                zc_ratio = f"{zc / best[1]:.2f}"
            path = SHORT.get(paths.get((mode, "auto", s), ""), paths.get((mode, "auto", s), ""))
            print(f"| {size_name(s)} | {fmt(auto)} ({path}) | {fmt(g('push-one-shot'))} | "
                  f"{fmt(g('one-shot'))} | {fmt(g('two-shot'))} | {fmt(zc)} | "
                  f"{fmt(peers['NCCL'])} | {fmt(peers['NCCL-symm'])} | {fmt(peers['torch 1S'])} | "
                  f"{fmt(peers['torch 2S'])} | "
                  f"{fmt(best[1]) + ' (' + best[0] + ')' if best else '-'} | {ratio} | {zc_ratio} |")


if __name__ == "__main__":
    for d in sys.argv[1:]:
        table(d)
