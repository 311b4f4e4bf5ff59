#!/usr/bin/env bash
# Build .anchor_gpu/ (git-ignored): fit-a-nef, unmodified, plus what it needs to run on a machine whose JAX is
# new (jax 0.11, numpy 2) and which cannot download: the driver run_anchor_modern.py (runtime patches for the
# jax names fit-a-nef uses that newer jax removed; see its docstring), run.sh, and wheels of flax 0.12.12 and
# optax 0.2.8 for Python 3.12. Carry .anchor_gpu to the GPU machine and use it through scripts/gpu_check.sh:
#   ANCHOR_SCRIPT=.anchor_gpu/run.sh ANCHOR_PYTHON=bash bash scripts/gpu_check.sh
# Env: ANCHOR_SRC fit-a-nef work tree (default /tmp/fitanef, made by ../shared/anchor/setup.sh).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=${1:-.anchor_gpu}
SRC=${ANCHOR_SRC:-/tmp/fitanef}
[ -f "$SRC/fit_a_nef/trainer.py" ] || { echo "error: no fit-a-nef source at $SRC (run ../shared/anchor/setup.sh)" >&2; exit 1; }
mkdir -p "$DEST/wheels"
rm -rf "$DEST/fit_a_nef" && cp -r "$SRC/fit_a_nef" "$DEST/"
cp "$HERE/run_anchor_modern.py" "$HERE/run.sh" "$DEST/"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 -d "$DEST/wheels" flax==0.12.12 optax==0.2.8
case "$DEST" in /*) ;; *) grep -qx "/$DEST/" .git/info/exclude 2>/dev/null || echo "/$DEST/" >> .git/info/exclude ;; esac
echo "built $DEST ($(du -sh "$DEST" | cut -f1))"
