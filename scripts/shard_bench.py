"""Shards vs one process on one machine: NeFs/s of S concurrent ``task.shard`` processes (each with
cores/S threads, the split a SLURM or joblib launcher gives) against one process using all cores.

    python -m scripts.shard_bench --n 1024 --steps 200 --shards 2
    python -m scripts.shard_bench --n 256 --steps 50 --set task.train.compile=false     # a quick check

Shard ranges fall on the store's chunk boundaries (``--parallel`` rows per chunk), so the shards write
without the store's lock. Both sides are timed as whole processes (imports, data, training, writes) and
as the fits' own wall time; the sharded store is checked to equal the one-process store row for row.
Prints one table and writes results.json to --out.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nefs import open_store

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1024, help="NeFs fitted (on each side)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--parallel", type=int, default=256, help="task.train.num_parallel_nefs = store chunk rows")
    p.add_argument("--nef", default="siren")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--threads-one", type=int, default=None,
                   help="threads of the one process (default: --cores); cores/shards tells parallelism from threading")
    p.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides for both sides")
    p.add_argument("--out", default=None, help="output folder (default outputs/shard_bench/<time>)")
    return p.parse_args(argv)


def _command(args, store: Path, run_dir: Path, *extra) -> list:
    return [sys.executable, "-m", "tasks.fit", f"nef={args.nef}", f"task.train.end_idx={args.n}",
            f"task.train.num_steps={args.steps}", f"task.train.num_parallel_nefs={args.parallel}",
            "task.log.progress=false", "device=cpu", f"task.nef_dir={store}", f"hydra.run.dir={run_dir}",
            *args.set, *extra]


def _threads_env(n: int) -> dict:
    n = str(max(1, n))
    return {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def _run_all(commands: list, env: dict) -> float:
    """Start all commands at once; seconds until the last one ends."""
    t = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    for c, p in zip(commands, procs):
        out, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"failed: {' '.join(c)}\n{out[-2000:]}\n{err[-2000:]}")
    return time.perf_counter() - t


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out or ROOT / "outputs" / "shard_bench" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="shard_bench-"))

    one_dir = work / "one"
    one_wall = _run_all([_command(args, work / "one_store", one_dir)], _threads_env(args.threads_one or args.cores))
    one = _summary(one_dir)

    dirs = [work / f"shard{k}" for k in range(args.shards)]
    cmds = [_command(args, work / "sharded_store", d, f"task.num_shards={args.shards}", f"task.shard={k}")
            for k, d in enumerate(dirs)]
    sh_wall = _run_all(cmds, _threads_env(args.cores // args.shards))
    shards = [_summary(d) for d in dirs]

    a, b = open_store(work / "one_store"), open_store(work / "sharded_store")
    equal = bool(a.done[:args.n].all() and b.done[:args.n].all()
                 and np.array_equal(np.asarray(a.params[:args.n]), np.asarray(b.params[:args.n])))
    fit_one = one["wall_s"]
    fit_sh = max(s["wall_s"] for s in shards)
    res = {
        "n": args.n, "steps": args.steps, "shards": args.shards, "cores": args.cores,
        "threads_one": args.threads_one or args.cores, "threads_per_shard": max(1, args.cores // args.shards), "chunk_rows": b.chunk_rows,
        "ranges": [[s["start_idx"], s["end_idx"]] for s in shards], "equal_rows": equal,
        "one": {"process_s": one_wall, "fit_s": fit_one, "write_s": one["write_s"],
                "nefs_per_s": args.n / one_wall, "fit_nefs_per_s": args.n / fit_one},
        "sharded": {"process_s": sh_wall, "fit_s": fit_sh, "write_s": [s["write_s"] for s in shards],
                    "nefs_per_s": args.n / sh_wall, "fit_nefs_per_s": args.n / fit_sh},
    }
    res["ratio"] = res["sharded"]["nefs_per_s"] / res["one"]["nefs_per_s"]
    res["fit_ratio"] = res["sharded"]["fit_nefs_per_s"] / res["one"]["fit_nefs_per_s"]
    (out / "results.json").write_text(json.dumps(res, indent=1))
    print(f"{args.n} NeFs x {args.steps} steps, {args.nef}, chunk {b.chunk_rows} rows, {args.cores} cores, {res['threads_per_shard']} thread(s) per shard; "
          f"shard ranges {res['ranges']}; rows equal: {equal}")
    print(f"{'':>26} {'process s':>10} {'NeFs/s':>8} {'fit s':>8} {'fit NeFs/s':>11}")
    for name, r in ((f"1 process, {res['threads_one']} threads", res["one"]), (f"{args.shards} shards at once", res["sharded"])):
        print(f"{name:>26} {r['process_s']:>10.1f} {r['nefs_per_s']:>8.1f} {r['fit_s']:>8.1f} {r['fit_nefs_per_s']:>11.1f}")
    print(f"ratio (shards / one): {res['ratio']:.2f}x whole process, {res['fit_ratio']:.2f}x fit only; {out / 'results.json'}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
