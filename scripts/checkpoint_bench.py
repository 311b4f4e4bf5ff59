"""What ``task.train.checkpoint_every`` costs: one save of the in-flight state against one training step.

Fits one chunk of each job with a save every ``--every`` steps and reports the time of a training step,
of a save (rows flushed, state snapshotted, written with fsync and renamed), and the smallest
``checkpoint_every`` that keeps saving under 2% of the fit's time.

    python -m scripts.checkpoint_bench                       # default job (SIREN-8, 256 NeFs) and a shape chunk
    python -m scripts.checkpoint_bench --steps 100 --compile true
"""
import argparse
import logging
import math
import re
import shutil
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

from tasks.fitting import fit
from tasks.resolvers import register

ROOT = Path(__file__).resolve().parents[1]
JOBS = {
    "default (SIREN-8, 256 NeFs)": ["task.train.num_parallel_nefs=256", "task.train.end_idx=256"],
    "shape (SIREN 64x3, 64 NeFs)": ["task=shape", "task.seeds=[0,1,2]", "task.train.end_idx=64"],
}


class _Saves(logging.Handler):
    def __init__(self):
        super().__init__()
        self.ms = None

    def emit(self, record):
        m = re.search(r"saves of the in-flight state, ([\d.]+) s in all \(([\d.]+) ms each", record.getMessage())
        if m:
            self.total_s, self.ms = float(m.group(1)), float(m.group(2))


def measure(overrides, steps: int, every: int, compile_: str, device: str) -> dict:
    store = Path(tempfile.mkdtemp(prefix="ckpt_bench_")) / "store"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            *overrides, f"task.nef_dir={store}", f"task.train.num_steps={steps}", f"task.train.checkpoint_every={every}",
            f"task.train.compile={compile_}", "task.log.progress=false", f"device={device}"])
    saves = _Saves()
    logger = logging.getLogger("tasks.preempt")
    logger.addHandler(saves)
    logger.setLevel(logging.INFO)
    try:
        summary = fit(cfg)
    finally:
        logger.removeHandler(saves)
        shutil.rmtree(store.parent, ignore_errors=True)
    step_ms = 1e3 * (summary.train_s - saves.total_s) / steps
    return {"step_ms": step_ms, "save_ms": saves.ms,
            "every_for_2pct": math.ceil(saves.ms / (0.02 * step_ms))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--compile", default="false")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    register()
    logging.basicConfig(level=logging.WARNING)
    print(f"{'job':32s} {'step ms':>9s} {'save ms':>9s} {'every for <2%':>14s}")
    for name, overrides in JOBS.items():
        r = measure(overrides, args.steps, args.every, args.compile, args.device)
        print(f"{name:32s} {r['step_ms']:9.2f} {r['save_ms']:9.2f} {r['every_for_2pct']:14d}")


if __name__ == "__main__":
    main()
