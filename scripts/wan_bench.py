#!/usr/bin/env python3
"""The WAN figures of docs/performance.md, measured on the namespace test
WAN of scripts/testnat.sh (two home LANs behind NAT routers, a hub with
--relay-server on the public segment). Needs root. Prints one JSON line.

  sudo scripts/wan_bench.py [--runs 5] [--messages 200]

* first message: time from the second member's start (its process spawned)
  to its first delivered message (one the first member published before it
  came), across two cone NATs; median and max over --runs runs, each on a
  fresh test WAN;
* direct share: in how many of those runs the two members' connection was
  direct (hole punched) within 30 s of meeting;
* latency, direct vs relayed: --messages messages of 256 B, one every 20 ms,
  from one member to the other over the direct connection (cone NATs) and
  over the hub's relay (the second member behind a symmetric NAT), from the
  /pub line written to the publisher's stdin to the receiver's message event
  read from its stdout (one clock: this script's);
* relay CPU: the hub's CPU time (user + system, /proc/PID/stat) during the
  relayed run, less its CPU time over as long a quiet span just before,
  per message relayed (the clock ticks every 10 ms: run enough messages).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
import murmur_proc  # noqa: E402

ROOT = murmur_proc.ROOT
TESTNAT = os.path.join(ROOT, "scripts", "testnat.sh")
TOPIC = "bench-topic"
SECRET = "bench-secret"


class NetNode(murmur_proc.Node):
    """A murmur process inside a namespace of the test WAN."""

    def __init__(self, prefix, host, name, data_dir, *extra):  # noqa: super-init-not-called
        import queue
        import threading
        args = ["ip", "netns", "exec", f"{prefix}-{host}", BIN, "--json", "--name", name,
                "--data-dir", data_dir, "--private-wan", *extra]
        self.name = name
        self.seen = []
        self.started = time.monotonic()
        env = dict(os.environ, RUST_LOG="warn")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.peer = self.wait("whoami_hint", timeout=20)["peer"]

    def _read(self):
        first = True
        for line in self.proc.stdout:
            event = json.loads(line)
            event["at"] = time.monotonic()
            if first and event["event"] == "listening":
                first = False
                self.events.put({"event": "whoami_hint", "peer": event["addr"].rsplit("/", 1)[1]})
            self.events.put(event)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def ask(self, line, kind):
        self.send(line)
        return self.wait(kind)

    def wait(self, kind, timeout=20.0, pred=lambda e: True):
        """The first event of `kind` matching `pred`, seen before or arriving now."""
        for i, event in enumerate(self.seen):
            if event["event"] == kind and pred(event):
                return self.seen.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {kind} event within {timeout}s")
            try:
                event = self.events.get(timeout=left)
            except Exception:
                continue
            if event["event"] == kind and pred(event):
                return event
            self.seen.append(event)

    def cpu_seconds(self):
        """User + system CPU time of the murmur process (`ip netns exec` execs it in place)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def testnat(*args):
    subprocess.run([TESTNAT, *args], check=True)


def start_hub(prefix, tmp):
    return NetNode(prefix, "hub", "hub", os.path.join(tmp, "hub"), "--no-mdns",
                   "--listen", "/ip4/0.0.0.0/tcp/4001", "--listen", "/ip4/0.0.0.0/udp/4001/quic-v1",
                   "--relay-server", "--external-addr", "/ip4/198.51.100.10/tcp/4001",
                   "--external-addr", "/ip4/198.51.100.10/udp/4001/quic-v1")


def member(prefix, host, name, tmp, hub):
    boot = f"/dns4/hub.murmur.test/tcp/4001/p2p/{hub.peer}"
    return NetNode(prefix, host, name, os.path.join(tmp, name),
                   "--topic", f"{TOPIC}={SECRET}", "--bootstrap", boot)


def wait_direct(node, peer, timeout):
    """Seconds until `node` lists `peer` as not relayed, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        peers = node.ask("/peers", "peers")["peers"]
        if any(p["peer"] == peer and not p["relayed"] for p in peers):
            return time.monotonic() - start
        time.sleep(0.2)
    return None


def latency_run(sender, receiver, messages):
    """Latencies (ms) of `messages` messages of 256 B, one every 20 ms."""
    body = "x" * 240
    sent = {}
    for i in range(messages):
        text = f"{i:08d}{body}"
        sent[text] = time.monotonic()
        sender.send(f"/pub {TOPIC} {text}")
        time.sleep(0.02)
    latencies = []
    deadline = time.monotonic() + 30
    while len(latencies) < messages and time.monotonic() < deadline:
        event = receiver.wait("message", timeout=max(0.1, deadline - time.monotonic()),
                              pred=lambda e: e["msg"] in sent)
        latencies.append((event["at"] - sent.pop(event["msg"])) * 1000)
    latencies.sort()
    return latencies


def percentile(values, p):
    return values[min(len(values) - 1, int(len(values) * p))] if values else None


def first_message_run(prefix, tmp):
    """One fresh WAN: returns (seconds to the first message, seconds to direct or None, nodes)."""
    hub = start_hub(prefix, tmp)
    ann = member(prefix, "a", "ann", tmp, hub)
    ann.wait("relay_reserved", timeout=20)
    ann.send(f"/pub {TOPIC} waiting-for-bob")
    bob = member(prefix, "b", "bob", tmp, hub)
    got = bob.wait("message", timeout=20, pred=lambda e: e["msg"] == "waiting-for-bob")
    first = got["at"] - bob.started
    bob.wait("peer_connected", timeout=20, pred=lambda e: e["peer"] == ann.peer)
    direct = wait_direct(ann, bob.peer, 30)
    return first, direct, (hub, ann, bob)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    global BIN
    BIN = os.path.join(murmur_proc.target_dir(), "release", "murmur")
    prefix = "mwbench"
    firsts, directs = [], []
    latency_direct, switch_ms = [], []
    for run in range(args.runs):
        testnat("up", prefix, "cone")
        nodes = ()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                first, direct, nodes = first_message_run(prefix, tmp)
                firsts.append(first)
                directs.append(direct)
                if run == 0 and direct is not None:
                    hub, ann, bob = nodes
                    time.sleep(4)  # the relayed connection is closed 3 s after the direct one is up
                    # The first message after the switch waits for gossipsub's
                    # handler on the direct connection to be polled (up to the
                    # 1 s ping interval; docs/wan.md): timed apart.
                    switch_ms = latency_run(ann, bob, 1)
                    latency_direct = latency_run(ann, bob, args.messages)
                for n in nodes:
                    n.stop()
        finally:
            for n in nodes:
                if n.proc.poll() is None:
                    n.proc.kill()
            testnat("down", prefix)
    # Relayed: the second member behind a symmetric NAT.
    testnat("up", prefix, "symmetric")
    nodes = ()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            hub = start_hub(prefix, tmp)
            ann = member(prefix, "a", "ann", tmp, hub)
            dan = member(prefix, "d", "dan", tmp, hub)
            nodes = (hub, ann, dan)
            ann.wait("peer_connected", timeout=20, pred=lambda e: e["peer"] == dan.peer)
            time.sleep(3)
            # The hub's own background (pings, identify, DHT) over as long, with no message.
            span = args.messages * 0.02
            idle0 = hub.cpu_seconds()
            time.sleep(span)
            idle = hub.cpu_seconds() - idle0
            cpu0 = hub.cpu_seconds()
            latency_relayed = latency_run(ann, dan, args.messages)
            hub_cpu = hub.cpu_seconds() - cpu0 - idle
            relayed_now = not wait_direct(ann, dan.peer, 0.5)
            for n in nodes:
                n.stop()
    finally:
        for n in nodes:
            if n.proc.poll() is None:
                n.proc.kill()
        testnat("down", prefix)

    def summary(lat):
        return {"delivered": len(lat), "p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99)}

    report = {
        "runs": args.runs,
        "first_message_s": {"median": statistics.median(firsts), "max": max(firsts),
                            "all": [round(f, 3) for f in firsts]},
        "direct_within_30s": sum(d is not None for d in directs) / len(directs),
        "direct_after_s": [None if d is None else round(d, 3) for d in directs],
        "messages": args.messages,
        "first_message_after_the_switch_ms": switch_ms[0] if switch_ms else None,
        "latency_direct": summary(latency_direct),
        "latency_relayed": summary(latency_relayed),
        "still_relayed_behind_symmetric_nat": relayed_now,
        "hub_cpu_us_per_relayed_message": round(hub_cpu / max(1, len(latency_relayed)) * 1e6, 1),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
