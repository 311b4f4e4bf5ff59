#!/usr/bin/env bash
# Install the carried wheels (once) into /tmp/anchor_site and run the modern fit-a-nef driver.
# Usage (repo root as cwd, .anchor_gpu carried):  bash .anchor_gpu/run.sh [driver args...]
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
SITE=${ANCHOR_SITE:-/tmp/anchor_site}
PY=${PYTHON:-python3}
if [ ! -f "$SITE/.anchor_ok" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$HERE"/wheels/*.whl
  touch "$SITE/.anchor_ok"
fi
[ $# -gt 0 ] || { echo "usage: run.sh --data images.npz --nef SIREN --n 256 --steps 500 --parallel 256 --lr 1e-3" >&2; exit 2; }
PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" "$HERE/run_anchor_modern.py" "$@"
