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

# The ComfyUI versions the suite runs on (scripts/setup_dev.sh builds each): tree, base directory and the
# frontend each is served with. ATELIER_COMFYUI picks one (default: the oldest supported);
# ATELIER_COMFY / ATELIER_BASE / ATELIER_FRONTEND override single paths.
TEST_BEDS = {
    "0.3.75": ("ComfyUI", "base", "1.32.9"),
    "0.33.0": ("ComfyUI-0.33.0", "base-0.33.0", "1.49.6"),
}
COMFYUI_VERSION = os.environ.get("ATELIER_COMFYUI") or "0.3.75"
if COMFYUI_VERSION not in TEST_BEDS:
    raise SystemExit(f"ATELIER_COMFYUI={COMFYUI_VERSION!r}: the test beds are {', '.join(TEST_BEDS)}")
_tree, _base, FRONTEND_VERSION = TEST_BEDS[COMFYUI_VERSION]
NEWEST_COMFYUI = list(TEST_BEDS)[-1]  # what runs on one test bed only (make test's time) runs on this one
DEFAULT_COMFY = Path(os.environ.get("ATELIER_COMFY", CACHE_DIR / _tree))
DEFAULT_BASE = Path(os.environ.get("ATELIER_BASE", CACHE_DIR / _base))
# Newer frontends the browser tier also runs on that test bed (a second server per frontend, tests marked
# all_frontends only: templates load/convert/no overlaps, the region editor, Nodes 2.0).
EXTRA_FRONTENDS = {
    "0.33.0": ("1.58.1",),
}
FRONTENDS = sorted({fe for _, _, fe in TEST_BEDS.values()} | {fe for extra in EXTRA_FRONTENDS.values() for fe in extra},
                   key=lambda v: tuple(map(int, v.split("."))))  # every frontend setup_dev.sh installs


def frontend_root(version: str) -> Path:
    """The static/ folder of frontend ``version`` (setup_dev.sh installs each into .cache/frontends/<version>)."""
    return CACHE_DIR / "frontends" / version / "comfyui_frontend_package" / "static"


def browser_frontends(comfyui_version: str = COMFYUI_VERSION) -> tuple[str, ...]:
    """The frontends the browser tier runs on for a test bed: its own first, then the newer ones."""
    return (TEST_BEDS[comfyui_version][2], *EXTRA_FRONTENDS.get(comfyui_version, ()))


DEFAULT_FRONTEND_ROOT = Path(os.environ.get("ATELIER_FRONTEND", frontend_root(FRONTEND_VERSION)))
PACK_LINK_NAME = "attention_atelier"
# test-only loaders for the tiny stand-ins ComfyUI's own loaders cannot build (never shipped)
TEST_BED_NODES_DIR = REPO_ROOT / "scripts" / "test_bed_nodes"
TEST_BED_NODES_LINK_NAME = "atelier_test_bed_nodes"


def comfy_version(comfy_dir: Path | str = DEFAULT_COMFY) -> str:
    """The version string of the ComfyUI tree at comfy_dir (its comfyui_version.py)."""
    text = (Path(comfy_dir) / "comfyui_version.py").read_text()
    return text.split("__version__", 1)[1].split("=", 1)[1].strip().strip("\"'")


def frontend_version(frontend_root: Path | str = DEFAULT_FRONTEND_ROOT) -> str:
    """The comfyui-frontend-package version whose static/ folder is frontend_root ('' if none)."""
    dist = sorted(Path(frontend_root).parent.parent.glob("comfyui_frontend_package-*.dist-info"))
    return dist[0].name.removesuffix(".dist-info").split("-", 1)[1] if dist else ""

_BOOTSTRAPPED: tuple[str, str] | None = None


def ensure_base_dirs(base: Path | str, link_pack: bool = True) -> Path:
    """Create BASE/{custom_nodes,models/*,input,output,temp}; symlink the repo into custom_nodes."""
    base = Path(base)
    for sub in ("custom_nodes", "models/checkpoints", "models/loras", "models/controlnet",
                "models/ipadapter", "models/clip_vision", "models/diffusion_models", "models/text_encoders",
                "models/vae", "input", "output", "temp"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    if link_pack:
        for name, target in ((PACK_LINK_NAME, REPO_ROOT), (TEST_BED_NODES_LINK_NAME, TEST_BED_NODES_DIR)):
            link = base / "custom_nodes" / name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(target, target_is_directory=True)
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
