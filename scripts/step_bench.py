"""Time the training step alone, in one process, for variants of the hot path.

    python -m scripts.step_bench --nefs siren mlp --parallel 16384 --steps 200 --device cuda
    python -m scripts.step_bench --nefs siren --variants compiled --profile 15   # + where the time goes
    python -m scripts.step_bench --nefs siren mlp --variants compiled fused --device cuda   # + roofline lines
    python -m scripts.step_bench --nefs siren --variants compiled fused --set nef.hidden_dim=128 --parallel 4096

Each variant fits ``parallel`` NeFs for ``steps`` steps through ``tasks.fitting.fit`` (same engine, same
store) and reports the step time from the run's own timer, compilation excluded. Variants:
  compiled   torch.compile, default mode (what task.train.compile=true does)
  graph      torch.compile mode reduce-overhead: the step replayed as a CUDA graph (task.train.compile_mode)
  eager      task.train.compile=false
  fused      task.train.kernel=fused: the Triton step of nefs/fused
  auto       task.train.kernel=auto, compiled: the step nefs/step_choice.py measures fastest (logged), here with
             a cache of its own (the run's choice is measured, not remembered from an earlier run)
--precision sets task.train.matmul_precision for every variant: highest (fp32, default), high (tf32), medium
(bf16 in the fused step; tf32 in torch's on CUDA; nefs/precision.py). The torch variants run with
task.train.kernel=torch. After each variant a roofline line: the step's FLOPs and least HBM bytes
(nefs/fused/roofline.py, for the NeFs the fused step supports) and the fraction of the chip's FP32 rate and
HBM bandwidth the measured step reached (peaks: H200 by default, --peak-tflops / --peak-tbs).
"""
import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from hydra import compose, initialize_config_dir
from torch.profiler import ProfilerActivity, profile

import nefs.step_choice
from nefs.errors import FitnefError
from nefs.fused.launch import parse_tile
from nefs.fused.roofline import step_cost
from nefs.fused.spec import describe
from tasks.fitting import fit
from tasks.plan import build_nef, load_modality
from tasks.resolvers import register

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("compiled", "graph", "eager", "fused", "auto")


@contextlib.contextmanager
def _own_cache(tmp: str):
    """auto's decisions cached under ``tmp``: each run measures (nefs/step_choice.py reads $XDG_CACHE_HOME)."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = tmp
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = before


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nefs", nargs="+", default=["siren"])
    p.add_argument("--parallel", type=int, default=16384)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="also print the K kernels that take the most device time (torch.profiler), per variant")
    p.add_argument("--precision", default="highest", choices=("highest", "high", "medium"),
                   help="task.train.matmul_precision: fp32, tf32 or bf16 matmul inputs (accumulation is fp32)")
    p.add_argument("--tile", default="", metavar="POINTS,WARPS[,STAGES]",
                   help="tile of the fused variant (default: the kernel's table, nefs/fused/step.py default_tile)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="more config overrides for every run, e.g. nef.hidden_dim=128")
    p.add_argument("--peak-tflops", type=float, default=None, help="FP32 peak of the chip (default: H200, 67)")
    p.add_argument("--peak-tbs", type=float, default=None, help="HBM bandwidth of the chip, TB/s (default: H200, 4.8)")
    args = p.parse_args(argv)

    register()  # ${fitnef.sweep_suffix:} in conf/base/task.yaml
    try:
        tile = parse_tile(args.tile)
    except ValueError as e:
        raise SystemExit(f"--tile: {e}")

    peaks = {k: v for k, v in (("peak_tflops", args.peak_tflops), ("peak_tbs", args.peak_tbs)) if v is not None}
    copies = -(-args.parallel // 1797)
    seeds = "[" + ",".join(map(str, range(copies))) + "]"
    print(f"{'nef':8s} {'variant':16s} {'ms/step':>8s} {'NeF-steps/s':>12s} {'compile s':>9s} {'psnr':>6s}")
    for nef in args.nefs:
        for variant in args.variants:
            torch._dynamo.reset()
            with tempfile.TemporaryDirectory() as tmp, \
                    _own_cache(tmp), \
                    initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
                cfg = compose(config_name="config", overrides=[
                    f"nef={nef}", f"device={args.device}", f"task.seeds={seeds}", f"task.train.end_idx={args.parallel}",
                    f"task.train.num_parallel_nefs={args.parallel}", f"task.train.num_steps={args.steps}",
                    "scheduler.value=1e-3", f"task.train.compile={variant not in ('eager', 'fused')}",
                    f"task.train.compile_mode={'reduce-overhead' if variant == 'graph' else 'null'}",
                    f"task.train.kernel={variant if variant in ('fused', 'auto') else 'torch'}",
                    "task.log.progress=false",
                    f"task.train.matmul_precision={args.precision}",
                    f"task.nef_dir={tmp}/store", *args.set])
                cost = step_cost_of(cfg, args.parallel)
                t = time.perf_counter()
                try:
                    with fused_tile(tile if variant == "fused" else None):
                        if args.profile:
                            s, table = profiled(fit, cfg, args.profile)
                        else:
                            s, table = fit(cfg), None
                except FitnefError as e:   # e.g. the fused variant on a CPU: say so, go on
                    print(f"{nef:8s} {variant:16s} error: {e}", flush=True)
                    continue
            ms = 1e3 * s.train_s / args.steps
            print(f"{nef:8s} {variant:16s} {ms:8.3f} {args.parallel * args.steps / s.train_s:12.0f} "
                  f"{s.warmup_s:9.1f} {s.metric_mean:6.2f}   ({time.perf_counter() - t:.1f}s)", flush=True)
            if variant == "auto":
                print(f"{'':8s} {'':16s} auto ran: {s.step}", flush=True)
            if cost is not None:
                print(f"{'':8s} {'':16s} " + cost.line(s.train_s / args.steps, **peaks), flush=True)
            if table:
                print(table, flush=True)


@contextlib.contextmanager
def fused_tile(tile):
    """The fused steps that the engine builds inside ``fit`` run at ``tile`` (None: the table's). A run
    config has no tile key, so the bench hands it to ``FusedGrad``'s ``tile`` argument here."""
    if tile is None:
        yield
        return
    build = nefs.step_choice.FusedGrad

    def at_tile(spec, loss, precision="ieee", tile_asked=None, **_):
        return build(spec, loss, precision, tile=tile)

    with mock.patch.object(nefs.step_choice, "FusedGrad", at_tile):   # where the engine's step builds it
        yield


def step_cost_of(cfg, parallel: int):
    """FLOPs and least bytes of one step of this config's NeF (None for NeFs without a fused step)."""
    modality, _ = load_modality(cfg)
    spec, _ = describe(build_nef(cfg.nef, modality.in_features, modality.out_features))
    if spec is None:
        return None
    problem = modality.problem([0], [0], [0], cfg.task.train)
    coords, _, batched = problem.train_batch(0)
    return step_cost(spec, coords.shape[-2], parallel, shared_coords=not batched)


def profiled(fn, cfg, top: int):
    """fn(cfg) under torch.profiler; the kernels that took the most device (or CPU) time, as a table."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        out = fn(cfg)
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    return out, prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=60)


if __name__ == "__main__":
    main()
