"""Two fits at once on one machine against the same two one after the other (issue 16, point 1).

    python -m scripts.bench_concurrent                         # the default job's size: 1797 digits, 500 steps
    python -m scripts.bench_concurrent --n 256 --steps 100     # a quick check

Modes, each fitting the same two halves of ``--n`` NeFs into two fresh stores:

- ``sequential``: one fit, then the other (the reference: total wall time);
- ``by_hand``: both started at once with no coordination, each taking every CPU (what two shells do);
- ``by_hand_shared``: the same with ``FITNEF_CONCURRENT_JOBS=2`` in their environment;
- ``joblib``: the README's shard recipe, ``-m task.num_shards=2 task.shard=0,1 hydra/launcher=joblib``
  (the ShareCpus callback splits the CPUs).

The figure of merit is a mode's wall time over ``sequential``'s: two at once should take at most ~1.0x
(the issue asks <= 1.15x). Prints one JSON line per mode and writes results.json to --out.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1797, help="NeFs in all (each fit does half)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--modes", nargs="+", default=["sequential", "by_hand", "by_hand_shared", "joblib"],
                   choices=["sequential", "by_hand", "by_hand_shared", "joblib"])
    p.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides, e.g. nef=mlp")
    p.add_argument("--out", default=None, help="folder for results.json (default: a temporary one)")
    return p.parse_args(argv)


def _common(args, work: Path, tag: str) -> list:
    return ["task.log.progress=false", f"task.train.num_steps={args.steps}", "device=cpu", *args.set,
            f"hydra.run.dir={work / 'run' / tag}", f"hydra.sweep.dir={work / 'sweep' / tag}"]


def _half(args, k: int) -> list:
    half = args.n // 2
    return [f"task.train.start_idx={k * half}", f"task.train.end_idx={half if k == 0 else args.n}"]


def _start(cmd: list, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tasks.fit", *cmd], cwd=ROOT, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(procs) -> None:
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a fit failed ({p.returncode}):\n{err[-2000:]}")


def run_mode(mode: str, args, work: Path) -> dict:
    # the same data into its own stores per mode (the shard recipe shares one store: rows are disjoint)
    stores = [work / mode / f"store{k}" for k in range(2)]
    env = {"FITNEF_CONCURRENT_JOBS": "2"} if mode == "by_hand_shared" else {}
    t = time.perf_counter()
    if mode == "sequential":
        for k in range(2):
            _wait([_start([*_common(args, work, f"{mode}{k}"), *_half(args, k), f"task.nef_dir={stores[k]}"], env)])
    elif mode == "joblib":
        _wait([_start(["-m", "task.num_shards=2", "task.shard=0,1", "hydra/launcher=joblib",
                       f"task.train.end_idx={args.n}", f"task.nef_dir={stores[0]}", *_common(args, work, mode)], env)])
    else:
        _wait([_start([*_common(args, work, f"{mode}{k}"), *_half(args, k), f"task.nef_dir={stores[k]}"], env)
               for k in range(2)])
    return {"mode": mode, "wall_s": round(time.perf_counter() - t, 2)}


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_concurrent_"))
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            r = run_mode(mode, args, Path(tmp))
            results.append(r)
            seq = next((x["wall_s"] for x in results if x["mode"] == "sequential"), None)
            if seq:
                r["vs_sequential"] = round(r["wall_s"] / seq, 3)
            r.update({"n": args.n, "steps": args.steps, "cpus": len(os.sched_getaffinity(0))})
            print(json.dumps(r), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
