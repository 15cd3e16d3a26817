#!/usr/bin/env python3
"""Memory over time under a steady stream of messages: two release-build
murmur nodes on loopback (mDNS off), one topic; the first is fed
`/pub` lines on stdin at --rate a second for --seconds, as a script
piping its output into murmur would, and the second reads them. Every 30 s
it samples the publisher's resident memory (/proc/PID/status: RssAnon, its
own heap and stacks, and VmRSS). Prints one JSON line:

  {"rate", "seconds", "published", "delivered",
   "rss_anon_kib": [[t, kib], ...], "vm_rss_kib": [[t, kib], ...]}

A node's caches fill for the first two minutes (gossipsub's duplicate
cache keeps message ids for 60 s, its peer score delivery records for
120 s, SQLite's page cache grows to 2 MiB); after that RssAnon should stay
flat. docs/performance.md has the figures.

  scripts/soak.py [--rate 1000] [--seconds 300]   (builds target/release/murmur first)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
import murmur_proc  # noqa: E402

ROOT = murmur_proc.ROOT


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def start(binary, data_dir, name, extra):
    env = {k: v for k, v in os.environ.items() if k != "MURMUR_PASSPHRASE"}
    env.setdefault("RUST_LOG", "error")
    proc = subprocess.Popen(
        [binary, "--json", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--name", name,
         "--data-dir", os.path.join(data_dir, name), "--topic", "soak=soak-secret", *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "listening":
            return proc, event["addr"]
    raise RuntimeError(f"{name} exited before listening")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000, help="messages a second")
    ap.add_argument("--seconds", type=int, default=300)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bins", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(murmur_proc.target_dir(), "release", "murmur")
    with tempfile.TemporaryDirectory() as d:
        reader, addr = start(binary, d, "reader", [])
        publisher, _ = start(binary, d, "publisher", ["--peer", addr])
        delivered, warmed = [0], [0]

        def count():
            for line in reader.stdout:
                if '"msg":"message ' in line:
                    delivered[0] += 1
                elif '"msg":"warm-up"' in line:
                    warmed[0] += 1

        threading.Thread(target=count, daemon=True).start()
        threading.Thread(target=lambda: [None for _ in publisher.stdout], daemon=True).start()
        # Wait until the reader hears the publisher.
        deadline = time.monotonic() + 30
        while warmed[0] == 0:
            if time.monotonic() > deadline:
                sys.exit("the reader never heard the publisher")
            publisher.stdin.write("/pub soak warm-up\n")
            publisher.stdin.flush()
            time.sleep(0.2)
        time.sleep(1)
        pid = publisher.pid
        anon, rss = [[0, status_kib(pid, "RssAnon")]], [[0, status_kib(pid, "VmRSS")]]
        t0, sent, next_sample = time.monotonic(), 0, 30
        pad = "x" * 100
        while time.monotonic() - t0 < args.seconds:
            for _ in range(max(1, args.rate // 10)):
                publisher.stdin.write(f"/pub soak message {sent} {pad}\n")
                sent += 1
            publisher.stdin.flush()
            ahead = t0 + sent / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            if time.monotonic() - t0 >= next_sample:
                anon.append([next_sample, status_kib(pid, "RssAnon")])
                rss.append([next_sample, status_kib(pid, "VmRSS")])
                next_sample += 30
        deadline = time.monotonic() + 30
        while delivered[0] < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in (publisher, reader):
            p.kill()
            p.wait()
        print(json.dumps({"rate": args.rate, "seconds": args.seconds, "published": sent,
                          "delivered": delivered[0], "rss_anon_kib": anon, "vm_rss_kib": rss}))


if __name__ == "__main__":
    main()
