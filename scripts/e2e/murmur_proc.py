"""Start real murmur processes for the end-to-end scripts and read their --json events."""

import json
import os
import queue
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def target_dir():
    """Where cargo puts its builds: CARGO_TARGET_DIR, a build.target-dir
    setting or target/, as `cargo metadata` reports it."""
    out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return json.loads(out)["target_directory"]


BIN = os.environ.get("MURMUR_BIN") or os.path.join(target_dir(), "debug", "murmur")


class Node:
    """A murmur child process on loopback with its API on a free port."""

    def __init__(self, name, data_dir, *extra):
        args = [BIN, "--json", "--no-mdns", "--name", name, "--data-dir", data_dir,
                "--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", *extra]
        self.name = name
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = {}
        while len(first) < 2:
            event = self.wait(None)
            if event["event"] in ("listening", "api_listening"):
                first.setdefault(event["event"], event["addr"])
        self.addr, self.api = first["listening"], first["api_listening"]

    def _read(self):
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def wait(self, kind, timeout=20.0, pred=lambda e: True):
        """The next event of `kind` matching `pred` (other events are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {kind} event within {timeout}s")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if (kind is None or event["event"] == kind) and pred(event):
                return event

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("/quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()


def run_check(name, main):
    """Runs one end-to-end check and prints the closing line CI reads
    ("NAME: 1 passed, 0 failed"); a failed assertion exits with 1."""
    try:
        main()
    except AssertionError as e:
        print(f"{name}: FAILED: {e}", file=sys.stderr)
        print(f"{name}: 0 passed, 1 failed")
        sys.exit(1)
    print(f"{name}: 1 passed, 0 failed")
