"""The smaller things a new user hit (issue 16, point 7)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nefs.errors import FitnefError

ROOT = Path(__file__).resolve().parents[1]
QUICK = ("task.train.num_steps=2", "task.train.compile=false", "nef.hidden_dim=8")


def test_missing_mnist_names_the_offline_sample(tmp_path, monkeypatch):
    from tasks.image import datasets as D

    monkeypatch.setenv("DATA_PATH", str(tmp_path))
    with pytest.raises(FitnefError, match=r"python -m scripts.prepare_mnist_sample"):
        D.MNIST(name="MNIST", path=".", download=False).load()


def test_missing_matplotlib_names_the_inspect_extra(monkeypatch):
    import importlib

    from tasks.shape import meshes

    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, *a: (_ for _ in ()).throw(ImportError(name)) if name == "matplotlib" else real(name, *a))
    with pytest.raises(FitnefError, match=r"pip install -e '\.\[inspect\]'"):
        meshes.require("matplotlib")
    with pytest.raises(FitnefError, match=r"pip install -e '\.\[shapes\]'"):
        monkeypatch.setattr(importlib, "import_module", lambda name, *a: (_ for _ in ()).throw(ImportError(name)))
        meshes.require("trimesh")


def test_a_bad_learning_rate_points_at_the_scheduler(compose):
    from tasks.plan import build_optimization

    with pytest.raises(FitnefError, match=r"learning rate -0.001 from the scheduler.*scheduler\.value"):
        build_optimization(compose("scheduler.value=-1e-3"), 10)


def test_folder_of_mixed_sizes_with_dataset_resolution(compose, tmp_path):
    from tasks.fitting import fit

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, size in enumerate([(8, 8), (12, 10), (9, 16)]):
        Image.fromarray(np.full(size[::-1], 40 * i, np.uint8)).save(folder / f"{i}.png")
    with pytest.raises(FitnefError, match="set dataset.resolution"):
        fit(compose(*QUICK, "dataset=folder", f"dataset.path={folder}"))
    out = fit(compose(*QUICK, "dataset=folder", f"dataset.path={folder}", "dataset.resolution=8"))
    assert out.fitted == 3


def test_model_of_coords_returns_standardised_pixels_as_the_readme_says(compose, tmp_path):
    from nefs import open_store
    from tasks.fitting import fit
    from tasks.image.modality import make_grid

    fit(compose(*QUICK, "task.train.end_idx=2"))
    store = open_store(tmp_path / "store")
    h, w, c = store.modality_info["shape"]
    coords = make_grid(h, w)                              # (H*W, 2) in [-1, 1], [:, 0] the column
    assert coords.min() == -1 and coords.max() == 1 and torch.equal(coords[1], torch.tensor([-1 + 2 / (w - 1), -1.0]))
    with torch.no_grad():
        out = store.model(1)(coords)
    pixels = (out * torch.tensor(store.modality_info["std"]) + torch.tensor(store.modality_info["mean"])).clamp(0, 1)
    np.testing.assert_allclose(pixels.reshape(h, w, c).permute(2, 0, 1).numpy(), store.reconstruct([1])[0].numpy(),
                               atol=1e-5)


@pytest.mark.slow
def test_entry_points_write_no_run_dir_into_the_repo_and_a_small_nef_says_so(tmp_path):
    before = set((ROOT / "outputs").glob("*/*")) if (ROOT / "outputs").exists() else set()
    r = subprocess.run([sys.executable, "-m", "tasks.fit", "task.train.end_idx=4", "task.train.num_steps=2",
                        "task.log.progress=false", f"task.nef_dir={tmp_path / 'store'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "is low: a wider NeF fits better" in r.stdout + r.stderr   # 2 steps: far below 22 dB
    after = set((ROOT / "outputs").glob("*/*")) if (ROOT / "outputs").exists() else set()
    assert after == before                                     # conftest's FITNEF_RUNS took the run dir
    assert list(Path(os.environ["FITNEF_RUNS"]).glob("*/*/.hydra"))
