"""Tune fit settings with Optuna: ``python -m tasks.tune [hparams_search=siren_speed] [dataset=...]``.

Hydra's Optuna sweeper (hydra-optuna-sweeper) draws each trial's overrides from the search space in
``conf/hparams_search/<name>.yaml``; a trial fits ``tune.num_nefs`` NeFs of the dataset into a temporary
store that is deleted afterwards, and returns the objective:

- ``metric``: the mean of the store's metric (PSNR for images, IoU for shapes) over the trial's NeFs;
- ``nefs_per_s``: NeFs that reach ``task.train.target``, per second of fitting;
- ``downstream``: validation accuracy of a weight-space classifier trained on the trial's NeFs
  (``hparams_search=downstream``; tasks/evaluate.py, ``classifier`` and ``evaluate.*`` keys).

At the end (tasks/callbacks.py: TuneSummary) a table of trials is printed, and the best trial as a
``python -m tasks.fit ...`` command, saved in the sweep dir as ``best_command.sh`` and ``best.json``.
``hydra.sweeper.n_trials=4`` sets the number of trials (default 20).
"""
import dataclasses
import json
import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from nefs.errors import FitnefError
from nefs.store import open_store

from .entry import command
from .evaluate import evaluate_store
from .fitting import fit

log = logging.getLogger(__name__)

OBJECTIVES = ("metric", "nefs_per_s", "downstream")


def trial(cfg: DictConfig) -> tuple:
    """(objective value, FitSummary) of one trial: fit the subset into a temporary store, then drop it."""
    tune = cfg.tune
    objective = str(tune.objective)
    if objective not in OBJECTIVES:
        raise FitnefError(f"tune.objective={objective!r}; allowed: {', '.join(OBJECTIVES)}")
    n = int(tune.num_nefs)
    start = int(tune.start_idx)
    if n < 1:
        raise FitnefError(f"tune.num_nefs={n}: must be >= 1")
    if objective == "nefs_per_s" and cfg.task.train.get("target") is None:
        raise FitnefError("tune.objective=nefs_per_s counts NeFs reaching task.train.target; set it, "
                          "e.g. task.train.target=30")
    tmp = Path(tempfile.mkdtemp(prefix="fitnef-tune-"))
    try:
        run_cfg = cfg.copy()
        with open_dict(run_cfg):
            run_cfg.task.nef_dir = str(tmp / "store")
            run_cfg.task.train.start_idx = start
            run_cfg.task.train.end_idx = start + n
            run_cfg.task.shard = None
            run_cfg.task.num_shards = 1
        summary = fit(run_cfg)
        store = open_store(tmp / "store")
        metric = store.metric[start:start + n]
        if objective == "metric":
            value = float(np.mean(metric))
        elif objective == "downstream":
            value = evaluate_store(tmp / "store", cfg, progress=False)["val_accuracy"]
        else:
            reached = store.metric_info.reached(torch.as_tensor(metric), float(cfg.task.train.target))
            value = float(reached.sum()) / summary.wall_s if summary.wall_s else 0.0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not math.isfinite(value):
        value = -1e9  # diverged: the worst possible trial, but the study goes on
    return value, summary


@command("tune")
def main(cfg: DictConfig) -> float:
    value, summary = trial(cfg)
    data = dataclasses.asdict(summary)
    data.update({"objective": value, "objective_name": str(cfg.tune.objective), "store": "(temporary, deleted)"})
    try:
        (Path(HydraConfig.get().runtime.output_dir) / "summary.json").write_text(json.dumps(data, indent=1))
    except ValueError:
        pass
    print(f"trial: {cfg.tune.objective} = {value:.4g} ({summary.line().split(', store')[0]})")
    return value


if __name__ == "__main__":
    import importlib.util

    if importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        print("error: tasks.tune needs Hydra's Optuna sweeper: pip install 'fitnef[tune]'", file=sys.stderr)
        sys.exit(2)
    main()
