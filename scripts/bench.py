"""Throughput benchmark: NeFs/s per NeF type and chunk size, optionally side by side with fit-a-nef.

    python -m scripts.bench --nefs siren mlp --parallel 64 256 1024 2048 --n 256 --steps 500 --lr 1e-3
    python -m scripts.bench --nefs siren --parallel 256 --anchor      # + fit-a-nef, ratio printed
    python -m scripts.bench --n 70000 --parallel auto --anchor-parallel 16384 --device cuda --anchor  # defaults

Each configuration runs ``python -m tasks.fit`` in a fresh process and times the whole process (imports,
data, compilation, training, store writes); compilation (the first step) is also reported on its own,
with the training-only rate. ``--anchor`` runs fit-a-nef on the same images through
../shared/anchor/run_anchor.py (set up by its setup.sh) and times its whole process too.
When ``--n`` exceeds the dataset (M images), fitnef fits seeds 0..K-1 (K = ceil(n/M), its index scheme)
and fit-a-nef gets the images repeated K times: the same work per NeF, other init draws.
Writes results.csv, results.json and nefs_per_s.png (if matplotlib is installed) to --out.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tasks.resolvers import register

ROOT = Path(__file__).resolve().parents[1]
ANCHOR_NAMES = {"siren": "SIREN", "mlp": "MLP", "rffnet": "RFFNet", "fouriernet": "FourierNet", "gabornet": "GaborNet"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nefs", nargs="+", default=["siren"], choices=sorted(ANCHOR_NAMES))
    p.add_argument("--parallel", nargs="+", type=_chunk, default=[256],
                   help="num_parallel_nefs values; auto: fitnef's own choice (the default setting)")
    p.add_argument("--anchor-parallel", type=int, default=None,
                   help="fit-a-nef's num_parallel_nefs (default: --parallel; needed with --parallel auto)")
    p.add_argument("--n", type=int, default=256, help="NeFs fitted per configuration")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=None, help="nef.hidden_dim (default: the NeF's config)")
    p.add_argument("--dataset", default="digits", help="dataset config name (the anchor gets the same images)")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides for fitnef, e.g. task.train.compile=false")
    p.add_argument("--anchor", action="store_true", help="also run fit-a-nef (../shared/anchor)")
    p.add_argument("--anchor-dir", default=str(ROOT.parent / "shared" / "anchor"))
    p.add_argument("--anchor-script", default=None, help="driver to run (default: <anchor-dir>/run_anchor.py)")
    p.add_argument("--anchor-python", default=os.environ.get("ANCHOR_PYTHON", "/tmp/anchor-venv/bin/python"))
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration; the fastest is kept")
    p.add_argument("--out", default=None, help="output folder (default outputs/bench/<time>)")
    return p.parse_args(argv)


def _chunk(value: str):
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: a number of NeFs or auto") from None


def run_fitnef(args, nef, parallel, work: Path, copies: int = 1) -> dict:
    run_dir = Path(tempfile.mkdtemp(dir=work))
    cmd = [sys.executable, "-m", "tasks.fit", f"nef={nef}", f"dataset={args.dataset}", f"device={args.device}",
           *([f"task.seeds=[{','.join(map(str, range(copies)))}]"] if copies > 1 else []),
           f"task.train.end_idx={args.n}", f"task.train.num_parallel_nefs={parallel}",
           f"task.train.num_steps={args.steps}", f"scheduler.value={args.lr}", "task.log.progress=false",
           f"task.nef_dir={run_dir / 'store'}", f"hydra.run.dir={run_dir}", *args.set]
    if args.hidden is not None:
        cmd.append(f"nef.hidden_dim={args.hidden}")
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"fitnef failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    s = json.loads((run_dir / "summary.json").read_text())
    parallel = s["num_parallel_nefs"]   # what auto chose
    return {"system": "fitnef", "nef": nef, "parallel": parallel, "n": args.n, "steps": args.steps,
            "process_s": round(wall, 3), "nefs_per_s": round(args.n / wall, 3),
            "train_nefs_per_s": round(s["train_nefs_per_s"], 3), "compile_s": round(s["warmup_s"], 3),
            "step_ms": round(1e3 * s["train_s"] / max(1, args.steps * -(-args.n // parallel)), 3),
            "peak_mem_mb": round(s["peak_mem_mb"], 1), "mem_per_nef_kb": round(1024 * s["peak_mem_mb"] / min(parallel, args.n), 2),
            "psnr_mean": round(s["metric_mean"], 3), "psnr_std": round(s["metric_std"], 3), "device": s["device"],
            "micro_batch": s["micro_batch"], "setup_s": round(s["setup_s"], 3), "write_s": round(s["write_s"], 3)}


def dataset_images(args):
    """The benchmark's images, uint8 (M, H, W, C), as fitnef loads them."""
    register()  # ${fitnef.sweep_suffix:} in conf/base/task.yaml

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"dataset={args.dataset}",
                      *(o for o in args.set if o.startswith("dataset."))])
    return instantiate(cfg.dataset).load().images


def dataset_npz(images, n: int, work: Path) -> Path:
    """The first n images (repeated when n > M) as the anchor driver wants them (uint8 (n, H, W[, C]))."""
    images = np.resize(images, (n, *images.shape[1:]))
    path = work / "images.npz"
    np.savez(path, images=images[..., 0] if images.shape[-1] == 1 else images)
    return path


def run_anchor(args, nef, parallel, npz: Path) -> dict:
    script = args.anchor_script or str(Path(args.anchor_dir) / "run_anchor.py")
    cmd = [args.anchor_python, script, "--data", str(npz),
           "--nef", ANCHOR_NAMES[nef], "--n", str(args.n), "--steps", str(args.steps),
           "--parallel", str(parallel), "--lr", str(args.lr)]
    if args.hidden is not None:
        cmd += ["--hidden", str(args.hidden)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"fit-a-nef failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    a = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"system": "fit-a-nef", "nef": nef, "parallel": parallel, "n": args.n, "steps": args.steps,
            "process_s": round(wall, 3), "nefs_per_s": round(args.n / wall, 3),
            "train_nefs_per_s": a["nefs_per_s"], "compile_s": a["compile_s"],
            "step_ms": round(1e3 * a["train_s"] / (args.steps * a["chunks"]), 3), "peak_mem_mb": None,
            "mem_per_nef_kb": None, "psnr_mean": a["psnr_mean"], "psnr_std": a["psnr_std"],
            "device": a.get("device", "cpu"),
            "micro_batch": None}


def best_of(fn, repeat):
    runs = [fn() for _ in range(max(1, repeat))]
    return max(runs, key=lambda r: r["nefs_per_s"])


def plot(rows, path: Path) -> bool:
    try:
        import matplotlib   # an optional extra (bench): the plot is skipped without it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for system in sorted({r["system"] for r in rows}):
        for nef in sorted({r["nef"] for r in rows}):
            pts = sorted((r["parallel"], r["nefs_per_s"]) for r in rows if r["nef"] == nef and r["system"] == system)
            if pts:
                ax.plot(*zip(*pts), marker="o", ls="-" if system == "fitnef" else "--", label=f"{system} {nef}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("num_parallel_nefs")
    ax.set_ylabel("NeFs/s (whole process)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv=None):
    args = parse_args(argv)
    if args.anchor and "auto" in args.parallel and args.anchor_parallel is None:
        raise SystemExit("--parallel auto with --anchor: give fit-a-nef's chunk with --anchor-parallel N")
    out = Path(args.out or ROOT / "outputs" / "bench" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = dataset_images(args)
        copies = -(-args.n // len(images))
        npz = dataset_npz(images, args.n, work) if args.anchor else None
        for nef in args.nefs:
            for parallel in args.parallel:
                ours = best_of(lambda: run_fitnef(args, nef, parallel, work, copies), args.repeat)
                rows.append(ours)
                chunk = f"auto={ours['parallel']}" if parallel == "auto" else str(parallel)
                msg = (f"{nef:10s} parallel {chunk:>5s}: fitnef {ours['nefs_per_s']:7.2f} NeFs/s "
                       f"(train {ours['train_nefs_per_s']:.1f}, compile {ours['compile_s']:.1f}s), "
                       f"PSNR {ours['psnr_mean']:.2f}")
                if args.anchor:
                    theirs = best_of(lambda: run_anchor(args, nef, args.anchor_parallel or parallel, npz), args.repeat)
                    rows.append(theirs)
                    ratio = ours["nefs_per_s"] / theirs["nefs_per_s"]
                    msg += (f" | fit-a-nef {theirs['nefs_per_s']:.2f} NeFs/s (train {theirs['train_nefs_per_s']:.1f}, "
                            f"parallel {theirs['parallel']}), "
                            f"PSNR {theirs['psnr_mean']:.2f} | ratio {ratio:.2f}x, "
                            f"dPSNR {ours['psnr_mean'] - theirs['psnr_mean']:+.2f} dB")
                    ours["ratio_vs_anchor"] = round(ratio, 3)
                print(msg, flush=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    meta = {"args": vars(args), "machine": {"cpus": os.cpu_count(), "platform": sys.platform}}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    plotted = plot(rows, out / "nefs_per_s.png")
    print(f"wrote {out / 'results.csv'}, results.json" + (", nefs_per_s.png" if plotted else " (no matplotlib: no plot)"))


if __name__ == "__main__":
    main()
