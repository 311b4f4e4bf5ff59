"""End to end: the Hydra config, the index scheme, the store, resume after SIGKILL, clear errors."""
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nefs import open_store
from nefs.errors import FitnefError
from tasks.fitting import fit
from tasks.image.modality import psnr

ROOT = Path(__file__).resolve().parents[1]

QUICK = ["task.train.num_steps=30", "task.train.compile=false", "scheduler.value=1e-2"]


def _params(path):
    s = open_store(path)
    return np.asarray(s.params[:]), s.done


@pytest.mark.slow
def test_default_job_fits_digits_into_a_store(compose, tmp_path):
    summary = fit(compose(*QUICK, "task.train.end_idx=20", "task.train.num_parallel_nefs=8"))
    assert summary.fitted == 20 and summary.total == 1797 and summary.total_done == 20
    s = open_store(tmp_path / "store")
    assert s.done[:20].all() and not s.done[20:].any()
    assert s.config["nef"]["hidden_dim"] == 8 and s.config["task"]["train"]["num_steps"] == 30
    assert "num_parallel_nefs" not in s.config["task"]["train"]      # run-only keys are not identity
    assert s["psnr"][:20].mean() == pytest.approx(summary.metric_mean, abs=1e-4)
    assert s.steps[:20].tolist() == [30] * 20
    assert "torch" in dict(s.group.attrs["versions"])


@pytest.mark.slow
def test_index_scheme_seeds_times_signals(compose, tmp_path):
    fit(compose(*QUICK, "task.seeds=[3,4]", "task.train.start_idx=1795", "task.train.end_idx=1799"))
    s = open_store(tmp_path / "store")
    assert len(s) == 2 * 1797
    assert s.seed[1795:1799].tolist() == [3, 3, 4, 4]
    assert s.signal_idx[1795:1799].tolist() == [1795, 1796, 0, 1]
    assert s.labels[1797] == s.labels[0]


@pytest.mark.slow
@pytest.mark.parametrize("compiled", [False, True])
def test_results_do_not_depend_on_chunking_or_range(compose, tmp_path, compiled):
    common = [*QUICK[:1], f"task.train.compile={compiled}", "task.train.masked_portion=0.5",
              "task.train.fixed_init=false"]
    fit(compose(*common, "task.train.end_idx=64", "task.train.num_parallel_nefs=16", nef_dir=tmp_path / "a"))
    fit(compose(*common, "task.train.end_idx=64", "task.train.num_parallel_nefs=64", nef_dir=tmp_path / "b"))
    fit(compose(*common, "task.train.start_idx=32", "task.train.end_idx=64", "task.train.num_parallel_nefs=32",
                nef_dir=tmp_path / "c"))
    a, b, c = (_params(tmp_path / x)[0] for x in "abc")
    assert np.abs(a[:64] - b[:64]).max() <= 1e-4
    assert np.abs(a[32:64] - c[32:64]).max() <= 1e-4
    assert not np.allclose(a[0], a[1])


def test_reconstruct_reproduces_stored_psnr(compose, tmp_path):
    fit(compose(*QUICK, "task.train.end_idx=6", "dataset.resolution=16"))
    s = open_store(tmp_path / "store")
    from tasks.image.datasets import Digits

    gt = torch.from_numpy(Digits(name="digits", resolution=16).load().images[:6]).permute(0, 3, 1, 2).float() / 255
    rec = s.reconstruct(np.arange(6))
    assert rec.shape == (6, 1, 16, 16)
    assert np.allclose(psnr(rec, gt).numpy(), s["psnr"][:6], atol=1e-3)


@pytest.mark.slow
def test_rerun_resumes_and_changed_config_is_refused(compose, tmp_path):
    first = fit(compose(*QUICK, "task.train.end_idx=10"))
    assert first.fitted == 10
    again = fit(compose(*QUICK, "task.train.end_idx=12"))
    assert again.fitted == 2 and again.total_done == 12
    with pytest.raises(FitnefError, match="nef.hidden_dim: 8 \\(store\\) != 16 \\(now\\)"):
        fit(compose(*QUICK, "task.train.end_idx=12", "nef.hidden_dim=16"))


def _run(*overrides, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "tasks.fit", *overrides], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, **kw)


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_gives_identical_rows(compose, tmp_path):
    args = ["task.train.num_steps=150", "task.train.compile=false", "task.train.end_idx=96",
            "task.train.num_parallel_nefs=16", "task.log.progress=false"]
    store = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "tasks.fit", *args, f"task.nef_dir={store}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            done = int(open_store(store).done.sum())
        except FitnefError:
            continue
        if done >= 16:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 16 <= done < 96, f"kill landed at {done} done rows; expected mid-run"
    left = 96 - int(open_store(store).done[:96].sum())   # rows written up to the kill
    rerun = _run(*args, f"task.nef_dir={store}", f"hydra.run.dir={tmp_path / 'run'}")
    assert rerun.returncode == 0, rerun.stderr
    import json

    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["fitted"] == left and summary["total_done"] == 96    # only the missing rows were fitted
    assert summary["process_s"] > summary["setup_s"] + summary["wall_s"] > summary["write_s"] > 0
    fit(compose(*args, nef_dir=tmp_path / "clean"))
    killed, dk = _params(store)
    clean, dc = _params(tmp_path / "clean")
    assert dk[:96].all() and dk.sum() == 96 and dc.sum() == 96
    assert np.abs(killed[:96] - clean[:96]).max() <= 1e-4


@pytest.mark.parametrize("override,needle", [
    ("nef=foo", "error: nef=foo: no such option; did you mean nef="),   # tasks/typos.py, before Hydra
    ("task.train.num_steps=abc", "could not be converted to Integer"),
    ("dataset.out_channels=3", "dataset.out_channels=3 but digits images have 1 channel"),
    ("task.train.end_idx=99999", "end_idx=99999"),
    ("device=tpu", "device='tpu'"),
    ("dataset=folder", "dataset.path has no value"),
    ("scheduler.value=abc", "bad scheduler config (ValueError: could not convert string to float: 'abc')"),
    ("optimizer.betas=[2,3]", "bad optimizer config (ValueError: Invalid beta parameter at index 0: 2)"),
    ("task.train.num_steps=0", "task.train.num_steps=0: must be >= 1"),
    ("+optimizer.lr=0.1", "optimizer.lr=0.1: the learning rate comes from the scheduler"),
    ("task.train.compile=maybe", "task.train.compile='maybe': use true, false or auto"),
])
def test_bad_input_is_a_clear_error_without_traceback(tmp_path, override, needle, command):
    r = command("tasks.fit", override, f"task.nef_dir={tmp_path / 's'}")
    assert r.returncode != 0
    assert needle in r.stderr + r.stdout
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "s" / "params").exists()  # no half-written store


def test_missing_dataset_names_the_path(tmp_path, command, monkeypatch):
    monkeypatch.setenv("DATA_PATH", str(tmp_path / "nowhere"))
    r = command("tasks.fit", "dataset=mnist", f"task.nef_dir={tmp_path / 's'}")
    assert r.returncode == 2
    assert str(tmp_path / "nowhere") in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_compile_auto_compiles_only_runs_that_repay_it(compose, tmp_path, caplog):
    from tasks.plan import COMPILE_PAYS_AFTER, resolve_compile

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compile(True, cpu, 1) is True and resolve_compile(False, cpu, 10**12) is False
    assert resolve_compile("auto", cpu, int(COMPILE_PAYS_AFTER["cpu"])) is True
    assert resolve_compile("auto", cpu, int(COMPILE_PAYS_AFTER["cpu"]) - 1) is False
    assert resolve_compile("auto", cpu, 1797 * 500, 105) is True        # the default job: compiled on a CPU
    assert resolve_compile("auto", cpu, 64 * 500, 3076) is True         # 64 GaborNets: worth it
    assert resolve_compile("auto", cuda, 1797 * 500, 105) is False      # the default job: eager on a GPU
    assert resolve_compile("auto", cuda, 140000 * 500, 105) is True     # the HOWTO's MNIST fit: compiled
    with caplog.at_level(logging.INFO):
        summary = fit(compose("task.train.end_idx=4", "task.train.num_steps=5"))  # 20 NeF-steps: eager
    assert "task.train.compile=auto: eager" in caplog.text and summary.fitted == 4
