#!/usr/bin/env python3
"""Start a real headless ComfyUI (CPU) on a free port, wait until it answers, stop it.

    with ComfyServer(base_dir=BASE) as url:       # url = "http://127.0.0.1:PORT"
        ...

CLI: python scripts/comfy_server.py [--base BASE] [--port P]  (runs until Ctrl-C; prints the URL)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from tiny_models.env import DEFAULT_BASE, DEFAULT_COMFY, DEFAULT_FRONTEND_ROOT, REPO_ROOT, ensure_base_dirs  # noqa: E402

DEFAULT_PYTHON = Path(os.environ.get("ATELIER_VENV", REPO_ROOT / ".venv")) / "bin" / "python"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A ComfyUI subprocess. ``start()`` returns the base URL; ``stop()`` terminates it (idempotent)."""

    def __init__(self, base_dir=DEFAULT_BASE, comfy_dir=DEFAULT_COMFY, port: int | None = None,
                 python=None, log_path=None, startup_timeout: float = 120, extra_args=(), link_pack: bool = True,
                 frontend_root=DEFAULT_FRONTEND_ROOT):
        self.base_dir = Path(base_dir).resolve()
        self.comfy_dir = Path(comfy_dir).resolve()
        self.port = port or free_port()
        self.python = str(python or (DEFAULT_PYTHON if DEFAULT_PYTHON.exists() else sys.executable))
        self.log_path = Path(log_path) if log_path else self.base_dir / f"comfyui-{self.port}.log"
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.link_pack = link_pack
        # The test bed's own frontend (setup_dev.sh installs one per ComfyUI version); else the venv's package.
        self.frontend_root = Path(frontend_root) if frontend_root and Path(frontend_root).is_dir() else None
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def command(self) -> list[str]:
        return [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                "--base-directory", str(self.base_dir), "--disable-auto-launch",
                "--database-url", "sqlite:///:memory:",
                *(["--front-end-root", str(self.frontend_root)] if self.frontend_root else []), *self.extra_args]

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def alive(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as r:
                return r.status == 200 and "system" in json.loads(r.read())
        except Exception:
            return False

    def start(self) -> str:
        ensure_base_dirs(self.base_dir, link_pack=self.link_pack)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        t0 = time.time()
        self.proc = subprocess.Popen(self.command(), cwd=self.comfy_dir, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        while time.time() - t0 < self.startup_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} during startup; log {self.log_path}:\n{self.log_tail()}")
            if self.alive():
                self.startup_s = time.time() - t0
                return self.url
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"ComfyUI not ready after {self.startup_timeout}s; log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 15):
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)  # its own session: only this server and its children
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout)
        except ProcessLookupError:
            pass

    def object_info(self) -> dict:
        with urllib.request.urlopen(self.url + "/object_info", timeout=60) as r:
            return json.loads(r.read())

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=str(DEFAULT_BASE))
    ap.add_argument("--comfy", default=str(DEFAULT_COMFY))
    ap.add_argument("--port", type=int, default=None)
    a = ap.parse_args(argv)
    srv = ComfyServer(a.base, a.comfy, a.port)
    with srv as url:
        print(f"ComfyUI ready at {url} after {srv.startup_s:.1f}s (log {srv.log_path}); Ctrl-C stops it", flush=True)
        try:
            while srv.proc and srv.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
