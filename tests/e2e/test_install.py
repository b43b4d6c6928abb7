"""Install like ComfyUI-Manager: git clone the committed HEAD into a fresh base's custom_nodes,
pip install -r requirements.txt, start ComfyUI on that base, the pack's nodes are listed."""
import subprocess
import sys

import pytest

from tests.harness import COMFY_DIR, REPO_ROOT, comfy_available

CLONE_NAME = "comfyui-attention-atelier"


def git(*args, cwd=REPO_ROOT):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def test_clone_install_and_start(tmp_path):
    if not comfy_available():
        pytest.skip("no ComfyUI test bed: run scripts/setup_dev.sh")
    if git("rev-parse", "--verify", "HEAD").returncode != 0:
        pytest.skip("the repository has no commit yet")
    base = tmp_path / "base"
    dest = base / "custom_nodes" / CLONE_NAME
    dest.parent.mkdir(parents=True)
    r = git("clone", "--quiet", "--depth", "1", f"file://{REPO_ROOT}", str(dest), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    req = dest / "requirements.txt"
    if req.exists():
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-r", str(req)],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        installed = [l for l in r.stdout.splitlines() if l.startswith("Successfully installed")]
        assert not any("torch" in l for l in installed), f"requirements.txt pulled in torch: {installed}"

    from comfy_server import ComfyServer
    srv = ComfyServer(base_dir=base, comfy_dir=COMFY_DIR, link_pack=False, log_path=tmp_path / "comfyui.log")
    with srv:
        info = srv.object_info()
    log = srv.log_tail(1000)
    module = f"custom_nodes.{CLONE_NAME}"
    ids = sorted(k for k, v in info.items() if v.get("python_module") == module)
    assert ids, f"no node from the cloned pack in /object_info; log:\n{log}"
    assert all(i.startswith("Atelier") for i in ids), ids
    failed = [l for l in log.splitlines() if CLONE_NAME in l and ("IMPORT FAILED" in l or "Cannot import" in l)]
    assert not failed, log

    shipped_dirty = git("status", "--porcelain", "--", ".", ":!tests", ":!scripts", ":!.ci").stdout.strip()
    if not shipped_dirty:
        from tests.harness.inprocess import declared_pack_node_ids
        assert ids == declared_pack_node_ids(), "the clone serves other nodes than the working tree declares"
