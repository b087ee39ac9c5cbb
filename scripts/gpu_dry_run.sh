#!/usr/bin/env bash
# Dry-run the device check here, on the CPU: a fresh venv holding torch and the device
# image's other packages that nodecli uses (what KINDS.md lists for the 'cuda' image; no
# hydra, omegaconf or mlxtend), then scripts/gpu_check.sh installs the bundle offline and
# runs in quick mode (GPU_CHECK_QUICK=1), without the network where `unshare -n` works.
# Usage: scripts/gpu_dry_run.sh [BUNDLE]   (default build/gpu-bundle)
# Environment: TORCH (the pip requirement or wheel for torch; default torch==2.14.1, the
# Makefile's pin), DRY_VENV (default build/gpu-dry-venv), OUT (default outputs/gpu-check-dry).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${1:-build/gpu-bundle}
VENV=${DRY_VENV:-build/gpu-dry-venv}
TORCH=${TORCH:-torch==2.14.1}
# The image's packages nodecli, its tests and the bundled peers import (not the bundle's).
IMAGE_PACKAGES=(numpy pandas rich matplotlib pyyaml packaging pytest pytest-xdist scipy
    scikit-learn joblib sympy pytorch-lightning torchdiffeq attrs typing-extensions)

python3 -m venv --clear "$VENV"
"$VENV/bin/python" -m pip install --quiet "$TORCH"
"$VENV/bin/python" -m pip install --quiet "${IMAGE_PACKAGES[@]}"
offline=()
if unshare -n true 2>/dev/null; then
    offline=(unshare -n)
else
    echo "gpu_dry_run: unshare -n is not permitted here; the network stays reachable" >&2
fi
# The bundle must install from its own folder alone: no pip find-links or index settings.
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
    PYTHON="$VENV/bin/python" GPU_CHECK_QUICK=1 OUT="${OUT:-outputs/gpu-check-dry}" \
    "${offline[@]}" scripts/gpu_check.sh "$BUNDLE"
