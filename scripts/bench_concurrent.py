"""Fits at once on one machine against the same fits one after the other (issues 16 and 24).

    python -m scripts.bench_concurrent                                   # issue 24's job: 512 digits, 300 steps
    python -m scripts.bench_concurrent --fits 3 --modes sequential by_hand
    python -m scripts.bench_concurrent --modes one_core beside_spinner    # a fit beside a busy process
    python -m scripts.bench_concurrent --root /tmp/old_checkout          # the same against another checkout
    python -m scripts.bench_concurrent --env OMP_WAIT_POLICY=PASSIVE     # every fit under this environment

Every fit is what a person types in a shell, ``NEF_PATH=<own folder> python -m tasks.fit
task.train.end_idx=N task.train.num_steps=S``, each into its own store. Modes:

- ``sequential``: ``--fits`` fits, one after the other (the reference: total wall time);
- ``by_hand``: the same fits started at once with no flag (what two or three shells do);
- ``by_hand_shared``: the same with ``FITNEF_CONCURRENT_JOBS=<fits>`` in their environment;
- ``joblib``: the README's shard recipe, ``-m task.num_shards=F task.shard=0,..,F-1 hydra/launcher=joblib``
  (one store, the N NeFs split between the jobs: compare its ``nefs_per_s``, not its wall time);
- ``one_core``: one fit pinned to one core, nothing else started (the reference for ``beside_spinner``);
- ``beside_spinner``: one fit, free to use every core, while a plain Python process spins on one core.

Figures of merit: a concurrent mode's wall time over ``sequential``'s (issue 24 asks <= 1.15x for two fits,
<= 1.2x for three) and ``beside_spinner``'s NeFs/s over ``one_core``'s (asks >= 0.8x). Prints one JSON line
per mode (with the machine's load average before it started) and writes results.json to --out.
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
MODES = ["sequential", "by_hand", "by_hand_shared", "joblib", "one_core", "beside_spinner"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=512, help="NeFs per fit (task.train.end_idx)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--fits", type=int, default=2, help="fits started at once")
    p.add_argument("--modes", nargs="+", default=["sequential", "by_hand"], choices=MODES)
    p.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides, e.g. nef=mlp")
    p.add_argument("--env", nargs="*", default=[], help="NAME=VALUE for every fit, e.g. OMP_WAIT_POLICY=PASSIVE")
    p.add_argument("--root", default=str(ROOT), help="the checkout whose tasks.fit runs (default: this one)")
    p.add_argument("--out", default=None, help="folder for results.json (default: a temporary one)")
    return p.parse_args(argv)


def _fit_args(args, work: Path, tag: str) -> list:
    return [f"task.train.end_idx={args.n}", f"task.train.num_steps={args.steps}", "task.log.progress=false",
            *args.set, f"hydra.run.dir={work / 'run' / tag}", f"hydra.sweep.dir={work / 'sweep' / tag}"]


def _start(args, fit_args: list, env: dict, nef_path: Path, one_core: bool = False) -> subprocess.Popen:
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env), **env, "NEF_PATH": str(nef_path)}
    env["PYTHONPATH"] = args.root
    pin = (lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})) if one_core else None
    return subprocess.Popen([sys.executable, "-m", "tasks.fit", *fit_args], cwd=args.root, env=env,
                            preexec_fn=pin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(procs) -> list:
    """The log (stdout and stderr) of each finished fit."""
    logs = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a fit failed ({p.returncode}):\n{out[-2000:]}")
        logs.append(out)
    return logs


def _spinner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _thread_lines(logs) -> list:
    """What each fit logged about its CPU threads (its first line and every change)."""
    return [[line.split("] ", 1)[-1] for line in log.splitlines() if "CPU threads" in line] for log in logs]


def run_mode(mode: str, args, work: Path) -> dict:
    paths = [work / mode / f"nefs{k}" for k in range(args.fits)]
    env = {"FITNEF_CONCURRENT_JOBS": str(args.fits)} if mode == "by_hand_shared" else {}
    t = time.perf_counter()
    spinner = _spinner() if mode == "beside_spinner" else None
    try:
        if spinner is not None:
            time.sleep(1.0)   # it is running before the fit looks
        if mode == "sequential":
            logs = [_wait([_start(args, _fit_args(args, work, f"{mode}{k}"), env, paths[k])])[0]
                    for k in range(args.fits)]
        elif mode == "joblib":
            shards = ",".join(str(k) for k in range(args.fits))
            logs = _wait([_start(args, ["-m", f"task.num_shards={args.fits}", f"task.shard={shards}",
                                        "hydra/launcher=joblib", *_fit_args(args, work, mode)], env, paths[0])])
        elif mode in ("one_core", "beside_spinner"):
            logs = _wait([_start(args, _fit_args(args, work, mode), env, paths[0], one_core=mode == "one_core")])
        else:
            logs = _wait([_start(args, _fit_args(args, work, f"{mode}{k}"), env, paths[k])
                          for k in range(args.fits)])
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    wall = time.perf_counter() - t - (1.0 if spinner is not None else 0.0)
    fits = args.fits if mode in ("sequential", "by_hand", "by_hand_shared") else 1
    return {"mode": mode, "wall_s": round(wall, 2), "nefs_per_s": round(fits * args.n / wall, 1),
            "train_s": _train_seconds(work / "run", mode), "threads": _thread_lines(logs)}


def _train_seconds(runs: Path, mode: str) -> dict:
    """Each fit's training loop in seconds (summary.json's train_s: no start-up, data or compile), by run."""
    out = {}
    for summary in sorted(runs.glob(f"{mode}*/summary.json")):
        if summary.parent.name.rstrip("0123456789") == mode:
            out[summary.parent.name] = round(json.loads(summary.read_text())["train_s"], 2)
    return out


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_concurrent_"))
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            load = os.getloadavg()[0]
            r = run_mode(mode, args, Path(tmp))
            ref = {"by_hand": "sequential", "by_hand_shared": "sequential", "beside_spinner": "one_core"}.get(mode)
            base = next((x for x in results if x["mode"] == ref), None)
            if base is not None and mode in ("by_hand", "by_hand_shared"):
                r["vs_sequential"] = round(r["wall_s"] / base["wall_s"], 3)
            if base is not None and mode == "beside_spinner":
                r["vs_one_core"] = round(r["nefs_per_s"] / base["nefs_per_s"], 3)
            r.update({"n": args.n, "steps": args.steps, "fits": args.fits, "env": args.env, "root": args.root,
                      "cpus": len(os.sched_getaffinity(0)), "load_before": round(load, 2)})
            results.append(r)
            print(json.dumps(r), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"results: {out / 'results.json'}")


if __name__ == "__main__":
    main()
