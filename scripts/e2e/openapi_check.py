#!/usr/bin/env python3
"""Checks docs/openapi.yaml against a live node with schemathesis: no 5xx, and
every status, content type and body as the document says. The node must
still be running, with its inbox intact, when schemathesis is done.

Usage: scripts/e2e/openapi_check.py [--max-examples N]
"""

import argparse
import json
import subprocess
import tempfile
import urllib.request

from murmur_proc import Node, run_check

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, json.load(r)


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.load(r)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-examples", default="30")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="murmur-openapi-") as tmp:
        node = Node("alice", f"{tmp}/node")  # the name the document's examples use
        try:
            post(node.api + "/subscribe", {"user": "alice", "topic": "keep", "secret": "s"})
            _, published = post(node.api + "/publish", {"user": "alice", "topic": "keep", "msg": "keep me"})
            st = subprocess.run(
                ["st", "run", node.api + "/openapi.json", "--checks", CHECKS,
                 "--exclude-path", "/events", "--max-examples", args.max_examples,
                 "--workers", "1", "--seed", "1", "--request-timeout", "15"],
            )
            if st.returncode != 0:
                raise AssertionError(f"schemathesis found problems (exit {st.returncode})")
            assert node.proc.poll() is None, "the node died under schemathesis"
            status, health = get(node.api + "/health")
            assert status == 200 and health["status"] == "ok", health
            _, inbox = get(node.api + "/inbox/alice?topic=keep")
            assert [m["id"] for m in inbox] == [published["id"]], inbox
        finally:
            node.stop()


if __name__ == "__main__":
    run_check("openapi", main)
