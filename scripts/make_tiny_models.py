#!/usr/bin/env python3
"""Build the seeded random-weight test models into BASE/models (idempotent).

    python scripts/make_tiny_models.py --comfy .cache/ComfyUI --base .cache/base [--only NAME] [--force] [--full-verify]

Existing files are kept when their header, detection and key names check out (a second or so);
missing or broken ones are rebuilt and then loaded through ComfyUI (load_checkpoint_guess_config /
load_lora_for_models) to prove they work.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_models  # noqa: E402
from tiny_models.env import DEFAULT_BASE, DEFAULT_COMFY, bootstrap, ensure_base_dirs  # noqa: E402

from tiny_models.fill import TINY_VERSION  # noqa: E402
from tiny_models.ip_adapter import creative_synth_artifacts  # noqa: E402

tiny_models.ARTIFACTS.update(creative_synth_artifacts())  # IP-Adapters + CLIP vision (issue 4)
from tiny_models.dit import dit_artifacts  # noqa: E402

tiny_models.ARTIFACTS.update(dit_artifacts())  # tiny Flux.1 diffusion model (issue 10)
from tiny_models.flux_text import flux_part_artifacts  # noqa: E402

tiny_models.ARTIFACTS.update(flux_part_artifacts())  # tiny Flux text encoders + VAE (its templates)
from tiny_models.lumina import z_image_artifacts  # noqa: E402
from tiny_models.qwen3_text import qwen3_text_artifacts  # noqa: E402

tiny_models.ARTIFACTS.update(z_image_artifacts())  # tiny Z-Image (issue 17)
tiny_models.ARTIFACTS.update(qwen3_text_artifacts())  # tiny Qwen3 text encoders (Z-Image, FLUX.2 klein templates)
from tiny_models.qwen_image import qwen_image_artifacts  # noqa: E402
from tiny_models.qwen_image_parts import qwen_image_part_artifacts  # noqa: E402
from tiny_models.flux2 import flux2_artifacts, flux2_vae_artifacts  # noqa: E402

tiny_models.ARTIFACTS.update(qwen_image_artifacts())  # tiny Qwen-Image (its template)
tiny_models.ARTIFACTS.update(qwen_image_part_artifacts())  # tiny Qwen2.5-VL text encoder + Wan 2.1 VAE (Qwen-Image template)
tiny_models.ARTIFACTS.update(flux2_artifacts())  # tiny FLUX.2 klein (its template)
tiny_models.ARTIFACTS.update(flux2_vae_artifacts())  # tiny FLUX.2 VAE (klein template)
from tiny_models.chroma import chroma_artifacts  # noqa: E402

tiny_models.ARTIFACTS.update(chroma_artifacts())  # tiny Chroma (its family tests, on both test beds)
from tiny_models.wan22_parts import wan22_part_artifacts  # noqa: E402

tiny_models.ARTIFACTS.update(wan22_part_artifacts())  # tiny UMT5 text encoder + Wan 2.2 VAE (the Wan 2.2 templates, both)
from tiny_models import ltx, minimax  # noqa: E402
from tiny_models.wan import wan_artifacts  # noqa: E402

tiny_models.ARTIFACTS.update(wan_artifacts())  # tiny Wan 2.1 / 2.2 video models (issue 24, both test beds)
tiny_models.ARTIFACTS.update(ltx.ltx_artifacts())  # tiny LTXV (both) and LTX-2 audio-video (0.33.0) (issue 24)
tiny_models.ARTIFACTS.update(minimax.minimax_artifacts())  # tiny MiniMax H3 (0.33.0 only) (issue 24)
from tiny_models import krea2, krea2_text  # noqa: E402

# tiny Krea 2 and its text encoder (the Krea 2 template; 0.33.0 only: left out where ComfyUI has no Krea 2)
tiny_models.ARTIFACTS.update({krea2.KREA2: (krea2.DIFFUSION_MODELS, krea2.build_krea2, krea2.verify_krea2)})
tiny_models.ARTIFACTS.update(krea2_text.krea2_text_artifacts())
# name -> why the bootstrapped ComfyUI cannot build it (None: it can); such files are left out, not failed
MISSING = {**{name: ltx.missing for name in ltx.MODELS}, minimax.MINIMAX_H3: minimax.missing,
           krea2.KREA2: krea2_text.missing, krea2_text.KREA2_TEXT: krea2_text.missing}


def header_ok(path: Path) -> bool:
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("atelier_tiny") == TINY_VERSION
    except Exception:
        return False


def ensure(name: str, base: Path, force: bool = False, full_verify: bool = False) -> tuple[str, Path, dict]:
    sub, builder, verifier = tiny_models.ARTIFACTS[name]
    path = base / "models" / sub / name
    if path.exists() and not force and header_ok(path):
        try:
            info = verifier(path, full=full_verify)
            return "ok", path, info
        except Exception as e:  # broken or stale: rebuild
            logging.warning("%s failed verification (%s); rebuilding", path, e)
    t = time.time()
    info = builder(path)
    info["build_s"] = round(time.time() - t, 1)
    t = time.time()
    info.update(verifier(path, full=True))
    info["verify_s"] = round(time.time() - t, 1)
    return "built", path, info


def _inversion_assets(base: Path) -> int:
    """Tiny ControlNet + reference image (scripts/tiny_models/inversion_assets.py); returns failures."""
    try:
        from tiny_models.inversion_assets import ensure_inversion_assets
        for line in ensure_inversion_assets(base):
            print(line, flush=True)
        return 0
    except Exception as e:
        print(f"[tiny-models] FAILED inversion assets: {type(e).__name__}: {e}", flush=True)
        return 1


def _creative_synth_assets(base: Path) -> int:
    """The content image of the CreativeSynth workflows (scripts/tiny_models/content_image.py)."""
    try:
        from tiny_models.content_image import ensure_content_image
        status, info = ensure_content_image(base)
        print(f"[tiny-models] {status:5s} content image {info}", flush=True)
        return 0
    except Exception as e:
        print(f"[tiny-models] FAILED content image: {type(e).__name__}: {e}", flush=True)
        return 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comfy", default=str(DEFAULT_COMFY))
    ap.add_argument("--base", default=str(DEFAULT_BASE))
    ap.add_argument("--only", action="append", choices=sorted(tiny_models.ARTIFACTS), help="build only these (repeatable)")
    ap.add_argument("--force", action="store_true", help="rebuild even if present")
    ap.add_argument("--full-verify", action="store_true", help="also fully load files that already exist")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    base = ensure_base_dirs(a.base)
    bootstrap(a.comfy, base)
    t0 = time.time()
    failed = 0
    for name in a.only or tiny_models.ARTIFACTS:
        reason = MISSING[name](name) if name in MISSING else None
        if reason:
            print(f"[tiny-models] skip  {name}: {reason}", flush=True)
            continue
        try:
            status, path, info = ensure(name, base, a.force, a.full_verify)
            print(f"[tiny-models] {status:5s} {path} {info}", flush=True)
        except Exception as e:
            failed += 1
            print(f"[tiny-models] FAILED {name}: {type(e).__name__}: {e}", flush=True)
    failed += _inversion_assets(base)
    failed += _creative_synth_assets(base)
    print(f"[tiny-models] done in {time.time() - t0:.1f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
