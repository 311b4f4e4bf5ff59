"""Small re-implementations of the weight-space projects' own INR loaders and INR classes, for the format
tests to run without network or their repositories. Written here from reading their code (not copied);
each says which file it follows, as of the commits the tests' notes name:

* DWSNets (AvivNavon/DWSNets, 2001d52): nn/inr.py (INR, Siren layer), experiments/utils.py
  (make_coordinates), experiments/data.py (INRDataset / INRImageDataset), experiments/mnist/
  generate_data_splits.py (the splits JSON and how it finds labels).
* NFN (AllanYangZhou/nfn): experiments/siren_utils.py (Siren, get_mgrid, get_batch_siren), experiments/
  data_utils.py (SirenDataset), nfn/common/data.py (state_dict_to_tensors).
* neural-field-arena (samuelepapa/neural-field-arena): neural_dataset/core.py (load_data_from_hdf5,
  PreloadedNeFDataset), neural_dataset/classification_neural_datasets.py (split tables); the SIREN and the
  grid of samuelepapa/fit-a-nef fit_a_nef/nef/siren.py and dataset/image_dataset/image_data.py.

What matters for the tests is kept: the files and keys each reads, how labels and indices are found, the
parameter layout, the output offset / scaling and the grid orientation; augmentation, normalisation of
weights and training code are left out.
"""
import glob
import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn


# -- DWSNets -------------------------------------------------------------------------------------
class DwsSine(nn.Module):
    """A DWSNets sine layer: a weight / bias pair applied as sin(w0 (x W^T + b))."""

    def __init__(self, dim_in, dim_out, w0=30.0):
        super().__init__()
        self.w0 = w0
        self.weight = nn.Parameter(torch.zeros(dim_out, dim_in))
        self.bias = nn.Parameter(torch.zeros(dim_out))

    def forward(self, x):
        return torch.sin(self.w0 * torch.nn.functional.linear(x, self.weight, self.bias))


class DwsINR(nn.Module):
    """DWSNets' INR: hidden width in_dim * up_scale, n_layers - 1 sine layers, a Linear, then + 0.5."""

    def __init__(self, in_dim=2, n_layers=3, up_scale=16, out_channels=1):
        super().__init__()
        hidden = in_dim * up_scale
        layers = [DwsSine(in_dim, hidden)] + [DwsSine(hidden, hidden) for _ in range(n_layers - 2)]
        self.seq = nn.Sequential(*layers, nn.Linear(hidden, out_channels))

    def forward(self, x):
        return self.seq(x) + 0.5


def dws_coordinates(shape):
    """(H*W, 2) on linspace(-1, 1): numpy's default 'xy' meshgrid, the column coordinate first."""
    xs = np.linspace(-1, 1, shape[0])
    ys = np.linspace(-1, 1, shape[1])
    gx, gy = np.meshgrid(xs, ys)
    return torch.from_numpy(np.stack([gx.ravel(), gy.ravel()]).T).float()


class DwsImageDataset:
    """DWSNets' INRImageDataset without augmentation: the split's paths and labels from the splits JSON,
    weights and biases picked by 'weight' / 'bias' in their key names, loaded into an INR and rendered."""

    def __init__(self, splits_json, split="train", image_size=(28, 28), out_channels=1):
        table = json.loads(Path(splits_json).read_text())[split]
        self.paths, self.labels = table["path"], table["label"]
        self.inr = DwsINR(out_channels=out_channels)
        self.image_size = image_size

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        sd = torch.load(self.paths[i], map_location="cpu")
        weights = {k: v for k, v in sd.items() if "weight" in k}
        biases = {k: v for k, v in sd.items() if "bias" in k}
        self.inr.load_state_dict({**weights, **biases})
        with torch.no_grad():
            img = self.inr(dws_coordinates(self.image_size))
        return img.view(*self.image_size, -1).permute(2, 0, 1), int(self.labels[i])


def dws_mnist_labels_by_glob(folder):
    """How DWSNets' generate_data_splits.py reads the MNIST folder: {path: (split, label)} from
    ``mnist_png_*/**/*.pth``, 'train' anywhere in the path meaning training, the label second to last."""
    out = {}
    for p in Path(folder).glob("mnist_png_*/**/*.pth"):
        split = "train" if "train" in p.as_posix() else "test"
        out[p.as_posix()] = (split, p.parent.parent.stem.split("_")[-2])
    return out


# -- NFN -----------------------------------------------------------------------------------------
class NfnSineLayer(nn.Module):
    def __init__(self, n_in, n_out, omega_0=30.0):
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x):
        return torch.sin(self.omega_0 * self.linear(x))


class NfnSiren(nn.Module):
    """NFN's Siren with outermost_linear: sine layers under ``net.<i>.linear``, a bare Linear last; returns
    (output, coords) as theirs does."""

    def __init__(self, in_features=2, hidden_features=32, hidden_layers=1, out_features=1):
        super().__init__()
        layers = [NfnSineLayer(in_features, hidden_features)]
        layers += [NfnSineLayer(hidden_features, hidden_features) for _ in range(hidden_layers)]
        self.net = nn.Sequential(*layers, nn.Linear(hidden_features, out_features))

    def forward(self, coords):
        return self.net(coords), coords


def nfn_mgrid(sidelen):
    """torch.meshgrid's default 'ij' over linspace(-1, 1): the row coordinate first."""
    axes = [torch.linspace(-1, 1, steps=sidelen)] * 2
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 2)


def nfn_render(sd, shape):
    """What get_batch_siren does with one network: evaluate on the grid, reshape to (H, W, C), to (C, H, W);
    the image is on [-1, 1]."""
    h, w, c = shape
    net = NfnSiren(out_features=c)
    net.load_state_dict(sd)
    with torch.no_grad():
        values = net(nfn_mgrid(h))[0]
    return values.reshape(h, w, c).permute(2, 0, 1)


class NfnSirenDataset:
    """NFN's SirenDataset: files ``<prefix>_*/*.pth`` (so prefix randinit_smaller also sweeps up the aug
    folders, the TODO in their code: one path per index survives), the index from ``net(\\d+).pth``, the
    label from the first ``_(\\d)s`` in the path, splits by index at ``split_points``."""

    def __init__(self, data_path, prefix="randinit_test", split="all", split_points=None):
        self.idx_to_path, self.idx_to_label = {}, {}
        for path in glob.glob(os.path.join(data_path, f"{prefix}_*/*.pth")):
            idx = int(re.search(r"net(\d+)\.pth", path).group(1))
            self.idx_to_path[idx] = path
            self.idx_to_label[idx] = int(re.search(r"_(\d)s", path).group(1))
        n = len(self.idx_to_path)
        if split == "all":
            self.idcs = list(range(n))
        else:
            val, test = split_points
            self.idcs = {"train": list(range(val)), "val": list(range(val, test)), "test": list(range(test, n))}[split]

    def __len__(self):
        return len(self.idcs)

    def __getitem__(self, i):
        idx = self.idcs[i]
        sd = torch.load(self.idx_to_path[idx])
        keys = list(sd)
        weights, biases = [], []
        for k in range(0, len(keys), 2):           # state_dict_to_tensors: weight, then its bias
            assert keys[k + 1].endswith("bias")
            weights.append(sd[keys[k]][None])
            biases.append(sd[keys[k + 1]][None])
        return (weights, biases), self.idx_to_label[idx]


# -- neural-field-arena / fit-a-nef --------------------------------------------------------------
ARENA_SPLITS = {"MNIST": {"train": (0, 55000), "val": (55000, 60000), "test": (60000, 70000)},
                "CIFAR10": {"train": (0, 45000), "val": (45000, 50000), "test": (50000, 60000)}}
FIT_A_NEF_STATS = {"MNIST": ([0.13066047], [0.30810782]),
                   "CIFAR10": ([0.49186882, 0.48265392, 0.44717726], [0.24697122, 0.24338895, 0.2615926])}


def arena_load(folder, start, end, keys=("params", "labels")):
    """The arena's load_data_from_hdf5: files sorted by the number after the first '_' of the stem, rows
    [start, end) gathered across them by the start/end in each file's name."""
    import h5py

    files = sorted(Path(folder).glob("*.hdf5"), key=lambda p: int(p.stem.split("_")[1].split("-")[0]))
    out = {k: [] for k in keys}
    for p in files:
        lo, hi = (int(v) for v in p.stem.split("_")[1].split("-"))
        if hi <= start or lo >= end:
            continue
        with h5py.File(p, "r") as f:
            a, b = max(start, lo) - lo, min(end, hi) - lo
            for k in keys:
                out[k].append(f[k][a:b])
    return {k: np.concatenate(v) for k, v in out.items()}


def arena_param_structure(folder):
    import h5py

    first = sorted(Path(folder).glob("*.hdf5"))[0]
    with h5py.File(first, "r") as f:
        return json.loads(f["param_config"][0])


def fit_a_nef_siren_render(flat, structure, nef_json, shape, dataset):
    """fit-a-nef's flax SIREN on its grid: kernel_net_<i>.linear layers sin(omega (x K + b)), output_linear
    x K + b (kernels (in, out)), coordinates as image_data.py makes them ('xy' meshgrid, column first),
    unnormalised with fit-a-nef's dataset statistics; (C, H, W)."""
    params, at = {}, 0
    for name, shp in structure:
        size = int(np.prod(shp))
        params[name] = torch.from_numpy(np.asarray(flat[at:at + size], dtype=np.float32).reshape(shp))
        at += size
    omega = float(nef_json["params"]["omega_0"])
    h, w, c = shape
    xs, ys = torch.linspace(-1, 1, h), torch.linspace(-1, 1, w)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    x = torch.stack([gx, gy], dim=-1).reshape(-1, 2)
    hidden = sorted({int(n.split(".")[0].rsplit("_", 1)[1]) for n in params if n.startswith("kernel_net_")})
    for i in hidden:
        x = torch.sin(omega * (x @ params[f"kernel_net_{i}.linear.kernel"] + params[f"kernel_net_{i}.linear.bias"]))
    out = x @ params["output_linear.kernel"] + params["output_linear.bias"]
    mean, std = (torch.tensor(v) for v in FIT_A_NEF_STATS[dataset])
    return (out * std + mean).reshape(h, w, c).permute(2, 0, 1)


def psnr01(pred, gt01):
    """PSNR (peak 1) of a reconstruction clamped to [0, 1], as fitnef stores it."""
    mse = ((pred.clamp(0, 1) - gt01) ** 2).mean()
    return float(-10 * torch.log10(mse))
