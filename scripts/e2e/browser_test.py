#!/usr/bin/env python3
"""Browser end-to-end test: two murmur nodes, each with its web page open in
headless Chromium (Debian's, driven by Playwright). A message published on
Alice's page must appear on Bob's page without a reload.

Usage: scripts/e2e/browser_test.py [--screenshot PATH]
"""

import argparse
import tempfile

from playwright.sync_api import expect, sync_playwright

from murmur_proc import Node, run_check

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--screenshot", help="save a screenshot of Bob's page here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="murmur-browser-") as tmp:
        alice = Node("alice", f"{tmp}/alice")
        bob = Node("bob", f"{tmp}/bob", "--peer", alice.addr)
        try:
            run(alice, bob, args.screenshot)
        finally:
            alice.stop()
            bob.stop()


def run(alice, bob, screenshot):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 760})
        a = context.new_page()
        b = context.new_page()
        a.goto(alice.api + "/")
        b.goto(bob.api + "/")
        for page in (a, b):
            expect(page.locator("#status")).to_have_text("live", timeout=15000)

        # Both join the same secret topic through the form.
        for page in (a, b):
            page.fill("#sub-form input[name=topic]", "news")
            page.fill("#sub-form input[name=secret]", "s3cret")
            page.click("#sub-form button")
            expect(page.locator("#topics")).to_contain_text("news", timeout=10000)
        # Each page lists the other node by name.
        expect(a.locator("#peers")).to_contain_text("bob", timeout=15000)
        expect(b.locator("#peers")).to_contain_text("alice", timeout=15000)

        b.evaluate("window.__noReload = true")
        a.select_option("#pub-topic", "news")
        a.fill("#pub-form input[name=msg]", "Hello Bob, from Alice's page")
        a.click("#pub-form button")
        expect(b.locator("#feed")).to_contain_text("Hello Bob, from Alice's page", timeout=15000)
        expect(b.locator("#feed .msg").last).to_contain_text("alice")
        assert b.evaluate("window.__noReload") is True, "Bob's page was reloaded"

        # A direct message from Bob's page to Alice, by clicking her name.
        b.click("#peers li:has-text('alice')")
        b.fill("#dm-form input[name=msg]", "hi Alice, Bob here")
        b.click("#dm-form button")
        expect(a.locator("#feed")).to_contain_text("hi Alice, Bob here", timeout=15000)

        if screenshot:
            b.wait_for_timeout(2800)  # let the last notice fade
            b.screenshot(path=screenshot)

        # A bad request shows an error instead of breaking the page.
        b.fill("#dm-to", "nobody-by-that-name")
        b.fill("#dm-form input[name=msg]", "lost")
        b.click("#dm-form button")
        expect(b.locator("#toast")).to_contain_text("unknown peer", timeout=10000)
        browser.close()


if __name__ == "__main__":
    run_check("browser", main)
