"""Where things are: repo, test-bed ComfyUI, base directory with the tiny models."""
from __future__ import annotations

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


def api_workflows() -> list[Path]:
    return sorted(WORKFLOWS_API_DIR.glob("*.json")) if WORKFLOWS_API_DIR.is_dir() else []


def comfy_available() -> bool:
    return (COMFY_DIR / "main.py").is_file()
