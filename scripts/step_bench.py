"""Time the training step alone, in one process, for variants of the hot path.

    python -m scripts.step_bench --nefs siren mlp --parallel 16384 --steps 200 --device cuda
    python -m scripts.step_bench --nefs siren --variants compiled --profile 15   # + where the time goes

Each variant fits ``parallel`` NeFs for ``steps`` steps through ``tasks.fitting.fit`` (same engine, same
store) and reports the step time from the run's own timer, compilation excluded. Variants:
  compiled   torch.compile, default mode (what task.train.compile=true does)
  graph      torch.compile mode reduce-overhead: the step replayed as a CUDA graph (FITNEF_COMPILE_MODE)
  eager      task.train.compile=false
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("compiled", "graph", "eager")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nefs", nargs="+", default=["siren"])
    p.add_argument("--parallel", type=int, default=16384)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="also print the K kernels that take the most device time (torch.profiler), per variant")
    args = p.parse_args(argv)

    import torch
    from hydra import compose, initialize_config_dir

    from tasks.fitting import fit
    from tasks.resolvers import register

    register()  # ${fitnef.sweep_suffix:} in conf/base/task.yaml

    copies = -(-args.parallel // 1797)
    seeds = "[" + ",".join(map(str, range(copies))) + "]"
    print(f"{'nef':8s} {'variant':16s} {'ms/step':>8s} {'NeF-steps/s':>12s} {'compile s':>9s} {'psnr':>6s}")
    for nef in args.nefs:
        for variant in args.variants:
            os.environ["FITNEF_COMPILE_MODE"] = "reduce-overhead" if variant == "graph" else ""
            torch._dynamo.reset()
            with tempfile.TemporaryDirectory() as tmp, \
                    initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
                cfg = compose(config_name="config", overrides=[
                    f"nef={nef}", f"device={args.device}", f"task.seeds={seeds}", f"task.train.end_idx={args.parallel}",
                    f"task.train.num_parallel_nefs={args.parallel}", f"task.train.num_steps={args.steps}",
                    "scheduler.value=1e-3", f"task.train.compile={variant != 'eager'}", "task.log.progress=false",
                    f"task.nef_dir={tmp}/store"])
                t = time.perf_counter()
                if args.profile:
                    s, table = profiled(fit, cfg, args.profile)
                else:
                    s, table = fit(cfg), None
            ms = 1e3 * s.train_s / args.steps
            print(f"{nef:8s} {variant:16s} {ms:8.3f} {args.parallel * args.steps / s.train_s:12.0f} "
                  f"{s.warmup_s:9.1f} {s.metric_mean:6.2f}   ({time.perf_counter() - t:.1f}s)", flush=True)
            if table:
                print(table, flush=True)


def profiled(fn, cfg, top: int):
    """fn(cfg) under torch.profiler; the kernels that took the most device (or CPU) time, as a table."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        out = fn(cfg)
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    return out, prof.key_averages().table(sort_by=key, row_limit=top, max_name_column_width=60)


if __name__ == "__main__":
    main()
