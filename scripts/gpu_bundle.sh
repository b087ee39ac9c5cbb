#!/usr/bin/env bash
# Build the wheels nodecli needs on the device machine's image and the image lacks
# (scripts/gpu-bundle.txt, plus nodecli's own wheel) into one folder, offline-installable
# there with `pip install --no-index --no-deps --target DIR` (scripts/gpu_check.sh does).
# Usage: scripts/gpu_bundle.sh [DEST]   (default build/gpu-bundle; PYTHON picks the pip)
# Every wheel must be pure Python (py3-none-any): the image runs Python 3.12, this machine
# may not. The folder must stay under 64 MiB, the device tool's limit for carried paths.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DEST=${1:-build/gpu-bundle}
LIMIT=$((64 * 1024 * 1024))

rm -rf "$DEST"
mkdir -p "$DEST"
# nodecli from a copy of the files git would send (tracked + untracked-not-ignored), so a
# stale build/lib from an earlier build cannot leak old modules into the wheel.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - | tar -xf - -C "$src"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$DEST" "$src"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$DEST" -r scripts/gpu-bundle.txt

bad=$(find "$DEST" -name '*.whl' ! -name '*-py3-none-any.whl' ! -name '*-py2.py3-none-any.whl')
if [ -n "$bad" ]; then
    echo "gpu-bundle: not pure-Python wheels (the image is Python 3.12): $bad" >&2
    exit 1
fi
size=$(du -sb "$DEST" | cut -f1)
ls -1 "$DEST"
echo "gpu-bundle: $(find "$DEST" -name '*.whl' | wc -l) wheels, $((size / 1024)) KiB in $DEST (limit 65536 KiB)"
if [ "$size" -ge "$LIMIT" ]; then
    echo "gpu-bundle: $DEST is over the device tool's 64 MiB limit for carried paths" >&2
    exit 1
fi
