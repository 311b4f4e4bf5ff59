"""The weight-space field's INR datasets: a store fitted with a recipe (conf/experiment/) and exported in its
party's format is read by (a reconstruction of) that party's dataset class, rendered by its INR class on its
grid, and gives fitnef's stored PSNR back (tests/parties.py says which of their files each piece follows)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from nefs import open_store
from nefs.errors import FitnefError
from scripts import export_nefs, import_nefs
from tasks.fitting import fit
from tasks.image.datasets import Digits

import parties

# a higher rate than the recipes so that 30 steps fit the digits well enough to tell a wrong grid or offset apart
QUICK = ["dataset=digits", "task.train.compile=false", "task.train.num_steps=30", "scheduler.value=3e-3"]
N = 10


@pytest.fixture(scope="module")
def digits01():
    return torch.from_numpy(Digits(name="digits", resolution=28).load().images[:N]).permute(0, 3, 1, 2).float() / 255


def _fit(compose, tmp_path, name, *extra, nef_dir="store"):
    fit(compose(f"experiment={name}", *QUICK, f"task.train.end_idx={N}", *extra, nef_dir=tmp_path / nef_dir))
    return open_store(tmp_path / nef_dir)


def test_dwsnets_mnist_export_reads_back_through_their_dataset_class(compose, tmp_path, digits01):
    store = _fit(compose, tmp_path, "dwsnets_mnist")
    assert store.attrs["export"] == {"format": "dwsnets", "layout": "mnist"}
    assert store.modality_info["mean"] == [0.5] and store.modality_info["std"] == [1.0]
    out = tmp_path / "dws"
    export_nefs.main([str(tmp_path / "store"), str(out), "--num-train", "7"])   # the store's default: dwsnets
    sd = torch.load(out / "mnist_png_training_0_0" / "checkpoints" / "model_final.pth")
    assert list(sd) == [f"seq.{i}.{k}" for i in range(3) for k in ("weight", "bias")]
    assert [tuple(v.shape) for v in sd.values()] == [(32, 2), (32,), (32, 32), (32,), (1, 32), (1,)]
    found = parties.dws_mnist_labels_by_glob(out)   # their split script's reading of the folder
    assert sorted(s for s, _ in found.values()).count("test") == 3
    labels = store.labels
    psnr = store["psnr"]
    seen = 0
    for split in ("train", "val", "test"):
        ds = parties.DwsImageDataset(out / "mnist_splits.json", split)
        for i in range(len(ds)):
            image, label = ds[i]
            m = parties.re.search(r"mnist_png_(training|testing)_(\d+)_(\d+)", ds.paths[i])
            row = int(m.group(3)) + (7 if m.group(1) == "testing" else 0)
            assert label == labels[row] == int(found[ds.paths[i]][1])
            assert parties.psnr01(image, digits01[row]) == pytest.approx(psnr[row], abs=0.05)
            seen += 1
    assert seen == N


def test_dwsnets_fmnist_layout_and_import_round_trip(compose, tmp_path, digits01):
    store = _fit(compose, tmp_path, "dwsnets_fmnist")     # dataset=digits replaces the recipe's fashion_mnist
    assert store.attrs["export"] == {"format": "dwsnets", "layout": "fmnist"}
    out = tmp_path / "fmnist_inrs"
    export_nefs.main([str(tmp_path / "store"), str(out), "--num-train", "8"])
    raw = json.loads((out / "splits.json").read_text())
    assert sorted(len(v) for v in raw.values()) == [1, 2, 7] and all(p.startswith("fmnist_inrs/") for v in raw.values() for p in v)
    sd = torch.load(out / "test" / "model_1.pth")
    assert sd["label"] == int(store.labels[9]) and "seq.2.bias" in sd
    ds = parties.DwsImageDataset(out / "fmnist_splits.json", "test")
    image, label = ds[[p.endswith("model_1.pth") for p in ds.paths].index(True)]
    assert parties.psnr01(image, digits01[9]) == pytest.approx(store["psnr"][9], abs=0.05)
    import_nefs.main(["dwsnets", str(out), str(tmp_path / "back"), "--num-train", "8"])
    back = open_store(tmp_path / "back")
    assert np.array_equal(np.asarray(back.params[:]), np.asarray(store.params[:N]))
    assert back.labels.tolist() == store.labels[:N].tolist()
    assert np.allclose(back.reconstruct(np.arange(N)).numpy(), store.reconstruct(np.arange(N)).numpy(), atol=1e-6)


def test_nfn_mnist_with_augmentation_copies(compose, tmp_path, digits01):
    for lo in (0, 1797):   # the originals (seed 0) and their first augmentation copies (seed 1)
        fit(compose("experiment=nfn_mnist", *QUICK, "task.seeds=[0,1]", f"task.train.start_idx={lo}",
                    f"task.train.end_idx={lo + N}", nef_dir=tmp_path / "store"))
    store = open_store(tmp_path / "store")
    assert store.attrs["nef"]["name"] == "SIREN_nfn"
    out = tmp_path / "siren_mnist_wts"
    export_nefs.main([str(tmp_path / "store"), str(out)])
    sd = torch.load(next((out / f"randinit_smaller_{store.labels[3]}s").glob("net3.pth")))
    assert list(sd) == ["net.0.linear.weight", "net.0.linear.bias", "net.1.linear.weight", "net.1.linear.bias",
                        "net.2.weight", "net.2.bias"]
    psnr = store["psnr"]
    for prefix, offset in (("randinit_smaller_aug0", 1797), ("randinit_smaller", None)):
        ds = parties.NfnSirenDataset(out, prefix=prefix, split="all")
        assert len(ds) == N
        for i in range(N):
            (weights, biases), label = ds[i]
            path = ds.idx_to_path[ds.idcs[i]]
            row = i + (1797 if "_aug0_" in path else 0)   # prefix randinit_smaller globs the aug folder too
            assert offset is None or row == i + offset
            assert label == store.labels[row]
            sd = torch.load(path)
            image = (parties.nfn_render(sd, (28, 28, 1)) + 1) / 2
            assert parties.psnr01(image, digits01[i]) == pytest.approx(psnr[row], abs=0.05)
    # splits by index, as NFN's configs cut them (here at 6 and 8 of 10)
    assert [len(parties.NfnSirenDataset(out, "randinit_smaller_aug0", s, (6, 8))) for s in ("train", "val", "test")] == [6, 2, 2]
    import_nefs.main(["nfn", str(out), str(tmp_path / "back")])
    back = open_store(tmp_path / "back")
    rows = np.r_[0:N, 1797:1797 + N]
    got = np.asarray(back.params[:])
    assert np.array_equal(got[np.r_[0:N, N:2 * N]], np.asarray(store.params.get_orthogonal_selection((rows, slice(None)))))


def _rgb_folder(root, n=6, size=32):
    """A few smooth colour images in label folders (what dataset=folder reads)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        f = rng.uniform(0.5, 3, size=(3, 2))
        img = np.stack([0.5 + 0.5 * np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy)) for c in range(3)], -1)
        d = root / str(i % 3)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255).astype(np.uint8)).save(d / f"{i}.png")
    return root


def test_nfn_cifar10_layout_renders_three_channels(compose, tmp_path):
    data = _rgb_folder(tmp_path / "rgb")
    fit(compose("experiment=nfn_cifar10", "dataset=folder", f"dataset.path={data}", "task.train.compile=false",
                "task.train.num_steps=30", "scheduler.value=3e-3", "task.seeds=[0]", nef_dir=tmp_path / "store"))
    store = open_store(tmp_path / "store")
    assert store.modality_info["mean"] == [0.5] * 3 and store.modality_info["std"] == [0.5] * 3
    out = tmp_path / "siren_cifar_wts"
    export_nefs.main(["nfn", str(tmp_path / "store"), str(out)])
    gt = store.reconstruct(np.arange(len(store)))  # only to know the image size: (n, 3, 32, 32)
    ds = parties.NfnSirenDataset(out, prefix="randinit_smaller", split="all")
    from tasks.image.datasets import ImageFolder

    images = torch.from_numpy(ImageFolder(name="folder", path=str(data)).load().images).permute(0, 3, 1, 2).float() / 255
    for i in range(len(ds)):
        image = (parties.nfn_render(torch.load(ds.idx_to_path[i]), (32, 32, 3)) + 1) / 2
        assert image.shape == gt.shape[1:]
        assert parties.psnr01(image, images[i]) == pytest.approx(store["psnr"][i], abs=0.05)


def test_arena_mnist_export_reads_as_the_arena_loads_it(compose, tmp_path, digits01):
    pytest.importorskip("h5py")
    store = _fit(compose, tmp_path, "arena_mnist", "task.train.num_parallel_nefs=4")
    out = tmp_path / "MNIST" / "SIREN"
    export_nefs.main([str(tmp_path / "store"), str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "nef.json", "nefs_0-4.hdf5", "nefs_4-8.hdf5",
                                                      "nefs_8-10.hdf5"]
    nef_json = json.loads((out / "nef.json").read_text())
    assert nef_json == {"name": "SIREN", "params": {"hidden_dim": 8, "num_layers": 3, "output_dim": 1, "omega_0": 8.0}}
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["dataset"]["name"] == "digits" and cfg["train"]["num_steps"] == 30
    data = parties.arena_load(out, 2, 9)     # across file boundaries, as a split would
    structure = parties.arena_param_structure(out)
    assert data["labels"].tolist() == store.labels[2:9].tolist()
    for j, row in enumerate(range(2, 9)):
        image = parties.fit_a_nef_siren_render(data["params"][j], structure, nef_json, (28, 28, 1), "MNIST")
        assert parties.psnr01(image, digits01[row]) == pytest.approx(store["psnr"][row], abs=0.05)


def test_a_nef_the_format_cannot_hold_is_one_line(compose, tmp_path, capsys):
    fit(compose(*QUICK, "nef=mlp", "task.train.end_idx=4", nef_dir=tmp_path / "mlp"))
    for fmt in ("dwsnets", "nfn"):
        with pytest.raises(SystemExit):
            export_nefs.main([fmt, str(tmp_path / "mlp"), str(tmp_path / fmt)])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "needs a SIREN with 2 inputs and omega_0=30" in err[0] and f"experiment={fmt}" in err[0]
    store = _fit(compose, tmp_path, "dwsnets_mnist")
    with pytest.raises(FitnefError, match="fit with experiment=nfn_mnist"):
        export_nefs.export(store, "nfn", tmp_path / "x")
    # folded: the same images in NFN's [-1, 1] output, no longer their parameterisation
    export_nefs.export(store, "nfn", tmp_path / "folded", fold_pixels=True)
    sd = torch.load(tmp_path / "folded" / f"randinit_smaller_{store.labels[0]}s" / "net0.pth")
    ours = (store.reconstruct([0])[0] * 2 - 1).clamp(-1, 1)
    assert torch.allclose(parties.nfn_render(sd, (28, 28, 1)).clamp(-1, 1), ours, atol=1e-4)


def test_siren_variants_draw_the_parties_initialisations():
    import math

    from nefs import SIREN

    def drawn(**kw):
        m = SIREN(hidden_dim=32, omega_0=30.0, **kw)
        m.reset_parameters(torch.Generator().manual_seed(0))
        return {n: p.detach() for n, p in m.named_parameters()}

    hidden = math.sqrt(6 / 32) / 30
    dws = drawn(first_init="hidden", bias_init="zeros", output_init="torch")     # DWSNets nn/inr.py
    assert math.sqrt(6 / 2) / 30 * 0.9 < dws["layers.0.weight"].abs().max() <= math.sqrt(6 / 2) / 30
    assert 0.9 * hidden < dws["layers.1.weight"].abs().max() <= hidden
    assert not dws["layers.0.bias"].any() and not dws["layers.1.bias"].any()
    assert 0.8 / math.sqrt(32) < dws["output.weight"].abs().max() <= 1 / math.sqrt(32) and dws["output.bias"].any()
    nfn = drawn(first_init="siren", bias_init="torch", output_init="siren")      # NFN siren_utils.py
    assert 0.45 < nfn["layers.0.weight"].abs().max() <= 0.5
    assert 0.5 < nfn["layers.0.bias"].abs().max() <= 1 / math.sqrt(2)
    assert nfn["layers.1.bias"].abs().max() <= 1 / math.sqrt(32) and nfn["output.weight"].abs().max() <= hidden
    with pytest.raises(FitnefError, match="nef.output_init='zero'"):
        SIREN(output_init="zero")


def test_pixels_of_the_wrong_length_are_one_line(compose, tmp_path):
    with pytest.raises(FitnefError, match="task.pixels: .* need 1 values each"):
        fit(compose(*QUICK, "task.train.end_idx=2", "+task.pixels={mean:[0.5,0.5],std:[1,1]}", nef_dir=tmp_path / "s"))
