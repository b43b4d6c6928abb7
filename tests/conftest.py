"""Shared fixtures. See tests/harness/__init__.py and the README's testing section.

- ``repo_root``, ``base_dir``, ``comfy_dir``: Paths (session).
- ``comfy``: the in-process ComfyUI harness (session), tests.harness.inprocess.ComfyHarness.
- ``comfy_server``: a real headless ComfyUI on a free port with the pack linked (session);
  ``comfy_server.url``, ``.log_tail()``, ``.object_info()``.
- ``api_workflows``: the workflows/api/*.json paths.
"""
from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))
# Pin our `tests` package before ComfyUI's directory (which has its own tests/ package) joins sys.path.
import tests  # noqa: E402,F401
from tests.harness import paths  # noqa: E402

FOLDER_MARKERS = {"unit": "unit", "comfy": "comfy", "e2e": "e2e", "browser": "browser"}
DEFAULT_TIMEOUT_S = 900


def pytest_configure(config):
    if config.pluginmanager.hasplugin("timeout") and not getattr(config.option, "timeout", None):
        config.option.timeout = DEFAULT_TIMEOUT_S


def pytest_report_header(config):
    """Which ComfyUI and frontend the in-process, e2e and browser tiers of this run use."""
    from tiny_models import env
    if not paths.comfy_available():
        return f"ComfyUI {env.COMFYUI_VERSION}: no test bed at {paths.COMFY_DIR} (run scripts/setup_dev.sh)"
    return (f"ComfyUI {env.comfy_version(paths.COMFY_DIR)} at {paths.COMFY_DIR}, "
            f"frontend {env.frontend_version() or 'from the venv'}, base {paths.BASE_DIR}")


def rss_mib() -> tuple[float, float]:
    """(resident, peak resident) memory of this process in MiB (Linux /proc; else the peak twice)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


_MODULE_MEMORY: list[tuple[str, float, float, float]] = []  # (test file, RSS after it, peak so far, seconds)
_module_started = [time.time()]
_RSS_LOG = os.environ.get("ATELIER_RSS_LOG")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """After the last test of each file (its module fixtures torn down): the process's RSS and peak."""
    yield
    if _RSS_LOG:  # ATELIER_RSS_LOG=path: one line per test (RSS, peak, test id), to find what grows
        with open(_RSS_LOG, "a") as log:
            log.write("%8.0f %8.0f  %s\n" % (*rss_mib(), item.nodeid))
    if nextitem is None or nextitem.path != item.path:
        rss, peak = rss_mib()
        _MODULE_MEMORY.append((item.nodeid.split("::")[0], rss, peak, time.time() - _module_started[0]))
        _module_started[0] = time.time()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _MODULE_MEMORY:
        terminalreporter.write_sep("-", "memory per test file (RSS after the file / peak so far, MiB; seconds)")
        for name, rss, peak, seconds in _MODULE_MEMORY:
            terminalreporter.write_line(f"{rss:8.0f} {peak:8.0f} {seconds:7.1f}  {name}")
    terminalreporter.write_line(pytest_report_header(config))


def pytest_collection_modifyitems(config, items):
    tests_dir = _ROOT / "tests"
    for item in items:
        try:
            top = Path(str(item.fspath)).resolve().relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        if top in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, FOLDER_MARKERS[top]))


def _require_comfy():
    if not paths.comfy_available():
        pytest.skip(f"no ComfyUI test bed at {paths.COMFY_DIR}: run scripts/setup_dev.sh")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return paths.REPO_ROOT


@pytest.fixture(scope="session")
def base_dir() -> Path:
    return paths.BASE_DIR


@pytest.fixture(scope="session")
def comfy_dir() -> Path:
    return paths.COMFY_DIR


@pytest.fixture(scope="session")
def api_workflows() -> list[Path]:
    return paths.api_workflows()


@pytest.fixture(scope="session")
def comfy():
    """In-process ComfyUI (CPU) with the tiny checkpoints; see ComfyHarness for helpers."""
    _require_comfy()
    from tests.harness.inprocess import get_harness
    harness = get_harness()
    harness.load_nodes()  # so tests.pack finds the pack ComfyUI loaded (its classes are the nodes')
    yield harness
    harness._ckpts.clear()  # free models while ComfyUI's modules are still alive (no __del__ noise at exit)
    harness._loads.clear()
    dit_helpers = sys.modules.get("tests.comfy.dit_helpers")
    if dit_helpers is not None:
        dit_helpers._MODELS.clear()
    gc.collect()


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A real ComfyUI server (CPU) on BASE with the pack linked into custom_nodes."""
    _require_comfy()
    from comfy_server import ComfyServer
    srv = ComfyServer(base_dir=paths.BASE_DIR, comfy_dir=paths.COMFY_DIR,
                      log_path=tmp_path_factory.mktemp("comfy_server") / "comfyui.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
