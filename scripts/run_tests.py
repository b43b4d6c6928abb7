#!/usr/bin/env python3
"""`make test`: the unit tier once, then the in-process, e2e and browser tiers on each ComfyUI test bed.

    python scripts/run_tests.py                    # every version in tiny_models.env.TEST_BEDS
    python scripts/run_tests.py 0.33.0             # one version (make test COMFYUI=0.33.0)
    python scripts/run_tests.py 0.33.0 -- -k regional -x   # extra pytest arguments after --

Each pytest run writes a JUnit report to .cache/test-reports/; the last line sums them up
("total: N passed, N failed, N skipped") and the exit status is non-zero if any run failed.
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
COMFY_PATHS = ["tests/comfy", "tests/e2e", "tests/browser"]


def run(label: str, paths: list[str], env: dict, extra: list[str]) -> dict:
    REPORTS.mkdir(parents=True, exist_ok=True)
    report = REPORTS / (label.split(" ")[0] + ".xml")
    report.unlink(missing_ok=True)
    print(f"\n===== {label} =====", flush=True)
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", *paths, *extra],
                         cwd=ROOT, env=env)
    counts = {"label": label, "rc": rc, "seconds": round(time.time() - t0), "passed": 0, "failed": 0, "skipped": 0}
    if report.exists():
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        total, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        counts.update(failed=failed, skipped=int(suite.get("skipped", 0)))
        counts["passed"] = total - failed - counts["skipped"]
    if rc not in (0, 5) and counts["failed"] == 0:
        counts["failed"] = 1  # pytest itself failed (collection, internal error): count the run as failed
    return counts


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    versions = [a for a in (argv[: argv.index("--")] if "--" in argv else argv) if a] or list(TEST_BEDS)
    unknown = [v for v in versions if v not in TEST_BEDS]
    if unknown:
        print(f"unknown ComfyUI version(s) {unknown}; the test beds are {list(TEST_BEDS)}", file=sys.stderr)
        return 2
    results = [run("unit (no ComfyUI)", UNIT_PATHS, dict(os.environ), extra)]
    for version in versions:
        env = dict(os.environ, ATELIER_COMFYUI=version)
        results.append(run(f"comfyui-{version} (in-process, e2e, browser)", COMFY_PATHS, env, extra))
    print("\n===== summary =====")
    for r in results:
        print(f"{r['label']}: {r['passed']} passed, {r['failed']} failed, {r['skipped']} skipped in {r['seconds']} s")
    total = {k: sum(r[k] for r in results) for k in ("passed", "failed", "skipped")}
    print(f"total: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    return 1 if total["failed"] or any(r["rc"] not in (0, 5) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
