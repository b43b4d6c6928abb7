"""Locate the test-bed ComfyUI and import it in-process safely (CPU, our base directory).

Everything that imports ``comfy.*`` must call :func:`bootstrap` first: ``comfy.cli_args.args`` has to
be set (cpu, base_directory) before ``comfy.model_management`` / ``folder_paths`` are imported.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("ATELIER_CACHE", REPO_ROOT / ".cache"))
DEFAULT_COMFY = Path(os.environ.get("ATELIER_COMFY", CACHE_DIR / "ComfyUI"))
DEFAULT_BASE = Path(os.environ.get("ATELIER_BASE", CACHE_DIR / "base"))
PACK_LINK_NAME = "attention_atelier"

_BOOTSTRAPPED: tuple[str, str] | None = None


def ensure_base_dirs(base: Path | str, link_pack: bool = True) -> Path:
    """Create BASE/{custom_nodes,models/*,input,output,temp}; symlink the repo into custom_nodes."""
    base = Path(base)
    for sub in ("custom_nodes", "models/checkpoints", "models/loras", "models/controlnet",
                "models/ipadapter", "models/clip_vision", "input", "output", "temp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if link_pack:
        link = base / "custom_nodes" / PACK_LINK_NAME
        if not link.exists() and not link.is_symlink():
            link.symlink_to(REPO_ROOT, target_is_directory=True)
    return base


def bootstrap(comfy_dir: Path | str = DEFAULT_COMFY, base_dir: Path | str = DEFAULT_BASE, cpu: bool = True):
    """Put ComfyUI on sys.path and configure its args. Idempotent; returns the ``comfy.cli_args.args``.

    Refuses to re-bootstrap with different directories once comfy is imported (ComfyUI keeps global
    state, e.g. folder_paths).
    """
    global _BOOTSTRAPPED
    comfy_dir, base_dir = str(Path(comfy_dir).resolve()), str(Path(base_dir).resolve())
    if _BOOTSTRAPPED is not None:
        if _BOOTSTRAPPED != (comfy_dir, base_dir):
            raise RuntimeError(f"ComfyUI already bootstrapped with {_BOOTSTRAPPED}, not {(comfy_dir, base_dir)}")
        import comfy.cli_args
        return comfy.cli_args.args
    if not os.path.isfile(os.path.join(comfy_dir, "main.py")):
        raise FileNotFoundError(f"no ComfyUI at {comfy_dir} (run scripts/setup_dev.sh)")
    if "comfy.model_management" in sys.modules or "folder_paths" in sys.modules:
        raise RuntimeError("comfy.model_management/folder_paths imported before bootstrap()")
    # ComfyUI's top-level modules (nodes, execution, utils, ...) must win over same-named dirs
    # elsewhere (our pack has a nodes/ package).
    if comfy_dir in sys.path:
        sys.path.remove(comfy_dir)
    sys.path.insert(0, comfy_dir)
    import comfy.options  # noqa: F401  (args parsing stays disabled: args = parse_args([]))
    import comfy.cli_args

    args = comfy.cli_args.args
    args.cpu = cpu
    args.base_directory = base_dir
    args.disable_auto_launch = True
    args.database_url = "sqlite:///:memory:"
    import folder_paths  # noqa: F401  (now bound to base_dir)

    _BOOTSTRAPPED = (comfy_dir, base_dir)
    return args
