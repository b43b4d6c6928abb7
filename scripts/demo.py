#!/usr/bin/env python3
"""`make demo`: start a headless ComfyUI, run every workflows/api/*.json, save the images.

    python scripts/demo.py [--ckpt /path/model.safetensors] [--base BASE] [--out demo_output]
    CKPT=/path/model.safetensors python scripts/demo.py

The workflows name the public models (SD1.5, SDXL, IP-Adapter, ...); the demo runs them on the tiny
test-bed stand-ins (scripts/tiny_models/template_swap.py) unless --real-models is given (then the
models the workflows name must be in BASE/models). With a checkpoint given, it is linked into
BASE/models/checkpoints and every CheckpointLoaderSimple uses it.
Images go to demo_output/<timestamp>/<workflow>/. Exit status 1 if any workflow failed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from comfy_server import ComfyServer  # noqa: E402
from run_workflow import WorkflowError, load_workflow, run_prompt  # noqa: E402
from tiny_models.env import DEFAULT_BASE, DEFAULT_COMFY, REPO_ROOT  # noqa: E402
from tiny_models.template_swap import for_test_bed  # noqa: E402


def install_checkpoint(ckpt: Path, base: Path) -> str:
    dest = base / "models" / "checkpoints" / ckpt.name
    if dest.resolve() != ckpt.resolve():
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        try:
            dest.symlink_to(ckpt.resolve())
        except OSError:
            shutil.copy2(ckpt, dest)
    return ckpt.name


def override_ckpt(prompt: dict, ckpt_name: str) -> int:
    n = 0
    for node in prompt.values():
        if node.get("class_type") in ("CheckpointLoaderSimple", "CheckpointLoader"):
            node["inputs"]["ckpt_name"] = ckpt_name
            n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=os.environ.get("CKPT") or None)
    ap.add_argument("--base", default=str(DEFAULT_BASE))
    ap.add_argument("--comfy", default=str(DEFAULT_COMFY))
    ap.add_argument("--workflows", default=str(REPO_ROOT / "workflows" / "api"))
    ap.add_argument("--out", default=str(REPO_ROOT / "demo_output"))
    ap.add_argument("--real-models", action="store_true",
                    help="run the workflows as shipped (the public models they name), not on the tiny stand-ins")
    ap.add_argument("--timeout", type=float, default=900, help="per workflow, seconds")
    a = ap.parse_args(argv)

    workflows = sorted(Path(a.workflows).glob("*.json"))
    if not workflows:
        print(f"[demo] no API workflows in {a.workflows}; nothing to run")
        return 0
    base = Path(a.base)
    ckpt_name = None
    if a.ckpt:
        ckpt = Path(a.ckpt)
        if not ckpt.is_file():
            print(f"[demo] checkpoint not found: {ckpt}", file=sys.stderr)
            return 2
        ckpt_name = install_checkpoint(ckpt, base)
        print(f"[demo] using checkpoint {ckpt} as {ckpt_name}")
    out_root = Path(a.out) / time.strftime("%Y%m%d-%H%M%S")
    out_root.mkdir(parents=True, exist_ok=True)
    srv = ComfyServer(base_dir=base, comfy_dir=a.comfy, log_path=out_root / "comfyui.log")
    failures = []
    with srv as url:
        print(f"[demo] ComfyUI ready at {url} in {srv.startup_s:.1f}s (log {srv.log_path})", flush=True)
        for wf in workflows:
            t = time.time()
            print(f"[demo] {wf.name}", flush=True)
            try:
                prompt = load_workflow(wf)
                if not a.real_models:
                    prompt = for_test_bed(prompt)
                if ckpt_name:
                    override_ckpt(prompt, ckpt_name)
                _, saved = run_prompt(url, prompt, out_root / wf.stem, a.timeout)
                if not saved:
                    raise WorkflowError("execution", "no output image")
                print(f"[demo]   ok in {time.time() - t:.1f}s: {len(saved)} image(s)", flush=True)
            except (WorkflowError, OSError, ValueError) as e:
                failures.append(wf.name)
                print(f"[demo]   FAILED {wf.name}: {e}", flush=True)
    print(f"[demo] images in {out_root}")
    if failures:
        print(f"[demo] {len(failures)} of {len(workflows)} failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
