#!/usr/bin/env python3
"""`make test`: the unit tier once, then the in-process, e2e and browser tiers on each ComfyUI test bed.

    python scripts/run_tests.py                    # every version in tiny_models.env.TEST_BEDS
    python scripts/run_tests.py 0.33.0             # one version (make test COMFYUI=0.33.0)
    python scripts/run_tests.py 0.33.0 -- -k regional -x   # extra pytest arguments after --

Every tier of every version is its own pytest process, so what one tier loads (ComfyUI imported in-process,
its models) is gone before the next starts. Each run writes a JUnit report to .cache/test-reports/; the
summary gives each run's time and peak resident memory: of the largest single process (the pytest process
or one it started and waited for: the e2e server, the browser), from the kernel's accounting (wait4), and
of the whole process tree (sampled twice a second). A run whose largest process went over
MAX_PROCESS_RSS_MIB fails the whole run (exit status 1, and the summary says which). The last line sums
the tests up ("total: N passed, N failed, N skipped"); the exit status is non-zero if any run failed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from tiny_models.env import TEST_BEDS  # noqa: E402

REPORTS = ROOT / ".cache" / "test-reports"
UNIT_PATHS = ["tests/unit", "tests/test_lint_shipped.py"]
COMFY_TIERS = {"in-process": ["tests/comfy"], "e2e": ["tests/e2e"], "browser": ["tests/browser"]}
MAX_PROCESS_RSS_MIB = 8 * 1024  # no test process may hold more (CI's machine: 2 cores, 24 GB, shared)
SAMPLE_S = 0.5


def tree_rss_mib(pid: int) -> tuple[float, float]:
    """(largest single process, whole tree) resident memory of ``pid`` and its descendants, in MiB."""
    try:
        import psutil
    except ImportError:  # the venv has it (ComfyUI needs it); without it only the kernel's peak is known
        return 0.0, 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0
    sizes = []
    for p in procs:
        try:
            sizes.append(p.memory_info().rss / 2 ** 20)
        except psutil.Error:
            pass
    return max(sizes, default=0.0), sum(sizes)


def run_measured(cmd: list[str], env: dict) -> tuple[int, float, float]:
    """Run ``cmd``; returns (exit code, peak RSS of its largest process, peak RSS of its tree) in MiB."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    peak_one = peak_tree = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        one, tree = tree_rss_mib(proc.pid)
        peak_one, peak_tree = max(peak_one, one), max(peak_tree, tree)
        time.sleep(SAMPLE_S)
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Linux: ru_maxrss (KiB) of the child is the largest of it and the descendants it waited for
    peak_one = max(peak_one, usage.ru_maxrss / 1024)
    return proc.returncode, peak_one, max(peak_tree, peak_one)


def run(label: str, paths: list[str], env: dict, extra: list[str]) -> dict:
    REPORTS.mkdir(parents=True, exist_ok=True)
    report = REPORTS / (label.split(" (")[0].replace(" ", "-") + ".xml")
    report.unlink(missing_ok=True)
    print(f"\n===== {label} =====", flush=True)
    t0 = time.time()
    rc, peak_one, peak_tree = run_measured(
        [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", *paths, *extra], env)
    counts = {"label": label, "rc": rc, "seconds": round(time.time() - t0), "passed": 0, "failed": 0, "skipped": 0,
              "peak_mib": peak_one, "tree_mib": peak_tree}
    if report.exists():
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        total, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        counts.update(failed=failed, skipped=int(suite.get("skipped", 0)))
        counts["passed"] = total - failed - counts["skipped"]
    if rc not in (0, 5) and counts["failed"] == 0:
        counts["failed"] = 1  # pytest itself failed (collection, internal error): count the run as failed
    return counts


def gib(mib: float) -> str:
    return f"{mib / 1024:.2f} GiB"


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    versions = [a for a in (argv[: argv.index("--")] if "--" in argv else argv) if a] or list(TEST_BEDS)
    unknown = [v for v in versions if v not in TEST_BEDS]
    if unknown:
        print(f"unknown ComfyUI version(s) {unknown}; the test beds are {list(TEST_BEDS)}", file=sys.stderr)
        return 2
    started = time.time()
    results = [run("unit (no ComfyUI)", UNIT_PATHS, dict(os.environ), extra)]
    for version in versions:
        env = dict(os.environ, ATELIER_COMFYUI=version)
        for tier, paths in COMFY_TIERS.items():
            results.append(run(f"comfyui-{version} {tier}", paths, env, extra))
    print("\n===== summary =====")
    for r in results:
        print(f"{r['label']}: {r['passed']} passed, {r['failed']} failed, {r['skipped']} skipped in {r['seconds']} s; "
              f"peak RSS {gib(r['peak_mib'])} (largest process), {gib(r['tree_mib'])} (process tree)")
    too_big = [r for r in results if r["peak_mib"] > MAX_PROCESS_RSS_MIB]
    for r in too_big:
        print(f"FAILED: {r['label']}: a test process reached {gib(r['peak_mib'])} resident, over the "
              f"{gib(MAX_PROCESS_RSS_MIB)} limit (see 'memory per test file' in its pytest summary)")
    print(f"wall time {round(time.time() - started)} s; largest test process {gib(max(r['peak_mib'] for r in results))}")
    total = {k: sum(r[k] for r in results) for k in ("passed", "failed", "skipped")}
    print(f"total: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    return 1 if total["failed"] or too_big or any(r["rc"] not in (0, 5) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
