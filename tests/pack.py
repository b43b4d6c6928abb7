"""Import the pack under test as a package, whatever its checkout folder is called.

Inside an in-process ComfyUI the pack is the module ComfyUI loaded from custom_nodes (so classes are
the ones the nodes use); otherwise it is loaded from the repo root as ``attention_atelier``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT = os.path.join(ROOT, "__init__.py")
NAME = "attention_atelier"


_COMFY_COPY: list = []  # the copy ComfyUI loaded, once found (it stays for the process)


def load_pack():
    if _COMFY_COPY:
        return _COMFY_COPY[0]
    init = os.path.realpath(INIT)
    loaded = [m for m in list(sys.modules.values())
              if getattr(m, "__file__", None) and m.__file__.endswith("__init__.py")
              and os.path.realpath(m.__file__) == init]
    # ComfyUI names the pack after its custom_nodes path; prefer that copy (its classes are the nodes').
    loaded.sort(key=lambda m: "custom_nodes" not in m.__name__)
    if loaded and "custom_nodes" in loaded[0].__name__:
        _COMFY_COPY.append(loaded[0])
    if loaded:
        return loaded[0]
    spec = importlib.util.spec_from_file_location(NAME, INIT, submodule_search_locations=[ROOT])
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)
    return module


def pack_module(dotted: str):
    """e.g. pack_module("attention.style_aligned")."""
    return importlib.import_module(f"{load_pack().__name__}.{dotted}")
