"""Real Chromium (Debian's /usr/bin/chromium, driven by Python playwright) on the test bed's server.

CI installs it with ``apt-get install -y chromium``; without it every browser test is skipped.

Frontends: every browser test runs on the test bed's own frontend (1.32.9 on ComfyUI 0.3.75, 1.49.6 on
0.33.0, served by the session's ``comfy_server``). Tests marked ``all_frontends`` also run on the newer
frontends of ``tiny_models.env.EXTRA_FRONTENDS`` (1.58.1 on 0.33.0), each served by a second server of the
same test bed started once per session; their ids carry the frontend (``-k 1.58.1`` picks them).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tiny_models import env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]
# Ready when the graph exists and our extension has registered (extensions load asynchronously, and a
# cold server can take a while to serve them).
VIEWPORT = {"width": 1600, "height": 1000}
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

    def reset(self):
        """Back to a blank graph with nothing over the canvas, for the next test in the same tab."""
        from tests.browser import views
        self.page.keyboard.press("Escape")
        views.close_dialogs(self)
        views.close_side_panels(self)
        if self.page.viewport_size != VIEWPORT:
            self.page.set_viewport_size(VIEWPORT)
        self.evaluate("() => { window.app.graph.clear(); window.app.canvas.setDirty(true, true); }")
        time.sleep(0.3)

    def evaluate(self, script, arg=None):
        return self.page.evaluate(script, arg)

    def load_workflow(self, workflow: dict, name: str):
        self.evaluate("async ([g, name]) => { await window.app.loadGraphData(g, true, true, name); }", [workflow, name])
        time.sleep(0.5)


def pytest_configure(config):
    config.addinivalue_line("markers", "all_frontends: also run on the newer frontends of the test bed "
                            "(tiny_models.env.EXTRA_FRONTENDS), not only on its own")


def pytest_generate_tests(metafunc):
    """all_frontends tests: one run per frontend of the test bed, grouped per frontend (session scope)."""
    if "frontend_server" in metafunc.fixturenames and metafunc.definition.get_closest_marker("all_frontends"):
        metafunc.parametrize("frontend_server", env.browser_frontends(), indirect=True, scope="session")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_line(f"browser tier frontends on ComfyUI {env.COMFYUI_VERSION}: "
                                f"{', '.join(env.browser_frontends())} (the newer ones for tests marked all_frontends)")


@pytest.fixture(scope="session")
def frontend_server(request, tmp_path_factory):
    """The server of the frontend under test: the session's comfy_server for the test bed's own frontend,
    else a second server of the same test bed serving the newer frontend (stopped when its tests are done)."""
    version = getattr(request, "param", env.FRONTEND_VERSION)
    if version == env.FRONTEND_VERSION:
        yield request.getfixturevalue("comfy_server")
        return
    from comfy_server import ComfyServer
    from tests.harness import paths
    if not paths.comfy_available():
        pytest.skip(f"no ComfyUI test bed at {paths.COMFY_DIR}: run scripts/setup_dev.sh")
    root = env.frontend_root(version)
    if not (root / "index.html").is_file():
        pytest.fail(f"frontend {version} is not installed at {root}: run scripts/setup_dev.sh")
    folder = tmp_path_factory.mktemp(f"comfy_server_{version}")
    # Its own settings file, so that what the newer frontend stores stays out of the other's.
    (folder / "user").mkdir()
    server = ComfyServer(base_dir=paths.BASE_DIR, comfy_dir=paths.COMFY_DIR, frontend_root=root,
                         log_path=folder / "comfyui.log", extra_args=["--user-directory", str(folder / "user")])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if outcome.get_result().failed:
        item.atelier_failed = True  # the frontend fixture then closes the tab instead of handing it on


def mark_tutorial_done(server):
    """As on a test bed that has run before: a fresh user directory makes the frontend open its template
    browser over the canvas a few seconds after it starts (1.32, 1.58), in the way of the first test's clicks."""
    args = server.extra_args
    user = Path(args[args.index("--user-directory") + 1]) if "--user-directory" in args else server.base_dir / "user"
    path = user / "default" / "comfy.settings.json"
    settings = json.loads(path.read_text()) if path.is_file() else {}
    if settings.get("Comfy.TutorialCompleted") is not True:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**settings, "Comfy.TutorialCompleted": True}, indent=4))


@pytest.fixture(scope="module")
def open_tabs(browser):
    """Tabs kept open for the tests of a module, one per server: opening the frontend costs 5-20 s on two
    cores (ComfyUI serves its ~1500 JS files with Cache-Control: no-store), loading a workflow well under one."""
    tabs: dict[str, FrontendPage] = {}
    yield tabs
    for tab in tabs.values():
        tab.page.context.close()


@pytest.fixture
def frontend(browser, open_tabs, frontend_server, request):
    """The frontend in a tab of its own the first time, then the same tab with no dialog open, the classic
    canvas's size and an empty graph; a test that failed closes it, so the next one starts afresh."""
    tab = open_tabs.get(frontend_server.url)
    if tab is None:
        mark_tutorial_done(frontend_server)
        context = browser.new_context(viewport=VIEWPORT)
        tab = FrontendPage(context.new_page(), frontend_server.url)
        try:
            tab.open()
            served = tab.evaluate("window.__COMFYUI_FRONTEND_VERSION__ ?? 'unknown'")
            wanted = env.frontend_version(frontend_server.frontend_root) if frontend_server.frontend_root else served
            assert served == wanted, f"the server serves frontend {served}, not {wanted}"
        except BaseException:
            context.close()
            raise
        open_tabs[frontend_server.url] = tab
    else:
        tab.reset()
    yield tab
    if getattr(request.node, "atelier_failed", False):
        open_tabs.pop(frontend_server.url).page.context.close()
