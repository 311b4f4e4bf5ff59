import numpy as np
import pytest
import torch
import zarr

from nefs import SIREN, open_store
from nefs.errors import FitnefError
from nefs.modality import Metric
from nefs.stack import ParamLayout
from nefs.store import NefStore, diff_keys


def _make(path, identity=None, rows=10, chunk=4):
    layout = ParamLayout.of(SIREN())
    return NefStore.create_or_open(
        path, identity=identity or {"nef": {"hidden_dim": 8}, "task": {"seeds": [0]}}, num_rows=rows,
        layout=layout, rows={"labels": np.arange(rows) % 3, "signal_idx": np.arange(rows), "seed": np.zeros(rows)},
        chunk_rows=chunk, modality={"name": "image", "shape": [4, 4, 1], "mean": [0.5], "std": [0.2]},
        nef={"_target_": "nefs.SIREN", "name": "SIREN", "hidden_dim": 8, "num_layers": 3, "omega_0": 8.0},
        metric=Metric("psnr", "dB"))


def test_store_is_a_plain_zarr_group(tmp_path):
    s = _make(tmp_path / "s")
    s.write_rows(np.array([2, 3, 4]), np.ones((3, 105)), np.array([20.0, 21, 22]), np.array([5, 5, 5]))
    g = zarr.open_group(str(tmp_path / "s"), mode="r")
    assert g["params"].shape == (10, 105) and g["params"].dtype == np.float32
    assert g["params"].chunks == (4, 105)
    assert g["done"][:].tolist() == [False, False, True, True, True] + [False] * 5
    assert g["psnr"][3] == 21.0 and g["steps"][4] == 5
    assert [d["name"] for d in g.attrs["param_layout"]][0] == "layers.0.weight"
    assert g["labels"][:].tolist() == (np.arange(10) % 3).tolist()
    assert np.isnan(g["params"][0]).all()


def test_pending_and_resume(tmp_path):
    s = _make(tmp_path / "s")
    s.write_rows(np.array([0, 1, 5]), np.zeros((3, 105)), np.zeros(3), np.zeros(3))
    again = _make(tmp_path / "s")
    assert again.pending(0, 10).tolist() == [2, 3, 4, 6, 7, 8, 9]
    assert again.pending(4, 7).tolist() == [4, 6]


def test_different_config_is_refused_naming_keys(tmp_path):
    _make(tmp_path / "s")
    with pytest.raises(FitnefError, match=r"nef\.hidden_dim: 8 \(store\) != 16 \(now\)"):
        _make(tmp_path / "s", identity={"nef": {"hidden_dim": 16}, "task": {"seeds": [0]}})


def test_half_created_store_is_recreated(tmp_path):
    path = tmp_path / "s"
    zarr.open_group(str(path), mode="w", zarr_format=3)  # as if killed before "complete"
    s = _make(path)
    assert len(s) == 10


def test_open_store_errors(tmp_path):
    with pytest.raises(FitnefError, match="no fitnef store"):
        open_store(tmp_path / "nothing")
    zarr.open_group(str(tmp_path / "z"), mode="w")
    with pytest.raises(FitnefError, match="not a fitnef store"):
        open_store(tmp_path / "z")


def test_user_api(tmp_path):
    s = _make(tmp_path / "s")
    m = SIREN()
    m.reset_parameters(torch.Generator().manual_seed(0))
    row = torch.cat([p.detach().flatten() for p in m.parameters()]).numpy()
    s.write_rows(np.array([1]), row[None], np.array([30.0]), np.array([7]))
    st = open_store(tmp_path / "s")
    assert st.params.shape == (10, 105) and st.done.sum() == 1
    model = st.build_model()
    model.load_state_dict(st.unflatten(1))
    x = torch.rand(5, 2)
    assert torch.allclose(model(x), m(x))
    img = st.reconstruct([1])
    assert img.shape == (1, 1, 4, 4) and 0 <= img.min() and img.max() <= 1
    ds = st.dataset()
    assert len(ds) == 1
    p, label = ds[0]
    assert p.shape == (105,) and label == 1


def test_diff_keys():
    assert diff_keys({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == [
        "a.c: 2 (store) != 3 (now)", "d: '<missing>' (store) != 0 (now)"]
