#!/usr/bin/env bash
# One prepared pass over the CUDA paths, for a GPU machine lent for a few minutes:
#   1. tests/test_cuda.py (CUDA == CPU results, auto chunk probe, continuous batching, store)
#   2. the default job on CUDA, with the default chunk and with num_parallel_nefs=auto
#   3. scripts.bench on CUDA: 70 000 SIREN-8 NeFs with the default settings (fresh process, side by side with
#      fit-a-nef at num_parallel_nefs=$PARALLEL); SIREN and MLP at large chunks with the default step (task.train.kernel=auto: the
#      fused Triton step) side by side with fit-a-nef, and SIREN's torch step eager
#      (then the step alone: torch compiled / eager vs fused with fp32, tf32 and bf16 matmul inputs
#      (task.train.matmul_precision=highest, high, medium), with
#      roofline lines; and a profile of where the device time goes)
#      when a driver for the machine's JAX is given: scripts/anchor_modern/prepare.sh builds .anchor_gpu, then
#      ANCHOR_SCRIPT=.anchor_gpu/run.sh ANCHOR_PYTHON=bash bash scripts/gpu_check.sh (carry .whl and .anchor_gpu)
# About 8 minutes on an H200 before the fused parts and the 70 000-NeF job were added (docs/performance.md has
# what it printed); those have not run on a GPU yet. Each part has its own time limit; where one call would pass
# the device's 10 minutes, run PARTS="tests default bench" and PARTS=step as two calls.
# Runs go to $WORK; $OUT (default outputs/gpu_check) gets few files: the bench tables, the jobs' summaries.
# Wheels in .whl/ (hydra-core, omegaconf, antlr4, zarr, numcodecs, donfig, crc32c for the machine's Python)
# are installed to /tmp/site first when present: GPU images seldom carry them. Build them here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_17_x86_64 -d .whl \
#     zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c hydra-core==1.3.8 omegaconf==2.3.1
#   pip wheel --no-deps antlr4-python3-runtime==4.9.3 -w .whl
set -u
OUT=${OUT:-outputs/gpu_check}
WORK=${WORK:-/tmp/gpu_check}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1
N=${N:-32768}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu N=64 STEPS=5 PARALLEL=64: a dry run of this script anywhere
STEPS=${STEPS:-500}
PARALLEL=${PARALLEL:-16384}   # chunk of the benchmarks (a dry run: PARALLEL=64)
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
part() { echo; echo "=== $1 ($(date +%T))"; }
PARTS=${PARTS:-tests default bench step}   # all in one call, or split over two: PARTS="tests default bench", then PARTS=step
want() { [[ " $PARTS " == *" $1 "* ]]; }

part "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"

if want tests; then
part "tests/test_cuda.py"
timeout 200 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -15

fi
if want default; then
part "default job on $DEVICE"
rm -rf "$WORK"/default_*
for chunk in 256 auto; do
  timeout 45 python3 -m tasks.fit device=$DEVICE task.train.num_parallel_nefs=$chunk task.log.progress=false \
    task.nef_dir="$WORK/default_$chunk/store" hydra.run.dir="$WORK/default_$chunk" 2>&1 | grep -E "fitted|auto|error|Error" | tail -3
  cp "$WORK/default_$chunk/summary.json" "$OUT/default_$chunk.json" 2>/dev/null
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('  time: process %(process)s s = startup + setup %(setup_s).1f + fit %(wall_s).1f (compile %(warmup_s).1f, train %(train_s).1f, writes %(write_s).1f)' % dict(d, process=d.get('process_s')))" "$WORK/default_$chunk/summary.json" 2>/dev/null
done

fi
anchor=()
if [ -n "${ANCHOR_SCRIPT:-}" ]; then   # e.g. ANCHOR_SCRIPT=.anchor_gpu/gpu_run.sh ANCHOR_PYTHON=bash
  anchor=(--anchor --anchor-script "$ANCHOR_SCRIPT" --anchor-python "${ANCHOR_PYTHON:-python3}")
  "${ANCHOR_PYTHON:-python3}" "$ANCHOR_SCRIPT" --help >/dev/null 2>&1   # its set-up, outside the timings
fi
bench() {  # bench NAME SECONDS ARGS...: one scripts.bench run, $N NeFs, $STEPS steps, lr 1e-3
  local name=$1 limit=$2; shift 2
  part "bench $name"
  timeout "$limit" python3 -m scripts.bench --device "$DEVICE" --n "$N" --steps "$STEPS" --lr 1e-3 \
    --out "$WORK/bench_$name" "$@" 2>&1 | grep -v "^wrote"
  cp "$WORK/bench_$name/results.csv" "$OUT/bench_$name.csv" 2>/dev/null
}
if want bench; then
N70=${N70:-70000}   # the whole-process job: 70 000 digits-x-seeds NeFs, SIREN-8, default settings (a dry run: N70=64)
anchor70=()
[ ${#anchor[@]} -gt 0 ] && anchor70=("${anchor[@]}" --anchor-parallel "$PARALLEL")
bench whole70k 240 --nefs siren --n "$N70" --parallel auto "${anchor70[@]}"
bench siren 100 --nefs siren --parallel "$PARALLEL" "${anchor[@]}"
bench mlp 100 --nefs mlp --parallel "$PARALLEL" "${anchor[@]}"
bench siren_eager 45 --nefs siren --parallel "$PARALLEL" --set task.train.compile=false task.train.kernel=torch
fi
if want step; then
part "step time alone: torch compiled / eager, fused (fp32 inputs), with roofline lines"
timeout 90 python3 -m scripts.step_bench --device "$DEVICE" --nefs siren mlp siren_scaled --parallel "$PARALLEL" \
  --steps 200 --variants compiled eager fused 2>&1 | grep -v -i warn
part "fused step with tf32 and bf16 matmul inputs (task.train.matmul_precision=high, medium; fp32 accumulation)"
for prec in high medium; do
  timeout 30 python3 -m scripts.step_bench --device "$DEVICE" --nefs siren siren_scaled --parallel "$PARALLEL" \
    --steps 200 --variants fused --precision $prec 2>&1 | grep -v -i warn | tail -n +2
done
part "kernel=auto (issue 22): what it chooses, and its step beside the forced kernels, at two sizes"
for size in "$PARALLEL" 1024; do
  timeout 150 python3 -m scripts.step_bench --device "$DEVICE" --nefs siren mlp --parallel "$size" --steps 200 \
    --variants compiled fused auto 2>&1 | grep -v -i warn | tail -n +2 | sed "s/^/$size NeFs: /"
done
part "fused SIREN-8 step by tile (points,warps,stages): the table's (nefs/fused/step.py default_tile), then its neighbours"
tiles=$(python3 -c "
from nefs import SIREN
from nefs.fused.spec import describe
from nefs.fused.step import default_tile, neighbour_tiles
spec, _ = describe(SIREN(2, 1, 8))
print(' '.join(','.join(map(str, t)) for t in [default_tile(spec), *neighbour_tiles(spec)]))")
for tile in $tiles; do
  timeout 30 python3 -m scripts.step_bench --device "$DEVICE" --nefs siren --parallel "$PARALLEL" --steps 200 \
    --variants fused --tile $tile 2>&1 | grep -v -i warn | tail -n 2 | sed "s/^/tile $tile: /"
done
part "wide NeFs (auto leaves them to torch): torch compiled vs fused forced, hidden 128 and 256"
for width in 128 256; do
  timeout 60 python3 -m scripts.step_bench --device "$DEVICE" --nefs siren mlp --parallel $((PARALLEL / 4)) --steps 50 \
    --variants compiled fused --set nef.hidden_dim=$width 2>&1 | grep -v -i warn | tail -n +2 | sed "s/^/width $width: /"
done
part "where the device time goes (torch.profiler): torch compiled, fused"
timeout 60 python3 -m scripts.step_bench --device "$DEVICE" --nefs siren --parallel "$PARALLEL" --steps 100 \
  --variants compiled fused --profile 12 2>&1 | grep -v -i warn
fi
part "done"
