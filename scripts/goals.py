#!/usr/bin/env python3
"""The speed goals of docs/performance.md, checked with one command: murmur
against its `--plain` baseline on the same harness, in alternated runs, so
that a machine that is slower (or busier) at one moment slows both sides.

For each node count (`--nodes`, default 20 and 50) it runs `--pairs` pairs of
`murmur bench --procs --nodes N --messages 200 --size 256 --interval-ms 10
--degree 2`, one with and one without `--plain`, the first of each pair
alternating, and reports each pair's p50 and p99 ratios, their medians, and
how many pairs met the goals (p50 <= 1.2x, p99 <= 1.5x plain).

With `--star RATES` (e.g. `--star 4000,5000,6000`) it also runs the 1 -> 5
star (`--nodes 6 --messages 8000 --star --rate R`), `--star-runs` runs a rate
each way, alternated, and reports for each side the highest rate whose
median p99 is under 100 ms with every message delivered (goal: murmur's is
at least plain's).

Prints one JSON line per run and a summary at the end (JSON on its last line).

  scripts/goals.py [--pairs 5] [--nodes 20,50] [--star 4000,5000,6000] [--star-runs 5]
                   [--bin PATH]   (default: builds and uses the release binary)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
import murmur_proc  # noqa: E402

P50_GOAL = 1.2
P99_GOAL = 1.5
STAR_P99_MS = 100.0


def bench(binary, args, plain):
    cmd = [binary, "bench", *args] + (["--plain"] if plain else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["plain"] = plain
    print(json.dumps(result), flush=True)
    return result


def mesh(binary, nodes, pairs):
    args = ["--procs", "--nodes", str(nodes), "--messages", "200", "--size", "256",
            "--interval-ms", "10", "--degree", "2"]
    rows = []
    for i in range(pairs):
        order = [False, True] if i % 2 == 0 else [True, False]
        runs = {plain: bench(binary, args, plain) for plain in order}
        m, p = runs[False], runs[True]
        rows.append({
            "p50_ratio": m["latency_ms"]["p50"] / p["latency_ms"]["p50"],
            "p99_ratio": m["latency_ms"]["p99"] / p["latency_ms"]["p99"],
            "delivery": min(m["delivery_ratio"], p["delivery_ratio"]),
        })
    met = sum(r["p50_ratio"] <= P50_GOAL and r["p99_ratio"] <= P99_GOAL for r in rows)
    return {
        "nodes": nodes,
        "pairs": pairs,
        "p50_ratios": [round(r["p50_ratio"], 2) for r in rows],
        "p99_ratios": [round(r["p99_ratio"], 2) for r in rows],
        "median_p50_ratio": round(statistics.median(r["p50_ratio"] for r in rows), 2),
        "median_p99_ratio": round(statistics.median(r["p99_ratio"] for r in rows), 2),
        "pairs_meeting_goals": met,
        "min_delivery": min(r["delivery"] for r in rows),
    }


def star(binary, rates, runs):
    sustained = {False: 0, True: 0}
    table = []
    for rate in rates:
        args = ["--procs", "--nodes", "6", "--messages", "8000", "--size", "256",
                "--rate", str(rate), "--star"]
        got = {False: [], True: []}
        for i in range(runs):
            for plain in ([False, True] if i % 2 == 0 else [True, False]):
                got[plain].append(bench(binary, args, plain))
        row = {"rate": rate}
        for plain, name in ((False, "murmur"), (True, "plain")):
            p99 = statistics.median(r["latency_ms"]["p99"] for r in got[plain])
            delivered = min(r["delivery_ratio"] for r in got[plain])
            row[name] = {"median_p99_ms": round(p99, 1), "min_delivery": delivered}
            if p99 < STAR_P99_MS and delivered == 1.0:
                sustained[plain] = max(sustained[plain], rate)
        table.append(row)
    return {
        "rates": table,
        "murmur_sustained": sustained[False],
        "plain_sustained": sustained[True],
        "ratio": round(sustained[False] / sustained[True], 2) if sustained[True] else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--nodes", default="20,50", help="comma-separated node counts ('' for none)")
    ap.add_argument("--star", default="", help="comma-separated rates for the 1 -> 5 star")
    ap.add_argument("--star-runs", type=int, default=5)
    ap.add_argument("--bin", help="a murmur binary (default: cargo build --release, then its binary)")
    a = ap.parse_args()
    binary = a.bin
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=murmur_proc.ROOT, check=True)
        binary = os.path.join(murmur_proc.target_dir(), "release", "murmur")
    summary = {"mesh": [mesh(binary, int(n), a.pairs) for n in a.nodes.split(",") if n]}
    if a.star:
        summary["star"] = star(binary, [int(r) for r in a.star.split(",")], a.star_runs)
    for m in summary["mesh"]:
        print(f"# {m['nodes']} nodes: p50 ratios {m['p50_ratios']} (median {m['median_p50_ratio']}, goal <= {P50_GOAL}); "
              f"p99 ratios {m['p99_ratios']} (median {m['median_p99_ratio']}, goal <= {P99_GOAL}); "
              f"{m['pairs_meeting_goals']} of {m['pairs']} pairs met both", file=sys.stderr)
    if "star" in summary:
        s = summary["star"]
        print(f"# star: murmur sustains {s['murmur_sustained']} msg/s, plain {s['plain_sustained']} msg/s "
              f"(ratio {s['ratio']}, goal >= 1.0)", file=sys.stderr)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
