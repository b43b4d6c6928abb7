"""Test harness for Attention Atelier: paths, an in-process ComfyUI, a real server, the pack's node ids.

Fixtures (tests/conftest.py): ``comfy`` (session, :class:`tests.harness.inprocess.ComfyHarness`),
``comfy_server`` (session, a running :class:`comfy_server.ComfyServer`; ``.url``),
``repo_root``, ``base_dir``, ``comfy_dir``, ``api_workflows``.
"""
from .paths import (BASE_DIR, COMFY_DIR, PACK_DIR, REPO_ROOT, SCRIPTS_DIR, SD15, SD15_KLVAE, SD15_LORA,  # noqa: F401
                    SDXL, WORKFLOWS_API_DIR, api_workflows, comfy_available)
