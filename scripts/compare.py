#!/usr/bin/env python3
"""Two or more murmur builds and the `--plain` baseline, in alternated rounds
on the same harness: what a change does to the 20-node figures, measured so
that a machine that is slower (or busier) at one moment slows every side.

Each round runs `murmur bench --procs --nodes N --messages M --size 256
--interval-ms 10 --degree 2` once with each build and once with `--plain`
(built from the first binary), the order rotating from round to round, and
prints each run, then for each side the median p50, p99 and CPU per
delivered message, and each build's per-round ratios to plain.

  scripts/compare.py --bin OLD --bin NEW [--nodes 20] [--messages 300] [--rounds 6]
"""

import argparse
import json
import statistics
import subprocess


def run(binary, nodes, messages, plain):
    cmd = [binary, "bench", "--procs", "--nodes", str(nodes), "--messages", str(messages),
           "--size", "256", "--interval-ms", "10", "--degree", "2", "--murmur-bin", binary]
    if plain:
        cmd.append("--plain")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", action="append", required=True, help="a murmur binary (repeat)")
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    sides = [(f"bin{i}", b, False) for i, b in enumerate(args.bin)] + [("plain", args.bin[0], True)]
    results = {name: [] for name, _, _ in sides}
    for r in range(args.rounds):
        shift = r % len(sides)
        for name, binary, plain in sides[shift:] + sides[:shift]:
            d = run(binary, args.nodes, args.messages, plain)
            lat = d["latency_ms"]
            results[name].append((lat["p50"], lat["p99"], d["cpu_us_per_msg"], d["delivery_ratio"]))
            print(json.dumps({"round": r, "side": name, "binary": binary, "plain": plain,
                              "p50": lat["p50"], "p99": lat["p99"], "cpu_us_per_msg": d["cpu_us_per_msg"],
                              "delivery": d["delivery_ratio"]}), flush=True)
    summary = {}
    for name, binary, _ in sides:
        rows = results[name]
        summary[name] = {
            "binary": binary,
            "median_p50_ms": round(statistics.median(x[0] for x in rows), 2),
            "median_p99_ms": round(statistics.median(x[1] for x in rows), 2),
            "median_cpu_us_per_msg": round(statistics.median(x[2] for x in rows), 1),
            "min_delivery": min(x[3] for x in rows),
        }
        if name != "plain":
            r50 = [a[0] / p[0] for a, p in zip(rows, results["plain"])]
            r99 = [a[1] / p[1] for a, p in zip(rows, results["plain"])]
            summary[name]["p50_ratios"] = [round(x, 2) for x in r50]
            summary[name]["p99_ratios"] = [round(x, 2) for x in r99]
            summary[name]["median_p50_ratio"] = round(statistics.median(r50), 2)
            summary[name]["median_p99_ratio"] = round(statistics.median(r99), 2)
    for name, s in summary.items():
        print(f"# {name} ({s['binary']}): p50 {s['median_p50_ms']} ms, p99 {s['median_p99_ms']} ms, "
              f"{s['median_cpu_us_per_msg']} us CPU per message"
              + (f"; to plain: p50 {s['median_p50_ratio']}x, p99 {s['median_p99_ratio']}x" if name != "plain" else ""))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
