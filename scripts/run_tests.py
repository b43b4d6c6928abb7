#!/usr/bin/env python3
"""`make test`: the unit tier once, then the in-process, e2e and browser tiers on each ComfyUI test bed.

    python scripts/run_tests.py                    # every version in tiny_models.env.TEST_BEDS
    python scripts/run_tests.py 0.33.0             # one version (make test COMFYUI=0.33.0)
    python scripts/run_tests.py --lanes 1          # one run at a time (default: two lanes)
    python scripts/run_tests.py 0.33.0 -- -k regional -x   # extra pytest arguments after --

Every tier of every version is its own pytest process, so what one tier loads (ComfyUI imported in-process,
its models) is gone before the next starts. After the unit tier the tier runs go to LANES lanes that run side
by side, each run with cores / lanes torch threads: the tiny test-bed models are too small for a second
thread to speed an op up much (their time is per-op overhead), so two single-threaded runs at once take
about as long as the longer one. The longest runs are placed first, each in the lane that frees up soonest
(times of the previous run's JUnit reports where there are any, else DEFAULT_SECONDS). A run's output goes
to .cache/test-reports/<run>.log and is printed whole when the run ends.

Each run writes a JUnit report to .cache/test-reports/; the summary gives each run's time and peak resident
memory: of the largest single process (the pytest process or one it started and waited for: the e2e
server, the browser), from the kernel's accounting (wait4), and of the whole process tree (sampled twice a
second). A run whose largest process went over MAX_PROCESS_RSS_MIB fails the whole run (exit status 1, and
the summary says which). The last lines give the wall time and sum the tests up ("total: N passed, N failed,
N skipped"); the exit status is non-zero if any run failed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from tiny_models.env import TEST_BEDS  # noqa: E402

REPORTS = ROOT / ".cache" / "test-reports"
UNIT_PATHS = ["tests/unit", "tests/test_lint_shipped.py"]
COMFY_TIERS = {"in-process": ["tests/comfy"], "e2e": ["tests/e2e"], "browser": ["tests/browser"]}
LANES = 2
# seconds of each tier run on this project's 2-core machine (2026-12-03), only to place the runs in lanes
# when no earlier JUnit report says better; (tier, on the newest test bed)
DEFAULT_SECONDS = {("in-process", True): 1110, ("e2e", True): 490, ("browser", True): 450,
                   ("in-process", False): 520, ("e2e", False): 150, ("browser", False): 260}
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


def run_measured(cmd: list[str], env: dict, log=None) -> tuple[int, float, float]:
    """Run ``cmd`` (output to ``log``, a file, if given); returns (exit code, peak RSS of its largest
    process, peak RSS of its tree) in MiB."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT if log else None)
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


def report_name(label: str) -> str:
    return label.split(" (")[0].replace(" ", "-")


def junit_suite(report):
    """The <testsuite> element of a JUnit report (pytest wraps it in <testsuites>)."""
    root = ET.parse(report).getroot()
    return root if root.tag == "testsuite" else root.find("testsuite")


def run(label: str, paths: list[str], env: dict, extra: list[str], to_log: bool = False) -> dict:
    """One pytest run; with ``to_log`` its output goes to .cache/test-reports/<run>.log, printed when it ends."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    name = report_name(label)
    report, log_path = REPORTS / f"{name}.xml", REPORTS / f"{name}.log"
    report.unlink(missing_ok=True)
    basetemp = ROOT / ".cache" / "pytest-tmp" / name  # its own: runs side by side never share a temp folder
    basetemp.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", f"--basetemp={basetemp}", *paths, *extra]
    t0 = time.time()
    if to_log:
        print(f"[{time.strftime('%H:%M:%S')}] started {label}", flush=True)
        with open(log_path, "w") as log:
            rc, peak_one, peak_tree = run_measured(cmd, env, log)
    else:
        print(f"\n===== {label} =====", flush=True)
        rc, peak_one, peak_tree = run_measured(cmd, env)
    counts = {"label": label, "rc": rc, "seconds": round(time.time() - t0), "passed": 0, "failed": 0, "skipped": 0,
              "peak_mib": peak_one, "tree_mib": peak_tree}
    if report.exists():
        suite = junit_suite(report)
        total, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        counts.update(failed=failed, skipped=int(suite.get("skipped", 0)))
        counts["passed"] = total - failed - counts["skipped"]
    if rc not in (0, 5) and counts["failed"] == 0:
        counts["failed"] = 1  # pytest itself failed (collection, internal error): count the run as failed
    if to_log:
        with PRINT_LOCK:
            print(f"\n===== {label} ({counts['seconds']} s) =====\n{log_path.read_text(errors='replace')}", flush=True)
    return counts


PRINT_LOCK = threading.Lock()


def expected_seconds(label: str, tier: str, newest: bool) -> float:
    """The previous run's time from its JUnit report, else DEFAULT_SECONDS."""
    try:
        return float(junit_suite(REPORTS / f"{report_name(label)}.xml").get("time"))
    except (OSError, ET.ParseError, TypeError, ValueError, AttributeError):
        return DEFAULT_SECONDS[(tier, newest)]


def in_lanes(jobs: list[tuple], lanes: int) -> list[list[tuple]]:
    """Longest first, each job to the lane that frees up soonest. ``jobs``: (seconds, ...)."""
    queues, ends = [[] for _ in range(lanes)], [0.0] * lanes
    for job in sorted(jobs, key=lambda j: -j[0]):
        lane = ends.index(min(ends))
        queues[lane].append(job)
        ends[lane] += job[0]
    return queues


def run_in_lanes(jobs: list[tuple], lanes: int, extra: list[str]) -> list[dict]:
    """Run (seconds, label, paths, env) jobs ``lanes`` at a time; results in the jobs' order."""
    if lanes <= 1:
        return [run(label, paths, env, extra) for _, label, paths, env in jobs]
    threads = max(1, (os.cpu_count() or 2) // lanes)
    results: dict = {}

    def lane(queue):
        for _, label, paths, env in queue:
            env = dict(env, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            results[label] = run(label, paths, env, extra, to_log=True)

    workers = [threading.Thread(target=lane, args=(queue,)) for queue in in_lanes(jobs, lanes)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [results[label] for _, label, _, _ in jobs]


def gib(mib: float) -> str:
    return f"{mib / 1024:.2f} GiB"


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    ours = argv[: argv.index("--")] if "--" in argv else argv
    lanes = LANES
    if "--lanes" in ours:
        at = ours.index("--lanes")
        lanes, ours = int(ours[at + 1]), ours[:at] + ours[at + 2:]
    versions = [a for a in ours if a] or list(TEST_BEDS)
    unknown = [v for v in versions if v not in TEST_BEDS]
    if unknown:
        print(f"unknown ComfyUI version(s) {unknown}; the test beds are {list(TEST_BEDS)}", file=sys.stderr)
        return 2
    started = time.time()
    results = [run("unit (no ComfyUI)", UNIT_PATHS, dict(os.environ), extra)]
    newest = list(TEST_BEDS)[-1]
    jobs = []
    for version in versions:
        env = dict(os.environ, ATELIER_COMFYUI=version)
        for tier, paths in COMFY_TIERS.items():
            label = f"comfyui-{version} {tier}"
            jobs.append((expected_seconds(label, tier, version == newest), label, paths, env))
    if lanes > 1:
        print(f"\n{len(jobs)} runs in {lanes} lanes: " + "; ".join(
            " -> ".join(label for _, label, _, _ in queue) for queue in in_lanes(jobs, lanes)), flush=True)
    results += run_in_lanes(jobs, lanes, extra)
    print("\n===== summary =====")
    for r in results:
        print(f"{r['label']}: {r['passed']} passed, {r['failed']} failed, {r['skipped']} skipped in {r['seconds']} s; "
              f"peak RSS {gib(r['peak_mib'])} (largest process), {gib(r['tree_mib'])} (process tree)")
    too_big = [r for r in results if r["peak_mib"] > MAX_PROCESS_RSS_MIB]
    for r in too_big:
        print(f"FAILED: {r['label']}: a test process reached {gib(r['peak_mib'])} resident, over the "
              f"{gib(MAX_PROCESS_RSS_MIB)} limit (see 'memory per test file' in its pytest summary)")
    print(f"wall time {round(time.time() - started)} s ({lanes} lane{'s' if lanes > 1 else ''}); largest test process {gib(max(r['peak_mib'] for r in results))}")
    total = {k: sum(r[k] for r in results) for k in ("passed", "failed", "skipped")}
    print(f"total: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    return 1 if total["failed"] or too_big or any(r["rc"] not in (0, 5) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
