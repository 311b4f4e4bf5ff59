"""Data set-up of a fit, whole range vs one shard (issue 20): an ImageNet-layout folder of generated JPEGs.

    python -m scripts.bench_data make /tmp/inet --images 20000          # <root>/imagenet/train/<wnid>/*.JPEG
    python -m scripts.bench_data run /tmp/inet                         # whole range: set-up s, peak RSS
    python -m scripts.bench_data run /tmp/inet --shard 3 --num-shards 10
    python -m scripts.bench_data setup /tmp/inet --shard 3 --num-shards 10   # the data part alone

``setup`` measures what a process does with the data before it fits: ``plan_run`` (the dataset opened, the
modality built with its normalisation statistics) and then every image of its range decoded, as the data
fingerprint does before the first step (``prefetch``, where the code has it; older code decoded the whole
dataset inside ``plan_run``). It prints the seconds and the peak RSS above the RSS after the imports.
``run`` fits one step of tiny NeFs (the fitting is not what is measured) and prints one JSON line: the fit's
``setup_s`` (from fit() to the first step: listing, decoding the range for the data fingerprint, store, init),
the process's peak RSS, and its RSS after the imports (so the data's own share is the difference). Run it with
``PYTHONPATH`` of another checkout to measure that checkout's code on the same files.
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def make(root: Path, images: int, classes: int, seed: int = 0) -> None:
    """``images`` JPEGs of 80x96 (HxW) smooth random colours, spread over ``classes`` wnid folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = root / "imagenet" / "train"
    yy, xx = np.mgrid[0:80, 0:96] / 40.0
    for k in range(images):
        folder = base / f"n{k % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.uniform(0, 6, 3), rng.uniform(0, 6, 3), rng.uniform(0, 6.3, 3)
        img = 127.5 + 127.5 * np.sin(a * xx[..., None] + b * yy[..., None] + c)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"img_{k:06d}.JPEG", quality=90)
    print(f"wrote {images} JPEGs under {base}")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(root: Path, store: Path, shard, num_shards: int, resolution: int) -> dict:
    import os

    os.environ["DATA_PATH"] = str(root)
    import tasks
    from hydra import compose, initialize_config_dir

    from tasks.fitting import fit
    from tasks.threads import use_allowed_cpus

    use_allowed_cpus()
    conf = Path(tasks.__file__).resolve().parents[1] / "conf"
    overrides = ["dataset=imagenet", "dataset.path=.", f"dataset.resolution={resolution}", "task.train.num_steps=1",
                 "task.train.compile=false", "nef.hidden_dim=4", "task.train.num_parallel_nefs=1000",
                 "task.log.progress=false", f"task.nef_dir={store}", f"task.num_shards={num_shards}"]
    if shard is not None:
        overrides.append(f"task.shard={shard}")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    base = current_rss_mb()
    t = time.perf_counter()
    summary = fit(cfg)
    return {"code": str(conf.parent), "range": [summary.start_idx, summary.end_idx], "setup_s": round(summary.setup_s, 2),
            "wall_s": round(time.perf_counter() - t, 2), "peak_rss_mb": round(rss_mb(), 1),
            "rss_after_imports_mb": round(base, 1), "data_peak_mb": round(rss_mb() - base, 1)}


def setup(root: Path, shard, num_shards: int, resolution: int) -> dict:
    import os

    os.environ["DATA_PATH"] = str(root)
    import tasks
    from hydra import compose, initialize_config_dir

    from tasks.plan import plan_run
    from tasks.threads import use_allowed_cpus

    use_allowed_cpus()
    conf = Path(tasks.__file__).resolve().parents[1] / "conf"
    overrides = ["dataset=imagenet", "dataset.path=.", f"dataset.resolution={resolution}", "task.train.compile=false",
                 "task.train.num_parallel_nefs=1000", f"task.num_shards={num_shards}", "task.nef_dir=/nonexistent/x"]
    if shard is not None:
        overrides.append(f"task.shard={shard}")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    import torchvision.datasets  # noqa: F401 - an import, not data set-up: loaded before both clocks start
    from PIL import Image, JpegImagePlugin  # noqa: F401

    base = current_rss_mb()
    cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    t = time.perf_counter()
    plan = plan_run(cfg)
    rows = np.arange(plan.start, plan.end) % plan.signals
    prefetch = getattr(plan.modality, "prefetch", None)
    if prefetch is not None:
        for lo in range(0, len(rows), 1000):   # as the fingerprint does: a store chunk at a time
            prefetch(rows[lo:lo + 1000])
    setup_s = time.perf_counter() - t
    return {"code": str(conf.parent), "range": [plan.start, plan.end], "signals": plan.signals,
            "data_setup_s": round(setup_s, 2), "cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0, 2),
            "data_peak_mb": round(rss_mb() - base, 1), "rss_after_imports_mb": round(base, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("root", type=Path)
    m.add_argument("--images", type=int, default=20000)
    m.add_argument("--classes", type=int, default=100)
    for name in ("run", "setup"):
        r = sub.add_parser(name)
        r.add_argument("root", type=Path)
        r.add_argument("--store", type=Path, default=None, help="run: default a fresh folder under /tmp")
        r.add_argument("--shard", type=int, default=None)
        r.add_argument("--num-shards", type=int, default=1)
        r.add_argument("--resolution", type=int, default=64)
    args = p.parse_args(argv)
    if args.cmd == "make":
        make(args.root, args.images, args.classes)
    elif args.cmd == "setup":
        print(json.dumps(setup(args.root, args.shard, args.num_shards, args.resolution)))
    else:
        import tempfile

        store = args.store or Path(tempfile.mkdtemp(prefix="bench_data_")) / "store"
        print(json.dumps(run(args.root, store, args.shard, args.num_shards, args.resolution)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
