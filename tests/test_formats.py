"""Import / export of fit-a-nef's HDF5 neural datasets and of per-network state-dict folders."""
import json

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")

from nefs import open_store  # noqa: E402
from nefs.errors import FitnefError  # noqa: E402
from nefs.modality import Metric  # noqa: E402
from tasks.image.formats import export_fit_a_nef, export_state_dicts, import_fit_a_nef, import_state_dicts  # noqa: E402
from scripts import export_nefs, import_nefs  # noqa: E402

from test_weight_space import make_store  # noqa: E402

HIDDEN, OMEGA = 8, 8.0


def flax_siren(n, rng):
    """fit-a-nef SIREN-3 parameters as flax holds them: {path: (n, *shape)}, kernels (in, out)."""
    return {"kernel_net_0.linear.bias": rng.normal(size=(n, HIDDEN)) * 0.1,
            "kernel_net_0.linear.kernel": rng.normal(size=(n, 2, HIDDEN)),
            "kernel_net_1.linear.bias": rng.normal(size=(n, HIDDEN)) * 0.1,
            "kernel_net_1.linear.kernel": rng.normal(size=(n, HIDDEN, HIDDEN)) * 0.3,
            "output_linear.bias": rng.normal(size=(n, 1)) * 0.1,
            "output_linear.kernel": rng.normal(size=(n, HIDDEN, 1))}


def siren_key(name):  # fit-a-nef's SIREN_key: layer by layer, bias before kernel
    index = 2 * 2 if name.startswith("output_linear.") else 2 * int(name.split(".")[0].split("_")[-1])
    return index + (1 if name.endswith(".kernel") else 0)


def write_fit_a_nef(path, params, labels):
    """What fit-a-nef's trainer.save writes (flatten_params with num_batch_dims=1, then h5py)."""
    keys = sorted(params, key=siren_key)
    n = len(labels)
    config = [(k, params[k].shape[1:]) for k in keys]
    comb = np.concatenate([params[k].reshape(n, -1) for k in keys], axis=-1).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("params", data=comb)
        dt = h5py.special_dtype(vlen=str)
        data = f.create_dataset("param_config", (1,), dtype=dt)
        data[0] = json.dumps(config)
        f.create_dataset("labels", data=labels)


def read_fit_a_nef(path):
    """An independent reader in fit-a-nef's own way (trainer.load + unflatten_params)."""
    with h5py.File(path, "r") as f:
        config = json.loads(f["param_config"][0].decode("utf-8"))
        comb = f["params"][:]
        labels = f["labels"][:]
    out, idx = {}, 0
    for key, shape in config:
        size = int(np.prod(shape))
        out[key] = comb[..., idx:idx + size].reshape(*comb.shape[:-1], *shape)
        idx += size
    return out, labels


def flax_forward(p, i, x):
    h = np.sin(OMEGA * (x @ p["kernel_net_0.linear.kernel"][i] + p["kernel_net_0.linear.bias"][i]))
    h = np.sin(OMEGA * (h @ p["kernel_net_1.linear.kernel"][i] + p["kernel_net_1.linear.bias"][i]))
    return h @ p["output_linear.kernel"][i] + p["output_linear.bias"][i]


@pytest.fixture
def fit_a_nef_dir(tmp_path):
    rng = np.random.default_rng(0)
    params = flax_siren(10, rng)
    labels = np.arange(10) % 3
    folder = tmp_path / "fan"
    folder.mkdir()
    write_fit_a_nef(folder / "nefs_0-6.hdf5", {k: v[:6] for k, v in params.items()}, labels[:6])
    write_fit_a_nef(folder / "nefs_6-10.hdf5", {k: v[6:] for k, v in params.items()}, labels[6:])
    return folder, params, labels


def test_fit_a_nef_import_computes_what_flax_computes(tmp_path, fit_a_nef_dir):
    folder, params, labels = fit_a_nef_dir
    import_fit_a_nef(folder, tmp_path / "store", dataset="MNIST")
    store = open_store(tmp_path / "store")
    assert store.done.all() and store.labels.tolist() == labels.tolist() and len(store) == 10
    assert store.modality_info["mean"] == [0.13066047]
    x = np.random.default_rng(1).uniform(-1, 1, size=(30, 2))
    for row in (0, 7):
        with torch.no_grad():
            ours = store.model(row)(torch.from_numpy(x).float()).numpy()
        assert np.allclose(ours, flax_forward(params, row, x), atol=1e-4)
    assert store.reconstruct([0, 9]).shape == (2, 1, 28, 28)
    assert store.params.chunks[0] == 6  # one fit-a-nef file's worth of rows per chunk


def test_fit_a_nef_export_is_read_back_by_fit_a_nefs_reader(tmp_path, fit_a_nef_dir):
    folder, params, labels = fit_a_nef_dir
    store = import_fit_a_nef(folder, tmp_path / "store", dataset="MNIST")
    files = export_fit_a_nef(open_store(tmp_path / "store"), tmp_path / "out", rows_per_file=5)
    assert sorted(p.name for p in files) == ["nefs_0-5.hdf5", "nefs_5-10.hdf5"]
    back, back_labels = read_fit_a_nef(tmp_path / "out" / "nefs_5-10.hdf5")
    assert list(back) == sorted(params, key=siren_key)  # fit-a-nef's own order
    for k in params:
        assert np.allclose(back[k], params[k][5:], atol=1e-6), k
    assert back_labels.tolist() == labels[5:].tolist()
    assert len(store) == 10


def test_state_dict_round_trip_and_a_dwsnets_style_folder(tmp_path):
    store = make_store(tmp_path / "s", rows=6, seeds=1, classes=2)
    export_state_dicts(store, tmp_path / "sd")
    assert (tmp_path / "sd" / "1" / "nef_3.pth").exists()
    back = import_state_dicts(tmp_path / "sd", tmp_path / "back")
    assert np.array_equal(back.params[:], store.params[:]) and back.labels.tolist() == store.labels.tolist()
    # another project's folder: <label>/<net>/model.pth with its own names, no fitnef.json
    other = tmp_path / "dws"
    for i, row in enumerate([0, 3]):
        (other / str(int(store.labels[row])) / f"inr_{i}").mkdir(parents=True)
        sd = {f"seq.{j}.{k.rsplit('.', 1)[1]}": v for j, (k, v) in enumerate(store.unflatten(row).items())}
        torch.save(sd, other / str(int(store.labels[row])) / f"inr_{i}" / "model.pth")
    nef = dict(store.attrs["nef"])
    imported = import_state_dicts(other, tmp_path / "dws_store", nef=nef, shape=[6, 6, 1], mean=[0.5], std=[0.25])
    assert imported.labels.tolist() == [0, 1]
    assert np.array_equal(imported.params[:], store.params[[0, 3]])
    torch.save({"w": torch.zeros(3, 3)}, other / "0" / "inr_0" / "model.pth")
    with pytest.raises(FitnefError, match="do not match the NeF"):
        import_state_dicts(other, tmp_path / "bad", nef=nef, shape=[6, 6, 1], mean=[0.5], std=[0.25])


def test_import_script_and_its_one_line_errors(tmp_path, fit_a_nef_dir, capsys):
    folder, _, _ = fit_a_nef_dir
    import_nefs.main(["fit-a-nef", str(folder), str(tmp_path / "store"), "--dataset", "MNIST"])
    assert "imported 10 NeFs (SIREN)" in capsys.readouterr().out
    for argv, message in [
        (["bogus", str(folder), str(tmp_path / "x")], "unknown format 'bogus'"),
        (["fit-a-nef", str(tmp_path), str(tmp_path / "x"), "--dataset", "MNIST"], "no fit-a-nef files"),
        (["fit-a-nef", str(folder), str(tmp_path / "x")], "needs the image shape"),
    ]:
        with pytest.raises(SystemExit) as e:
            import_nefs.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and err.count("\n") == 1


def test_export_of_a_store_without_done_rows_is_refused(tmp_path, capsys):
    from nefs.stack import ParamLayout
    from nefs.store import NefStore
    from nefs import SIREN

    NefStore.create_or_open(tmp_path / "empty", identity={}, num_rows=3, layout=ParamLayout.of(SIREN()),
                            rows={"labels": np.zeros(3), "signal_idx": np.arange(3), "seed": np.zeros(3)},
                            chunk_rows=3, modality={"name": "image", "shape": [2, 2, 1], "mean": [0], "std": [1]},
                            nef={"_target_": "nefs.SIREN", "name": "SIREN"}, metric=Metric("psnr", "dB"))
    with pytest.raises(SystemExit):
        export_nefs.main(["fit-a-nef", str(tmp_path / "empty"), str(tmp_path / "out")])
    assert "no done rows" in capsys.readouterr().err


def test_a_fitted_store_exported_and_imported_reconstructs_to_its_psnr(tmp_path, compose, capsys):
    from tasks.fitting import fit

    fit(compose("task.train.num_steps=20", "task.train.compile=false", "task.train.end_idx=12",
                "task.train.num_parallel_nefs=6", nef_dir=tmp_path / "fitted"))
    fitted = open_store(tmp_path / "fitted")
    export_nefs.main(["fit-a-nef", str(tmp_path / "fitted"), str(tmp_path / "fan")])
    assert sorted(p.name for p in (tmp_path / "fan").iterdir()) == ["cfg.json", "nef.json", "nefs_0-6.hdf5", "nefs_6-12.hdf5"]
    info = fitted.modality_info
    import_nefs.main(["fit-a-nef", str(tmp_path / "fan"), str(tmp_path / "back"), "--shape", "28,28,1",
                      "--mean", repr(info["mean"][0]), "--std", repr(info["std"][0]), "--data", "digits",
                      "--num-signals", "1797"])
    assert "psnr" in capsys.readouterr().out
    back = open_store(tmp_path / "back")
    assert np.allclose(back["psnr"][:12], fitted["psnr"][:12], atol=1e-3)
    assert np.array_equal(back.signal_idx[:12], fitted.signal_idx[:12])
