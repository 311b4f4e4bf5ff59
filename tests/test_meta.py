"""Meta-learned initialisation: learning helps, the init is checked against the run's NeF."""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nefs import SIREN
from nefs.errors import FitnefError
from nefs.meta import MetaConfig, MetaLearner, load_init, save_init
from nefs.stack import ParamLayout, init_stacked
from tasks.image.modality import ImageModality

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def modality():
    yy, xx = np.mgrid[0:10, 0:10]
    imgs = [127 + 120 * np.sin(xx * 0.3 + yy * (0.1 + 0.05 * k)) for k in range(16)]
    return ImageModality(np.stack(imgs)[..., None].astype(np.uint8))


@pytest.mark.slow
@pytest.mark.parametrize("algorithm,first_order,inner", [
    ("maml", False, "sgd"), ("maml", True, "sgd"), ("reptile", False, "sgd"), ("maml", False, "adam"),
    ("reptile", False, "adam")])
def test_meta_learning_lowers_the_loss_after_inner_steps(modality, algorithm, first_order, inner):
    template = SIREN(hidden_dim=16)
    init = {k: v[0] for k, v in init_stacked(template, [0], [0], True).items()}
    cfg = MetaConfig(algorithm=algorithm, first_order=first_order, outer_steps=40,
                     outer_lr=0.5 if algorithm == "reptile" else 1e-2, inner_steps=2,
                     inner_lr=1e-2 if inner == "sgd" else 1e-3, inner_optimizer=inner, batch_size=8)
    problem = modality.problem(np.arange(16), np.zeros(16), np.arange(16), SimpleNamespace(masked_portion=1.0))
    coords, targets, _ = problem.train_batch(0)
    learner = MetaLearner(template, type(problem).loss, cfg)
    losses = []
    learned = learner.learn(init, lambda step: (coords, targets[step % 2 * 8:(step % 2 + 1) * 8]),
                            on_step=lambda s, loss: losses.append(loss))
    before = learner.outer_loss(init, coords, targets).item()
    after = learner.outer_loss(learned, coords, targets).item()
    assert after < 0.8 * before
    assert len(losses) == 40


def test_saved_init_is_checked_against_the_nef(tmp_path):
    template = SIREN()
    params = {k: v[0] for k, v in init_stacked(template, [0], [0], True).items()}
    nef = {"_target_": "nefs.SIREN", "name": "SIREN", "hidden_dim": 8, "num_layers": 3, "omega_0": 8.0,
           "in_features": 2, "out_features": 1}
    path = save_init(tmp_path / "m" / "init.pt", params, nef, {"dataset": "digits"})
    names = ParamLayout.of(template).names
    loaded = load_init(path, nef, names)
    assert all(torch.equal(loaded[k], params[k]) for k in params)
    with pytest.raises(FitnefError, match=r"hidden_dim: 8 \(init\) != 16 \(now\)"):
        load_init(path, {**nef, "hidden_dim": 16}, names)
    with pytest.raises(FitnefError, match="no such file"):
        load_init(tmp_path / "missing.pt", nef, names)


@pytest.mark.slow
def test_find_init_then_fit_from_it(tmp_path):
    env = {**os.environ, "NEF_PATH": str(tmp_path / "nefs")}
    common = ["dataset.resolution=12", "task.log.progress=false"]
    r = subprocess.run([sys.executable, "-m", "tasks.find_init", "meta.outer_steps=3", "meta.batch_size=8",
                        "meta.eval_signals=8", "meta.eval_steps=[2]", *common, f"hydra.run.dir={tmp_path / 'run'}"],
                       cwd=ROOT, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    init = Path(report["init"])
    assert init == tmp_path / "nefs" / "digits" / "SIREN" / "meta_init" / "init.pt" and init.is_file()
    assert {"psnr_default_2", "psnr_meta_2"} <= set(report)
    fit = subprocess.run([sys.executable, "-m", "tasks.fit", "task.train.init=meta", "task.train.end_idx=4",
                          "task.train.num_steps=1", "task.train.compile=false", *common,
                          f"hydra.run.dir={tmp_path / 'run2'}"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert fit.returncode == 0, fit.stderr[-2000:]
    assert init.is_file()  # the store in the same folder left the init alone
    from nefs import open_store

    # a single run's default store is named after its overrides (tasks/resolvers.py)
    store = open_store(tmp_path / "nefs" / "digits" / "SIREN@dataset.resolution:12+task.train.init:meta+task.train.num_steps:1")
    assert store.config["task"]["train"]["meta_init_sha256"]
    saved = torch.load(init, weights_only=False)["params"]
    start = torch.cat([v.flatten() for v in saved.values()]).numpy()
    # one Adam step moves each weight by at most ~lr from the learned init
    assert np.abs(np.asarray(store.params[:4]) - start).max() < 2e-3


def test_adam_inner_loop_takes_torch_adams_steps(modality):
    """The inner loop's Adam is torch.optim.Adam's, step for step (so the init is learned for the fit's own
    first steps)."""
    template = SIREN(hidden_dim=8)
    init = {k: v[0] for k, v in init_stacked(template, [0], [0], True).items()}
    problem = modality.problem(np.arange(2), np.zeros(2), np.arange(2), SimpleNamespace(masked_portion=1.0))
    coords, targets, _ = problem.train_batch(0)
    learner = MetaLearner(template, type(problem).loss,
                          MetaConfig(inner_optimizer="adam", inner_steps=3, inner_lr=1e-2))
    ours = learner.inner(init, coords, targets[:1], 3, keep_graph=False)
    params = {k: v.clone().requires_grad_() for k, v in init.items()}
    opt = torch.optim.Adam(list(params.values()), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        learner.nef_loss(params, coords, targets[0]).backward()
        opt.step()
    for k in params:
        assert torch.allclose(ours[k][0], params[k].detach(), atol=1e-6)
    with pytest.raises(FitnefError, match="meta.inner_optimizer='lbfgs': use sgd or adam"):
        MetaLearner(template, type(problem).loss, MetaConfig(inner_optimizer="lbfgs"))
