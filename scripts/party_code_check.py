"""Check exported INR datasets with the parties' own code (their repositories checked out beside, not imported
by fitnef): DWSNets' INRImageDataset renders its folder, NFN's SirenDataset and Siren load and render theirs,
the arena's ClassificationNeuralMNIST loads the fit-a-nef files; each image's PSNR is compared with the
store's. Modules their imports need but these classes never use (rff, absl, functorch; pandas, einops, jax if absent) are stubbed.

    python -m scripts.party_code_check --dwsnets /tmp/real/dws --nfn /tmp/real/nfn --arena /tmp/real/arena \\
        --stores /tmp/real/stores --out /tmp/real/out

with ``git --git-dir=<fetched repo> archive HEAD | tar -x -C /tmp/real/<party>`` for the checkouts and the
stores/exports of docs/formats.md. Prints one line per party: INRs read, the largest |PSNR difference|.
"""
import argparse
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import torch


def _stub(name, **attrs):
    import importlib.machinery

    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)   # torch's import scans want one
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _psnr(img01, gt01):
    return float(-10 * torch.log10(((img01.clamp(0, 1) - gt01) ** 2).mean()))


def _digits(store):
    from tasks.image.inspect import load_images

    return torch.from_numpy(load_images(store)).permute(0, 3, 1, 2).float() / 255


def check_dwsnets(repo, store, folder, layout):
    _stub("rff"), _stub("rff.layers", GaussianEncoding=None, PositionalEncoding=None)
    sys.path.insert(0, str(repo))
    from experiments.data import INRImageDataset   # DWSNets' own

    gt, psnr, n_train = _digits(store), store["psnr"], None
    worst, n = 0.0, 0
    splits = folder / ("mnist_splits.json" if layout == "mnist" else "fmnist_splits.json")
    n_train = sum(len(v["path"]) for k, v in json.loads(splits.read_text()).items() if k != "test")
    for split in ("train", "val", "test"):
        ds = INRImageDataset(path=str(splits), split=split)
        for i in range(len(ds)):
            batch = ds[i]
            path = ds.dataset["path"][i]
            if layout == "mnist":
                m = re.search(r"mnist_png_(training|testing)_(\d+)_(\d+)", path)
                row = int(m.group(3)) + (n_train if m.group(1) == "testing" else 0)
            else:
                row = int(re.search(r"model_(\d+)\.pth", path).group(1)) + (n_train if "/test/" in path else 0)
            assert batch.label == store.labels[row]
            worst = max(worst, abs(_psnr(batch.image, gt[row]) - psnr[row]))
            n += 1
    sys.path.remove(str(repo))
    for k in [k for k in sys.modules if k == "experiments" or k.startswith("experiments.") or k == "nn" or k.startswith("nn.")]:
        del sys.modules[k]
    return n, worst


def check_nfn(repo, store, folder):
    _stub("functorch", make_functional=None, vmap=torch.vmap)
    try:
        import pandas  # noqa: F401  (data_utils imports it for ZooDataset only)
    except ImportError:
        _stub("pandas")
    try:
        import einops  # noqa: F401  (nfn's layers, imported by nfn/__init__, use it; SirenDataset does not)
    except ImportError:
        _stub("einops", rearrange=None), _stub("einops.layers"), _stub("einops.layers.torch", Rearrange=torch.nn.Identity)
    sys.path.insert(0, str(repo))
    from experiments.data_utils import SirenDataset   # NFN's own
    from experiments.siren_utils import SIREN_kwargs, Siren, get_mgrid

    gt, psnr = _digits(store), store["psnr"]
    m = len(gt)
    worst, n = 0.0, 0
    for prefix in ("randinit_smaller", "randinit_smaller_aug0"):
        ds = SirenDataset(str(folder), prefix=prefix, split="all")
        net = Siren(**SIREN_kwargs["mnist"])
        for i in range(len(ds)):
            _, label = ds[i]
            path = ds.idx_to_path[ds.idcs[i]]
            idx = int(re.search(r"net(\d+)\.pth", path).group(1))
            row = idx + (m if "_aug0_" in path else 0)
            assert label == store.labels[row]
            net.load_state_dict(torch.load(path))
            with torch.no_grad():
                values = net(get_mgrid(28, 2))[0]
            image = (values.reshape(28, 28, 1).permute(2, 0, 1) + 1) / 2
            worst = max(worst, abs(_psnr(image, gt[idx]) - psnr[row]))
            n += 1
    return n, worst


def check_arena(repo, store, folder):
    absl = _stub("absl")
    absl.logging = _stub("absl.logging", info=print, warning=print)
    noop = lambda name: (lambda *a, **k: None)  # noqa: E731  absl's flag definitions at import: nothing to do
    absl.app, absl.flags = _stub("absl.app", __getattr__=noop), _stub("absl.flags", __getattr__=noop)
    try:
        import jax  # noqa: F401  (its transforms name jax types in annotations; the loader does not use jax)
    except ImportError:
        jax = _stub("jax")
        jax.numpy = _stub("jax.numpy", ndarray=np.ndarray)
        jax.random = _stub("jax.random", PRNGKey=object)
    sys.path.insert(0, str(repo))
    from neural_dataset.classification_neural_datasets import ClassificationNeFDataset  # the arena's own

    structure = json.loads((folder / "nef.json").read_text())
    gt, psnr = _digits(store), store["psnr"]
    ds = ClassificationNeFDataset(folder, 0, int(store.done.sum()))   # ClassificationNeuralMNIST's class, our size
    omega = float(structure["params"]["omega_0"])
    worst = 0.0
    for row in range(len(ds)):
        item = ds[row]
        params, at = {}, 0
        for name, shp in ds.param_structure:
            size = int(np.prod(shp))
            params[name] = torch.from_numpy(np.asarray(item["params"][at:at + size]).reshape(shp))
            at += size
        xs = torch.linspace(-1, 1, 28)
        gx, gy = torch.meshgrid(xs, xs, indexing="xy")
        x = torch.stack([gx, gy], -1).reshape(-1, 2)
        for i in range(int(structure["params"]["num_layers"]) - 1):
            x = torch.sin(omega * (x @ params[f"kernel_net_{i}.linear.kernel"] + params[f"kernel_net_{i}.linear.bias"]))
        out = x @ params["output_linear.kernel"] + params["output_linear.bias"]
        image = (out * 0.30810782 + 0.13066047).reshape(28, 28, 1).permute(2, 0, 1)
        assert int(item["labels"]) == store.labels[row]
        worst = max(worst, abs(_psnr(image, gt[row]) - psnr[row]))
    return len(ds), worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("dwsnets", "nfn", "arena"):
        ap.add_argument(f"--{name}", type=Path, help=f"checkout of {name}'s repository (left out: not checked)")
    for name in ("stores", "out"):
        ap.add_argument(f"--{name}", type=Path, required=True)
    a = ap.parse_args(argv)
    from nefs import open_store

    if a.dwsnets:
        dws = open_store(a.stores / "dws")
        for layout, sub in (("mnist", "mnist-inrs"), ("fmnist", "fmnist_inrs")):
            n, worst = check_dwsnets(a.dwsnets, dws, a.out / sub, layout)
            print(f"DWSNets {layout}: INRImageDataset rendered {n} INRs, max |PSNR - stored| {worst:.5f} dB")
    if a.nfn:
        n, worst = check_nfn(a.nfn, open_store(a.stores / "nfn"), a.out / "siren_mnist_wts")
        print(f"NFN mnist: SirenDataset + Siren rendered {n} INRs, max |PSNR - stored| {worst:.5f} dB")
    if a.arena:
        n, worst = check_arena(a.arena, open_store(a.stores / "arena"), a.out / "MNIST" / "SIREN")
        print(f"arena mnist: ClassificationNeFDataset read {n} NeFs, max |PSNR - stored| {worst:.5f} dB")


if __name__ == "__main__":
    main(sys.argv[1:])
