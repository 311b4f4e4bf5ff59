"""The workflow around fitting (issue 6): inspect, tune, multirun sweeps, sharding + status, wandb.

Everything is tiny (a 12-image folder dataset, <= 16 NeFs, <= 20 steps, eager) and every Hydra run
dir goes under tmp_path, so the file runs in about a minute on two CPU cores.
"""
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nefs import open_store
from nefs.errors import FitnefError
from tasks.fitting import fit
from tasks.runs import shard_bounds, shard_range

ROOT = Path(__file__).resolve().parents[1]
TINY = ["task.train.num_steps=20", "task.train.compile=false", "task.log.progress=false", "scheduler.value=1e-2"]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _run(module, *args, env=None, timeout=300):
    r = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=timeout)
    assert r.returncode == 0, f"{module} {' '.join(args)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """12 real digits as 16x16 grayscale PNGs in two class folders: a `folder` dataset."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("images")
    digits = load_digits()
    for i in range(12):
        sub = root / ("even" if digits.target[i] % 2 == 0 else "odd")
        sub.mkdir(exist_ok=True)
        img = Image.fromarray(np.round(digits.images[i] * 255 / 16).astype(np.uint8)).resize((16, 16))
        img.save(sub / f"{i:02d}.png")
    return root


def _folder_args(folder):
    return ["dataset=folder", f"dataset.path={folder}"]


# -- sharding -----------------------------------------------------------------------------------
def test_shard_bounds_are_contiguous_and_near_equal():
    b = shard_bounds(3, 20, 4)
    assert b[0][0] == 3 and b[-1][1] == 20
    assert all(b[i][1] == b[i + 1][0] for i in range(3))
    assert {hi - lo for lo, hi in b} <= {4, 5}
    assert shard_bounds(0, 2, 4) == [(0, 0), (0, 1), (1, 1), (1, 2)]


@pytest.mark.parametrize("task,needle", [
    ({"shard": None, "num_shards": 3}, "task.shard is not set"),
    ({"shard": 3, "num_shards": 3}, "task.shard=3: must be in 0..2"),
    ({"shard": 0, "num_shards": 0}, "task.num_shards=0"),
])
def test_bad_shard_settings_are_clear_errors(task, needle):
    with pytest.raises(FitnefError, match=re.escape(needle)):
        shard_range(task, 0, 10)


@pytest.mark.slow
@pytest.mark.skipif(not _has("hydra_plugins.hydra_joblib_launcher"), reason="needs fitnef[shard]")
def test_two_joblib_shards_equal_one_process_and_status_says_done(compose, tmp_path, folder):
    store = tmp_path / "sharded"
    r = _run("tasks.fit", "-m", "task.num_shards=2", "task.shard=range(2)", "hydra/launcher=joblib",
             "hydra.launcher.n_jobs=2", f"task.nef_dir={store}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
             *TINY, *_folder_args(folder))
    assert "2 jobs" in r.stdout
    fit(compose(*TINY, *_folder_args(folder), nef_dir=tmp_path / "single"))
    a, b = open_store(store), open_store(tmp_path / "single")
    assert a.done.all() and b.done.all() and len(a) == 12
    assert np.abs(np.asarray(a.params[:]) - np.asarray(b.params[:])).max() <= 1e-4
    assert dict(a.group.attrs["shards"]) == {"num_shards": 2, "start": 0, "end": 12}

    st = _run("tasks.status", f"task.nef_dir={store}").stdout
    assert "12/12 done (100.0%)" in st
    assert re.search(r"0\s+\[0, 6\)\s+6/6\s+100\.0", st) and re.search(r"1\s+\[6, 12\)\s+6/6\s+100\.0", st)


@pytest.mark.skipif(not _has("hydra_plugins.hydra_submitit_launcher"), reason="needs fitnef[shard]")
def test_submitit_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True, overrides=[
            "hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=1", "task.num_shards=4", "task.shard=1"])
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1


# -- multirun -------------------------------------------------------------------------------------
def test_default_store_of_a_single_run_has_no_suffix():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["nef=mlp"])
    assert cfg.task.nef_dir.endswith("digits/MLP")


@pytest.mark.slow
def test_multirun_gives_every_job_its_own_store_and_a_table(tmp_path):
    nefs = tmp_path / "nefs"
    r = _run("tasks.fit", "-m", "nef=siren,mlp", "scheduler.value=1e-3,1e-4", "task.train.end_idx=4",
             "task.train.num_steps=5", "task.train.compile=false", "task.log.progress=false",
             f"hydra.sweep.dir={tmp_path / 'sweep'}", env={"NEF_PATH": str(nefs)})
    stores = sorted(p.name for p in (nefs / "digits").iterdir() if (p / "zarr.json").exists())
    assert len(stores) == 4, stores
    assert "SIREN@nef:siren+scheduler.value:0.001+task.train.num_steps:5" in stores   # run-only keys left out
    assert "MLP@nef:mlp+scheduler.value:0.0001+task.train.num_steps:5" in stores
    table = (tmp_path / "sweep" / "summary.md").read_text()
    assert len([line for line in table.splitlines() if re.match(r"\| \d ", line)]) == 4
    assert "| nef=mlp scheduler.value=0.0001 |" in table and "4 jobs" in r.stdout
    for s in stores:  # each store is typed back on the command line as is
        assert open_store(nefs / "digits" / s).done[:4].all()
    _run("tasks.status", f"task.nef_dir={nefs / 'digits' / stores[0]}")


# -- inspect --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_inspect_metrics_match_the_store_and_pngs_show_the_images(compose, tmp_path, folder):
    fit(compose(*TINY, *_folder_args(folder), "task.train.end_idx=10", nef_dir=tmp_path / "siren"))  # 10 of 12 done
    fit(compose(*TINY, *_folder_args(folder), "nef=mlp", "task.train.end_idx=8", nef_dir=tmp_path / "mlp"))
    out = tmp_path / "inspect"
    r = _run("tasks.inspect", f"task.nef_dir={tmp_path / 'siren'}", f"hydra.run.dir={out}",
             "inspect.num_samples=3", f"compare={tmp_path / 'mlp'}")
    metrics = json.loads((out / "metrics.json").read_text())
    store = open_store(tmp_path / "siren")
    assert metrics["num_rows"] == 10
    assert metrics["psnr"]["mean"] == pytest.approx(float(store["psnr"][store.done].mean()), abs=1e-3)
    for k in ("psnr", "mse", "mae", "ssim"):
        assert set(metrics[k]) == {"mean", "std", "min", "max"} and np.isfinite(metrics[k]["mean"])
    assert 0 < metrics["ssim"]["mean"] <= 1
    # 3 sample rows x (gt | recon | 2x | rotated); 16x16 images -> 128 px panels
    files = metrics["png"]["files"]
    assert len(files) == 4 and all((out / f).exists() for f in files)
    w, h = Image.open(out / "samples.png").size
    assert (w, h) == (110 + 4 * 132 + 4, 18 + 3 * 132 + 4)
    row = np.asarray(Image.open(out / files[1]).convert("L"), dtype=np.float64)
    assert row[22:150, 114:242].std() > 10          # the ground-truth panel is an image, not blank
    assert "psnr" in r.stdout and "inspected 10 done rows" in r.stdout
    cmp = (out / "compare.md").read_text()
    assert "| SIREN | 105 | 8 |" in cmp and "| MLP | 541 | 8 |" in cmp and "rows done in both" in cmp
    assert [s["num_rows"] for s in json.loads((out / "compare.json").read_text())["stores"]] == [8, 8]


def test_inspect_refuses_a_store_that_is_not_there(tmp_path, command):
    r = command("tasks.inspect", f"task.nef_dir={tmp_path / 'none'}", f"hydra.run.dir={tmp_path / 'x'}")
    assert r.returncode == 2 and "no fitnef store" in r.stderr and "Traceback" not in r.stderr


# -- tune ----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not _has("hydra_plugins.hydra_optuna_sweeper"), reason="needs fitnef[tune]")
def test_tune_prints_a_best_command_that_runs(tmp_path, folder):
    sweep = tmp_path / "tune"
    r = _run("tasks.tune", "hydra.sweeper.n_trials=3", "tune.num_nefs=6", "task.train.num_steps=10",
             *_folder_args(folder), f"hydra.sweep.dir={sweep}")
    line = next(l for l in r.stdout.splitlines() if l.startswith("python -m tasks.fit"))
    best = json.loads((sweep / "best.json").read_text())
    assert best["command"] == line and set(best["best_params"]) == {"scheduler.value", "nef.hidden_dim", "nef.omega_0"}
    assert len(list(sweep.glob("*/summary.json"))) == 3
    assert not list(Path(tempfile.gettempdir()).glob("fitnef-tune-*/store/zarr.json"))  # no store kept
    args = shlex.split(line)[3:]
    assert "dataset=folder" in args and "task.train.num_steps=10" in args
    _run("tasks.fit", *args, f"task.nef_dir={tmp_path / 'best'}", "task.train.end_idx=4",
         "task.train.compile=false", "task.log.progress=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert open_store(tmp_path / "best").config["nef"]["hidden_dim"] == best["best_params"]["nef.hidden_dim"]


# -- wandb ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not _has("wandb"), reason="needs fitnef[wandb]")
def test_wandb_offline_writes_a_local_run_with_curves(tmp_path, folder):
    run_dir = tmp_path / "run"
    _run("tasks.fit", "logger=wandb", *TINY, *_folder_args(folder), "task.train.end_idx=4",
         "task.log.loss=5", "task.log.metrics=5", "task.log.images=10", f"task.nef_dir={tmp_path / 's'}",
         f"hydra.run.dir={run_dir}", env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    runs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    data = runs[0].read_bytes()
    for key in (b"train/loss", b"train/psnr", b"train/reconstructions", b"nefs/psnr"):
        assert key in data, key
    assert list((run_dir / "wandb").glob("offline-run-*/files/media/images/train/*.png"))
