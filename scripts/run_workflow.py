#!/usr/bin/env python3
"""Run an API-format workflow on a running ComfyUI and download its images.

    python scripts/run_workflow.py WORKFLOW_API.json --url http://127.0.0.1:8188 \
        [--set 3.seed=7 --set 6.text="a cat"] [--out DIR] [--timeout S]

Exit status: 0 success, 2 rejected by validation (HTTP 400, node_errors printed),
1 execution error, 3 timeout or connection failure.
Importable: queue_prompt, wait_for, fetch_images, run_prompt, apply_sets, load_workflow.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path


class WorkflowError(RuntimeError):
    """Raised with ComfyUI's own error text. ``kind`` is 'validation', 'execution' or 'timeout'."""

    def __init__(self, kind: str, message: str, payload=None):
        super().__init__(message)
        self.kind, self.payload = kind, payload


def _http(url: str, data: dict | None = None, timeout: float = 30):
    req = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                 headers={"Content-Type": "application/json"} if data is not None else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def get_json(url: str, path: str, timeout: float = 30):
    return json.loads(_http(url.rstrip("/") + path, timeout=timeout))


def format_node_errors(body: dict) -> str:
    lines = []
    err = body.get("error")
    if isinstance(err, dict):
        lines.append(f"{err.get('type', 'error')}: {err.get('message', '')} {err.get('details', '')}".rstrip())
    elif err:
        lines.append(str(err))
    for node_id, ne in (body.get("node_errors") or {}).items():
        for e in ne.get("errors", []):
            lines.append(f"  node {node_id} ({ne.get('class_type')}): {e.get('message')}: {e.get('details')}")
    return "\n".join(lines) or json.dumps(body)


def queue_prompt(url: str, prompt: dict, client_id: str | None = None) -> str:
    """POST /prompt; returns prompt_id. Raises WorkflowError('validation') on a 400 with node_errors."""
    try:
        body = json.loads(_http(url.rstrip("/") + "/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}))
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            body = json.loads(raw)
        except ValueError:
            raise WorkflowError("validation", f"HTTP {e.code}: {raw[:2000]!r}") from None
        raise WorkflowError("validation", format_node_errors(body), body) from None
    if body.get("node_errors"):
        raise WorkflowError("validation", format_node_errors(body), body)
    return body["prompt_id"]


def connect_ws(url: str, client_id: str):
    import websocket  # websocket-client
    u = urllib.parse.urlparse(url)
    scheme = "wss" if u.scheme == "https" else "ws"
    ws = websocket.WebSocket()
    ws.connect(f"{scheme}://{u.netloc}/ws?clientId={client_id}", timeout=10)
    return ws


def _default_log(msg: str):
    print(msg, flush=True)


def wait_for(url: str, prompt_id: str, ws=None, timeout: float = 600, log=_default_log) -> dict:
    """Follow the websocket (if given) and poll /history until prompt_id finishes.

    Returns the /history entry ({"outputs": ..., "status": ...}). Raises WorkflowError on
    execution_error / interruption ('execution') or after ``timeout`` seconds ('timeout').
    """
    import websocket
    deadline = time.time() + timeout
    last_poll = 0.0
    error = None
    while time.time() < deadline:
        msg = None
        if ws is not None:
            ws.settimeout(1.0)
            try:
                msg = ws.recv()
            except websocket.WebSocketTimeoutException:
                msg = None
            except (websocket.WebSocketConnectionClosedException, OSError):
                ws = None
        else:
            time.sleep(0.5)
        terminal = False
        if isinstance(msg, str):
            ev = json.loads(msg)
            t, d = ev.get("type"), ev.get("data") or {}
            if d.get("prompt_id") not in (None, prompt_id):
                continue
            if t == "executing" and d.get("node") is not None:
                log(f"  executing node {d['node']}")
            elif t == "execution_cached" and d.get("nodes"):
                log(f"  cached nodes {', '.join(map(str, d['nodes']))}")
            elif t == "progress":
                log(f"  node {d.get('node')} step {d.get('value')}/{d.get('max')}")
            terminal = t in ("execution_success", "execution_error", "execution_interrupted")
            if t == "execution_error":
                error = (f"{d.get('node_type')} (node {d.get('node_id')}): {d.get('exception_type')}: "
                         f"{d.get('exception_message')}\n{''.join(d.get('traceback') or [])}")
            elif t == "execution_interrupted":
                error = f"interrupted at node {d.get('node_id')}"
        if msg is None or terminal or time.time() - last_poll > 5:
            last_poll = time.time()
            hist = get_json(url, f"/history/{prompt_id}")
            entry = hist.get(prompt_id)
            if entry and (entry.get("status") or {}).get("completed") is not None:
                status = entry.get("status") or {}
                if status.get("status_str") == "error" or error:
                    if not error:
                        for m in status.get("messages", []):
                            if m[0] in ("execution_error", "execution_interrupted"):
                                e = m[1]
                                error = (f"{e.get('node_type')} (node {e.get('node_id')}): {e.get('exception_type', m[0])}: "
                                         f"{e.get('exception_message', '')}")
                    raise WorkflowError("execution", error or "execution failed", entry)
                return entry
    raise WorkflowError("timeout", f"prompt {prompt_id} did not finish within {timeout:.0f}s")


def output_files(entry: dict) -> list[dict]:
    """Every {filename, subfolder, type} in a history entry's outputs (images, gifs, ...)."""
    files = []
    for node_id, out in (entry.get("outputs") or {}).items():
        for key, items in out.items():
            for it in items if isinstance(items, list) else []:
                if isinstance(it, dict) and "filename" in it:
                    files.append(dict(it, node_id=node_id, output=key))
    return files


def fetch_images(url: str, entry: dict, out_dir, types=("output",)) -> list[Path]:
    """Download the history entry's output files via /view into out_dir; returns the saved paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for f in output_files(entry):
        if types and f.get("type") not in types:
            continue
        q = urllib.parse.urlencode({"filename": f["filename"], "subfolder": f.get("subfolder", ""), "type": f.get("type", "output")})
        data = _http(url.rstrip("/") + "/view?" + q, timeout=60)
        p = out_dir / f"{f['node_id']}_{Path(f['filename']).name}"
        p.write_bytes(data)
        saved.append(p)
    return saved


def parse_value(s: str):
    try:
        return json.loads(s)
    except ValueError:
        return s


def apply_sets(prompt: dict, sets: list[str]) -> dict:
    """Apply 'NODE.input=value' overrides (value parsed as JSON when possible) in place."""
    for s in sets or []:
        lhs, sep, rhs = s.partition("=")
        node, dot, name = lhs.partition(".")
        if not sep or not dot:
            raise ValueError(f"bad --set {s!r}: expected NODE.input=value")
        if node not in prompt:
            raise ValueError(f"bad --set {s!r}: no node {node!r} in workflow")
        prompt[node].setdefault("inputs", {})[name] = parse_value(rhs)
    return prompt


def load_workflow(path) -> dict:
    data = json.loads(Path(path).read_text())
    if "nodes" in data and "links" in data:
        raise ValueError(f"{path} is a UI-format workflow; export it with 'Save (API)'")
    return data.get("prompt", data) if isinstance(data.get("prompt"), dict) else data


def run_prompt(url: str, prompt: dict, out_dir=None, timeout: float = 600, log=_default_log) -> tuple[dict, list[Path]]:
    """Queue, follow and download. Returns (history entry, saved image paths)."""
    client_id = uuid.uuid4().hex
    ws = None
    try:
        ws = connect_ws(url, client_id)
    except Exception as e:  # polling still works
        log(f"  (websocket unavailable: {e}; polling /history)")
    try:
        pid = queue_prompt(url, prompt, client_id)
        log(f"queued prompt {pid}")
        entry = wait_for(url, pid, ws, timeout, log)
    finally:
        if ws is not None:
            ws.close()
    saved = fetch_images(url, entry, out_dir) if out_dir is not None else []
    return entry, saved


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workflow")
    ap.add_argument("--url", default="http://127.0.0.1:8188")
    ap.add_argument("--set", action="append", default=[], metavar="NODE.input=VALUE")
    ap.add_argument("--out", default="run_output")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args(argv)
    try:
        prompt = apply_sets(load_workflow(a.workflow), a.set)
        t = time.time()
        _, saved = run_prompt(a.url, prompt, a.out, a.timeout)
    except WorkflowError as e:
        print(f"FAILED ({e.kind}): {e}", file=sys.stderr, flush=True)
        return {"validation": 2, "execution": 1}.get(e.kind, 3)
    except (OSError, ValueError) as e:
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 3
    print(f"success in {time.time() - t:.1f}s")
    for p in saved:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
