"""Real Chromium (Debian's /usr/bin/chromium, driven by Python playwright) on the test bed's server.

CI installs it with ``apt-get install -y chromium``; without it every browser test is skipped.
"""
from __future__ import annotations

import os
import time

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
# Ready when the graph exists and our extension has registered (extensions load asynchronously, and a
# cold server can take a while to serve them).
READY = ("window.app && window.app.graph && window.app.extensions && "
         "window.app.extensions.some(e => e.name === 'attention_atelier.regions')")


@pytest.fixture(scope="module")
def browser():
    # Module scope: playwright's sync API keeps an event loop running until it stops, and the
    # in-process ComfyUI tests that run later in the same session need asyncio.run().
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: install it with 'apt-get install -y chromium'")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class FrontendPage:
    """One tab on the ComfyUI frontend, with everything it logged."""

    def __init__(self, page, url):
        self.page, self.url = page, url
        self.console: list[tuple[str, str, str]] = []  # (type, text, script url)
        self.failed_responses: list[tuple[int, str]] = []
        page.on("console", lambda m: self.console.append((m.type, m.text, (m.location or {}).get("url", ""))))
        page.on("pageerror", lambda e: self.console.append(("pageerror", f"{e}\n{getattr(e, 'stack', '')}", "")))
        page.on("response", lambda r: r.status >= 400 and self.failed_responses.append((r.status, r.url)))

    def open(self):
        self.page.goto(self.url)
        self.page.wait_for_function(READY, timeout=120_000)
        time.sleep(1.0)  # extensions' setup hooks run after the app object appears
        return self

    def evaluate(self, script, arg=None):
        return self.page.evaluate(script, arg)

    def load_workflow(self, workflow: dict, name: str):
        self.evaluate("async ([g, name]) => { await window.app.loadGraphData(g, true, true, name); }", [workflow, name])
        time.sleep(0.5)


@pytest.fixture
def frontend(browser, comfy_server):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = FrontendPage(context.new_page(), comfy_server.url)
    try:
        yield page.open()
    finally:
        context.close()
