#!/usr/bin/env bash
# The prepared device check (issue 23), for a machine with only the device image's Python
# (torch, torchdiffeq, pandas, rich, pytest, ...) and the wheels of `make gpu-bundle`.
#
#   scripts/gpu_check.sh [BUNDLE]      (default build/gpu-bundle; run from anywhere)
#
# 1. installs the bundle without the network (pip --no-index --no-deps into a target
#    folder put on PYTHONPATH; its console scripts on PATH);
# 2. prints nvidia-smi and the device torch sees;
# 3. runs scripts/gpu_check.py: the CUDA tests, every sensealg x layer style on CUDA and
#    on the CPU, the host syncs per batch, the 60 000-digit scale (its docstring says how);
# 4. leaves gpu_check.md, gpu_check.csv and gpu_check.log in $OUT.
#
# Environment: OUT (results folder; default outputs/gpu-check), PYTHON (default python3),
# GPU_CHECK_QUICK=1 (dry run: fewer epochs, smaller scale), GPU_CHECK_BUDGET_S (the
# phases' time budget, default 450 s), GPU_CHECK_PHASES (comma-separated subset of
# tests,matrix,syncs,scale), GPU_CHECK_SITE (install folder, default a fresh temporary one).
# Without CUDA every CUDA part is skipped with a line saying so.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE=$(cd "${1:-$REPO/build/gpu-bundle}" 2>/dev/null && pwd) || {
    echo "gpu_check: no bundle folder ${1:-$REPO/build/gpu-bundle} (make gpu-bundle builds it)" >&2
    exit 2
}
PYTHON=${PYTHON:-python3}
# a path (not a bare name) made absolute without resolving links (a venv's python is one)
case $PYTHON in */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;; esac
OUT=${OUT:-$REPO/outputs/gpu-check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT  # run records and compile caches: the results are in $OUT
SITE=${GPU_CHECK_SITE:-$WORK/site}

check() {
    echo "== install the bundle (offline) into $SITE"
    shopt -s nullglob
    wheels=("$BUNDLE"/*.whl)
    if [ ${#wheels[@]} -eq 0 ]; then
        echo "gpu_check: no wheels in $BUNDLE (make gpu-bundle builds them)"
        exit 2
    fi
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$SITE" "${wheels[@]}" || {
        echo "gpu_check: installing the bundle failed"
        exit 3
    }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PATH="$SITE/bin:$PATH" PYTHONUNBUFFERED=1

    echo "== nvidia-smi"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi || echo "nvidia-smi failed"
    else
        echo "SKIP nvidia-smi: not installed (no NVIDIA driver on this machine)"
    fi
    echo "== torch"
    "$PYTHON" -c '
import torch
print("torch", torch.__version__, "| CUDA build", torch.version.cuda)
if torch.cuda.is_available():
    print("device: cuda:", torch.cuda.get_device_name(0))
else:
    print("device: cpu (torch.cuda.is_available() is False; CUDA parts will be skipped)")
' || exit 3
    # the bundle's nodecli must import, with its configs, before any time is spent on runs
    (cd / && "$PYTHON" -P -c 'import hydra, mlxtend, nodecli.cli; print("nodecli", nodecli.__file__)') \
        || exit 3

    echo "== checks"
    args=(--out "$OUT" --work "$WORK" --budget "${GPU_CHECK_BUDGET_S:-450}")
    [ "${GPU_CHECK_QUICK:-0}" = 1 ] && args+=(--quick)
    [ -n "${GPU_CHECK_PHASES:-}" ] && args+=(--phases "$GPU_CHECK_PHASES")
    cd "$REPO" && "$PYTHON" -P scripts/gpu_check.py "${args[@]}"
}

check 2>&1 | tee "$OUT/gpu_check.log"
status=${PIPESTATUS[0]}
echo "gpu_check: exit $status; results in $OUT" | tee -a "$OUT/gpu_check.log"
exit "$status"
