"""Where things are: repo, test-bed ComfyUI, base directory with the tiny models."""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO_ROOT / "scripts"
if str(SCRIPTS_DIR) not in sys.path:
    sys.path.append(str(SCRIPTS_DIR))  # tiny_models, run_workflow, comfy_server (appended: never shadows)

from tiny_models.env import DEFAULT_BASE as BASE_DIR, DEFAULT_COMFY as COMFY_DIR, PACK_LINK_NAME, TEST_BED_NODES_DIR  # noqa: E402,F401

WORKFLOWS_API_DIR = REPO_ROOT / "workflows" / "api"
PACK_DIR = BASE_DIR / "custom_nodes" / PACK_LINK_NAME
SD15 = "atelier_tiny_sd15.safetensors"
SD15_KLVAE = "atelier_tiny_sd15_klvae.safetensors"
SDXL = "atelier_tiny_sdxl.safetensors"
SD15_LORA = "atelier_tiny_sd15_lora.safetensors"


def model_files(workflow: Path) -> tuple:
    """The diffusion model files an API workflow loads (checkpoint or UNet loaders)."""
    graph = json.loads(workflow.read_text())
    return tuple(sorted(n["inputs"][k] for n in graph.values() for k in ("ckpt_name", "unet_name")
                        if isinstance(n.get("inputs", {}).get(k), str)))


def api_workflows() -> list[Path]:
    """The shipped API workflows, those loading the same diffusion model next to each other: a server's
    default cache hands the previous prompt's loader outputs to the next, so each model loads about once
    per pass (a tiny SDXL load is ~15 s on 2 cores)."""
    if not WORKFLOWS_API_DIR.is_dir():
        return []
    return sorted(WORKFLOWS_API_DIR.glob("*.json"), key=lambda p: (model_files(p), p.name))


def one_per_model(workflows: list) -> list:
    """A workflow per diffusion model the shipped workflows load (each model family of the test bed once:
    SD1.5, SDXL, Flux.1, FLUX.2 klein, Qwen-Image, Z-Image, Krea 2), preferring one whose reference cache can record
    (a reference wired), then the most Atelier nodes; the soak and the older test bed's e2e run these (make test's time)."""
    chosen = {}
    for workflow in workflows:
        graph = json.loads(workflow.read_text())
        cached = any(isinstance(node["inputs"].get("reference"), list) for node in graph.values()
                     if "reference_cache_mb" in node["inputs"])
        atelier = (cached, sum(node["class_type"].startswith("Atelier") for node in graph.values()))
        key = model_files(workflow)
        if key not in chosen or atelier > chosen[key][0]:
            chosen[key] = (atelier, workflow)
    return [workflow for _, workflow in chosen.values()]


def comfy_available() -> bool:
    return (COMFY_DIR / "main.py").is_file()
