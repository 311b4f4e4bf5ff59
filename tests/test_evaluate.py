"""tasks.evaluate: weight-space classifiers on a store, their symmetry, the files they write."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nefs import SIREN
from nefs.classifiers import FlatMLP, NeuronSets
from nefs.errors import FitnefError
from nefs.modality import Metric
from nefs.stack import ParamLayout
from nefs.weight_space import RandomPermutation

from test_weight_space import make_store

ROOT = Path(__file__).resolve().parents[1]


def compose_evaluate(*overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="evaluate", overrides=["task.log.progress=false", *overrides])


def test_invariant_model_ignores_hidden_neuron_order_and_the_flat_one_does_not():
    layout = ParamLayout.of(SIREN(hidden_dim=8, num_layers=4))
    torch.manual_seed(0)
    flat = torch.randn(16, layout.size)
    permuted = RandomPermutation(layout, torch.Generator().manual_seed(1))(flat)
    inv, flat_model = NeuronSets(layout, 5).eval(), FlatMLP(layout, 5).eval()
    with torch.no_grad():
        assert torch.allclose(inv(permuted), inv(flat), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(flat_model(permuted), flat_model(flat), atol=1e-3)


def labelled_store(path, rows=200, classes=4, metric=None):
    """Rows whose parameters carry their label (a class-dependent offset), so a classifier can learn it."""
    rng = np.random.default_rng(0)

    def params(labels, size):
        offsets = rng.normal(size=(classes, size))
        return offsets[labels] + 0.3 * rng.normal(size=(len(labels), size))

    return make_store(path, rows=rows, seeds=2, classes=classes, chunk=64, params=params, metric=metric)


@pytest.mark.slow
@pytest.mark.parametrize("classifier", ["mlp", "invariant"])
def test_evaluate_learns_labels_and_writes_its_files(tmp_path, classifier):
    from tasks.evaluate import run

    labelled_store(tmp_path / "a")
    cfg = compose_evaluate(f"task.nef_dir={tmp_path / 'a'}", f"classifier={classifier}", "evaluate.max_epochs=40",
                           "evaluate.patience=10", "evaluate.augment_permute=true")
    out = tmp_path / "out"
    out.mkdir()
    report = run(cfg, out)[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == report["accuracy"] and metrics["classifier"] == classifier
    if classifier == "mlp":  # the offsets are not permutation-invariant, so only the flat model must get them
        assert report["accuracy"] > 0.9
    assert set(metrics["per_class_accuracy"]) == {"0", "1", "2", "3"}
    assert sum(map(sum, metrics["confusion"])) == metrics["rows"]["test"]
    assert metrics["rows"]["train"] + metrics["rows"]["val"] + metrics["rows"]["test"] == 200
    assert (out / "confusion.png").stat().st_size > 0


def test_compare_writes_one_table(tmp_path):
    from tasks.evaluate import run

    labelled_store(tmp_path / "a")
    labelled_store(tmp_path / "b")
    cfg = compose_evaluate(f"task.nef_dir={tmp_path / 'a'}", f"compare=[{tmp_path / 'b'}]", "evaluate.max_epochs=3")
    out = tmp_path / "out"
    out.mkdir()
    reports = run(cfg, out)
    table = (out / "compare.md").read_text()
    assert len(reports) == 2 and str(tmp_path / "b") in table and table.count("\n") == 4
    assert len(json.loads((out / "compare.json").read_text())) == 2


def test_a_store_scored_by_iou_is_reported_by_iou(tmp_path):
    from tasks.evaluate import run

    labelled_store(tmp_path / "a", metric=Metric("iou", "", True))
    labelled_store(tmp_path / "b", metric=Metric("iou", "", True))
    cfg = compose_evaluate(f"task.nef_dir={tmp_path / 'a'}", f"compare=[{tmp_path / 'b'}]", "evaluate.max_epochs=2")
    out = tmp_path / "out"
    out.mkdir()
    report = run(cfg, out)[0]
    assert report["metric"] == "iou" and report["store_iou"] == pytest.approx(0.75) and "store_psnr" not in report
    table = (out / "compare.md").read_text()
    assert "| iou |" in table and "psnr" not in table and "| 0.7500 |" in table


def test_bad_stores_are_one_line_errors(tmp_path):
    from tasks.evaluate import evaluate_store

    from nefs.store import NefStore

    layout = ParamLayout.of(SIREN())
    NefStore.create_or_open(tmp_path / "empty", identity={}, num_rows=4, layout=layout,
                            rows={"labels": np.zeros(4), "signal_idx": np.arange(4), "seed": np.zeros(4)},
                            chunk_rows=4, modality={"name": "image", "shape": [2, 2, 1], "mean": [0], "std": [1]},
                            nef={"_target_": "nefs.SIREN", "name": "SIREN"}, metric=Metric("psnr", "dB"))
    with pytest.raises(FitnefError, match="no done rows"):
        evaluate_store(tmp_path / "empty", compose_evaluate(), progress=False)
    make_store(tmp_path / "few", rows=12, seeds=1, classes=6)
    with pytest.raises(FitnefError, match="has no rows of class"):
        evaluate_store(tmp_path / "few", compose_evaluate(), progress=False)


@pytest.mark.slow
@pytest.mark.skipif(__import__("importlib").util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="needs fitnef[tune]")
def test_tune_downstream_objective_is_a_validation_accuracy(tmp_path):
    import subprocess
    import sys

    sweep = tmp_path / "tune"
    r = subprocess.run([sys.executable, "-m", "tasks.tune", "hparams_search=downstream", "hydra.sweeper.n_trials=2",
                        "tune.num_nefs=100", "task.train.num_steps=10", "evaluate.split_fractions=[0.5,0.5,0.0]",
                        "evaluate.max_epochs=3", f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    values = [json.loads(p.read_text())["objective"] for p in sorted(sweep.glob("*/summary.json"))]
    assert len(values) == 2 and all(0.0 <= v <= 1.0 for v in values)
    line = next(l for l in r.stdout.splitlines() if l.startswith("python -m tasks.fit"))
    assert "task.train.fixed_init=" in line and "evaluate." not in line  # a command tasks.fit accepts
