#!/usr/bin/env bash
# The unit tier and the in-process tier (tests/comfy) on one ComfyUI test bed under each CPU-kernel setting
# torch and oneDNN can pick, so that a comparison which only holds on this machine's kernels fails here and
# not on someone else's CPU (issue 26). Not part of `make test` or CI: it runs both tiers four times (the
# in-process tier takes ~20 minutes on a 2-core machine; pass -m "not slow" to leave out the tiny SDXL).
#
#   scripts/cpu_kernels.sh                          # test bed 0.33.0 (make kernels)
#   scripts/cpu_kernels.sh 0.3.75                   # another test bed (make kernels COMFYUI=0.3.75)
#   scripts/cpu_kernels.sh 0.33.0 -m "not slow" -k krea2   # extra pytest arguments after the version
#
# Settings (each run single-threaded unless OMP_NUM_THREADS is set):
#   native                       what torch and oneDNN pick on this CPU (AVX-512 / AMX where there is one)
#   ATEN_CPU_CAPABILITY=avx2     torch's own kernels (reductions, softmax, elementwise) as on an AVX2-only CPU
#   ATEN_CPU_CAPABILITY=default  torch's own kernels without SIMD
#   ONEDNN_MAX_CPU_ISA=AVX2      oneDNN's matmuls and convolutions capped at AVX2
# Every rounding comparison of tests/tolerance.py is logged to .cache/cpu-kernels/<setting>.tsv; the summary
# line of a setting gives each tier's pytest result and, per ulps budget, the largest difference seen.
# Exit status: non-zero if any run failed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${ATELIER_VENV:-$ROOT/.venv}/bin/python"
VERSION="${1:-0.33.0}"
shift $(( $# > 0 ? 1 : 0 ))
OUT="$ROOT/.cache/cpu-kernels"
mkdir -p "$OUT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

# ATELIER_KERNEL_SETTINGS="native ATEN_CPU_CAPABILITY=avx2" runs only those (e.g. two checkouts side by side)
read -ra SETTINGS <<< "${ATELIER_KERNEL_SETTINGS:-native ATEN_CPU_CAPABILITY=avx2 ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2}"
TIERS=("unit:tests/unit" "in-process:tests/comfy")
status=0
summary=()
cd "$ROOT"
for setting in "${SETTINGS[@]}"; do
  name="${setting//=/-}"
  log="$OUT/$name.tsv"
  rm -f "$log"
  line="$setting:"
  for tier in "${TIERS[@]}"; do
    label="${tier%%:*}" path="${tier#*:}"
    report="$OUT/$name.$label.log"
    echo "== $setting, $label tier, ComfyUI $VERSION (output: $report)"
    kernels=()
    [ "$setting" = native ] || kernels=("$setting")
    env ${kernels[@]+"${kernels[@]}"} ATELIER_COMFYUI="$VERSION" ATELIER_TOLERANCE_LOG="$log" \
      ATELIER_KERNELS="$setting" "$PY" -m pytest -q -p no:cacheprovider "$path" "$@" >"$report" 2>&1
    rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 5 ] || status=1  # 5: nothing collected (e.g. -k matched no unit test)
    result="$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|deselected|error)' "$report" | tail -1 | tr -d '=')"
    line="$line $label ${result:-exit $rc};"
  done
  worst="$("$PY" - "$log" <<'EOF'
import sys
from tests import tolerance
names = {getattr(tolerance, n): n for n in ("OPS", "ONE_CALL", "LAYERS", "SAMPLING")}
worst, effect = {}, None
try:
    rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
except OSError:
    rows = []
for row in rows:
    if len(row) >= 6 and row[3] == "close":
        budget = names.get(float(row[4]), row[4])
        worst[budget] = max(worst.get(budget, 0.0), float(row[5]))
    elif len(row) >= 6 and row[3] == "changed":
        effect = min(effect or float("inf"), float(row[5]) / float(row[4]))
text = ", ".join(f"{b} {worst[b]:.3g}/{getattr(tolerance, b, b)}" for b in sorted(worst, key=str)) or "none logged"
print(text + ("" if effect is None else f"; smallest effect {effect:.3g} x its threshold"))
EOF
)"
  summary+=("$line worst ulps seen: $worst")
done
echo
echo "CPU-kernel settings, ComfyUI $VERSION, OMP_NUM_THREADS=$OMP_NUM_THREADS ($(uname -m), torch picks $("$PY" -c 'import torch; print(torch.backends.cpu.get_cpu_capability())'))"
for line in "${summary[@]}"; do echo "  $line"; done
exit $status
