"""The per-network INR datasets of weight-space papers, written and read in their authors' own layouts.

DWSNets (AvivNavon/DWSNets; Navon et al. 2023) and NFN (AllanYangZhou/nfn; Zhou et al. 2023) publish one
torch state dict per SIREN. Their data code (DWSNets ``experiments/data.py`` INRDataset / INRImageDataset,
NFN ``experiments/data_utils.py`` SirenDataset) reads what ``export_dwsnets`` / ``export_nfn`` write,
unchanged, and their INR classes (DWSNets ``nn/inr.py`` INR, NFN ``experiments/siren_utils.py`` Siren)
render it on their own grids:

* DWSNets: ``seq.{0,1,2}.{weight,bias}``, output ``seq(x) + 0.5`` on [0, 1] images, grid column first
  (fitnef's). MNIST layout ``mnist_png_{training|testing}_{label}_{idx}/checkpoints/model_final.pth`` and
  ``mnist_splits.json`` (``{split: {path, label}}`` as experiments/mnist/generate_data_splits.py writes it);
  Fashion-MNIST layout ``{train,test}/model_{idx}.pth`` (the same keys plus ``label``), ``splits.json``
  (``{split: [path, ...]}``, the archive's own) and ``fmnist_splits.json`` (``{split: {path, label}}``, what
  neural-graphs' preprocess_fmnist.py makes of it).
* NFN: ``net.{i}.linear.{weight,bias}`` per sine layer and ``net.{L}.{weight,bias}`` for the output, output on
  [-1, 1] images, grid row first ('ij'); ``randinit_smaller_{label}s/net{idx}.pth`` (idx over train + test),
  augmentation copies (the store's later seeds) in ``randinit_smaller_aug{k}_{label}s/``.

The weights are the party's parameterisation: a store fitted with its recipe (conf/experiment/) exports
bit for bit (only the NFN first layer's two input columns are swapped, exactly, for its row-first grid).
A store fitted with other pixel statistics is refused, naming the recipe, unless ``fold_pixels``: then the
output layer absorbs the difference (the same images, not the party's parameterisation).
"""
import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from nefs.errors import FitnefError
from nefs.modality import locator
from nefs.stack import ParamLayout
from nefs.store import NefStore

from .modality import ImageModality

# each party's image from its INR's raw output L: image01 = scale * L + shift
PARTIES = {
    "dwsnets": {"scale": 1.0, "shift": 0.5, "omega_0": 30.0, "recipe": "experiment=dwsnets_mnist",
                "pixels": "+task.pixels='{mean:[0.5],std:[1.0]}'"},
    "nfn": {"scale": 0.5, "shift": 0.5, "omega_0": 30.0, "recipe": "experiment=nfn_mnist",
            "pixels": "+task.pixels='{mean:[0.5],std:[0.5]}'"},
}
DWSNETS_LAYOUTS = ("mnist", "fmnist")
# images in the train part of each dataset's train + test order (DWSNets' training/testing folders)
TRAIN_COUNTS = {"mnist": 60000, "fashionmnist": 60000, "cifar10": 50000}
DWSNETS_VAL = 5000 / 60000   # experiments/mnist/generate_data_splits.py: 5000 of MNIST's 60000 training INRs
NFN_PREFIX = "randinit_smaller"


# -- what a store must be ------------------------------------------------------------------------
def siren_layers(store, party: str) -> Tuple[int, dict]:
    """(number of sine layers, nef config) of a store the party's INR class can load, else one line."""
    nef = dict(store.attrs["nef"])
    kind = str(nef.get("_target_", "")).rsplit(".", 1)[-1]
    need = (f"{party} needs a SIREN with 2 inputs and omega_0={PARTIES[party]['omega_0']:g} "
            f"(fit with {PARTIES[party]['recipe']})")
    if kind != "SIREN" or store.modality_info.get("name") != ImageModality.name:
        raise FitnefError(f"store {store.path} holds {nef.get('name', kind)} NeFs of "
                          f"{store.modality_info.get('name')}: {need}")
    if int(nef.get("in_features", 2)) != 2 or float(nef.get("omega_0", 0)) != PARTIES[party]["omega_0"]:
        raise FitnefError(f"store {store.path}: SIREN with in_features={nef.get('in_features')}, "
                          f"omega_0={nef.get('omega_0')}: {need}")
    return int(nef.get("num_layers", 3)) - 1, nef


def output_map(store, party: str, fold_pixels: bool) -> Tuple[np.ndarray, np.ndarray]:
    """(a, c) per channel with the party's raw output L = a * f + c for fitnef's output f: the identity for a
    store fitted with the party's pixels; otherwise refused unless ``fold_pixels``."""
    p = PARTIES[party]
    mean = np.asarray(store.modality_info["mean"], dtype=np.float64)
    std = np.asarray(store.modality_info["std"], dtype=np.float64)
    a, c = std / p["scale"], (mean - p["shift"]) / p["scale"]
    exact = np.allclose(a, 1.0, rtol=0, atol=1e-7) and np.allclose(c, 0.0, rtol=0, atol=1e-7)
    if not exact and not fold_pixels:
        raise FitnefError(
            f"store {store.path} was fitted on pixels standardised by mean {mean.tolist()}, std {std.tolist()}; "
            f"{party}'s INRs output {'the [0, 1] image - 0.5' if party == 'dwsnets' else 'the image on [-1, 1]'}: "
            f"fit with {p['recipe']} ({p['pixels']}), or export with --fold-pixels (same images, weights not "
            f"{party}'s parameterisation)")
    return (np.ones_like(a), np.zeros_like(c)) if exact else (a, c)


def _party_tensors(store, rows: np.ndarray, a, c, swap_xy: bool) -> List[Dict[str, torch.Tensor]]:
    """fitnef parameters of ``rows`` as [(weights, biases) per layer] with the output mapped and, for a
    row-first grid, the first layer's input columns swapped."""
    params = store.layout.unflatten(store.flat_params(rows))
    names = [n for n in store.layout.names if n.endswith(".weight")]   # layers.0 .. layers.{L-1}, output
    a_t = torch.as_tensor(a, dtype=torch.float64)
    c_t = torch.as_tensor(c, dtype=torch.float64)
    out = []
    for name in names:
        w, b = params[name], params[name[:-len("weight")] + "bias"]
        if name == "layers.0.weight" and swap_xy:
            w = w.flip(-1)
        if name == "output.weight" and not (torch.all(a_t == 1) and torch.all(c_t == 0)):
            w = (w.double() * a_t[:, None]).float()
            b = (b.double() * a_t + c_t).float()
        out.append((w, b))
    return out


def _save(tensors: Dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: (v.clone() if torch.is_tensor(v) else v) for k, v in tensors.items()}, path)


def _done_rows(store, seed: Optional[int] = None) -> np.ndarray:
    rows = np.flatnonzero(store.done)
    if seed is not None:
        rows = rows[store.seed[rows] == seed]
    if len(rows) == 0:
        raise FitnefError(f"store {store.path} has no done rows to export" + (f" with seed {seed}" if seed is not None else ""))
    return rows


def _dataset_key(store) -> str:
    name = str((store.attrs.get("dataset") or {}).get("name", ""))
    return re.sub(r"[^a-z0-9]", "", name.lower())


def train_count(store, given: Optional[int]) -> int:
    """Images in the train part of the store's dataset (train + test order): given, known, or all."""
    if given is not None:
        return int(given)
    return TRAIN_COUNTS.get(_dataset_key(store), int(store.signal_idx.max()) + 1)


# -- DWSNets -------------------------------------------------------------------------------------
def export_dwsnets(store, folder, layout: str = "mnist", *, seed: Optional[int] = None,
                   num_train: Optional[int] = None, val_fraction: float = DWSNETS_VAL,
                   fold_pixels: bool = False) -> List[Path]:
    """One ``model_final.pth`` / ``model_{idx}.pth`` per done row (one seed: DWSNets has one INR per image)
    and the split files; signals below ``num_train`` (default: the dataset's train count) are training INRs,
    of which a seeded ``val_fraction`` is the validation split."""
    if layout not in DWSNETS_LAYOUTS:
        raise FitnefError(f"dwsnets layout {layout!r}: allowed {', '.join(DWSNETS_LAYOUTS)}")
    siren_layers(store, "dwsnets")
    a, c = output_map(store, "dwsnets", fold_pixels)
    rows = _done_rows(store, seed)
    if len(np.unique(store.seed[rows])) > 1:
        raise FitnefError(f"store {store.path} holds NeFs of {len(np.unique(store.seed[rows]))} seeds; DWSNets has "
                          f"one INR per image: give --seed (one of {sorted(set(store.seed[rows].tolist()))})")
    folder = Path(folder).absolute()
    n_train = train_count(store, num_train)
    labels, sig = store.labels, store.signal_idx
    entries, written = [], []
    for lo in range(0, len(rows), 1024):
        part = rows[lo:lo + 1024]
        layers = _party_tensors(store, part, a, c, swap_xy=False)
        for j, row in enumerate(part):
            s, label = int(sig[row]), int(labels[row])
            train = s < n_train
            idx = s if train else s - n_train
            sd = {}
            for i, (w, b) in enumerate(layers):
                sd[f"seq.{i}.weight"], sd[f"seq.{i}.bias"] = w[j], b[j]
            if layout == "mnist":
                path = folder / f"mnist_png_{'training' if train else 'testing'}_{label}_{idx}" / "checkpoints" / "model_final.pth"
            else:
                sd["label"] = label
                path = folder / ("train" if train else "test") / f"model_{idx}.pth"
            _save(sd, path)
            entries.append((path, label, train))
            written.append(path)
    train_idx = [i for i, e in enumerate(entries) if e[2]]
    rng = np.random.default_rng(0)
    n_val = int(round(val_fraction * len(train_idx)))
    val = set(rng.choice(train_idx, size=n_val, replace=False).tolist()) if n_val else set()
    split = {"train": [i for i in train_idx if i not in val], "val": sorted(val),
             "test": [i for i, e in enumerate(entries) if not e[2]]}
    table = {k: {"path": [entries[i][0].as_posix() for i in v],
                 "label": [str(entries[i][1]) if layout == "mnist" else entries[i][1] for i in v]}
             for k, v in split.items()}
    if layout == "mnist":
        (folder / "mnist_splits.json").write_text(json.dumps(table))
    else:
        raw = {k: [(Path(folder.name) / entries[i][0].relative_to(folder)).as_posix() for i in v]
               for k, v in split.items()}
        (folder / "splits.json").write_text(json.dumps(raw))
        (folder / "fmnist_splits.json").write_text(json.dumps(table))
    return written


DWSNETS_MNIST_DIR = re.compile(r"^mnist_png_(training|testing)_(\d+)_(\d+)$")
DWSNETS_FMNIST_FILE = re.compile(r"^model_(\d+)\.pth$")


def _dwsnets_files(folder: Path, num_train: Optional[int]) -> List[tuple]:
    """[(path, label, signal index)] of a DWSNets folder, MNIST or Fashion-MNIST layout."""
    found = []
    for p in folder.glob("mnist_png_*/checkpoints/model_final.pth"):
        m = DWSNETS_MNIST_DIR.match(p.parent.parent.name)
        if m:
            found.append((p, int(m.group(2)), m.group(1) == "testing", int(m.group(3))))
    for part in ("train", "test"):
        for p in (folder / part).glob("model_*.pth") if (folder / part).is_dir() else ():
            m = DWSNETS_FMNIST_FILE.match(p.name)
            if m:
                found.append((p, None, part == "test", int(m.group(1))))
    if not found:
        raise FitnefError(f"no DWSNets INRs under {folder} (mnist_png_*/checkpoints/model_final.pth or "
                          f"train|test/model_<idx>.pth)")
    n_train = num_train if num_train is not None else max([i for _, _, t, i in found if not t], default=-1) + 1
    return sorted(((p, label, (n_train + i) if test else i) for p, label, test, i in found), key=lambda e: e[2])


def import_dwsnets(folder, store_path, *, shape=(28, 28, 1), num_train: Optional[int] = None) -> NefStore:
    """A DWSNets INR folder -> a fitnef store of SIREN_dwsnets NeFs (rows by signal: training then testing)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FitnefError(f"{folder} is not a folder of DWSNets INRs")
    files = _dwsnets_files(folder, num_train)
    sds = [torch.load(p, map_location="cpu", weights_only=True) for p, _, _ in files]
    layers = sorted({int(k.split(".")[1]) for k in sds[0] if k.startswith("seq.")})
    w0, wl = sds[0]["seq.0.weight"], sds[0][f"seq.{layers[-1]}.weight"]
    nef = {"_target_": "nefs.SIREN", "name": "SIREN_dwsnets", "in_features": int(w0.shape[1]),
           "out_features": int(wl.shape[0]), "hidden_dim": int(w0.shape[0]), "num_layers": len(layers),
           "omega_0": 30.0, "weight_scale": 1.0, "first_init": "hidden", "bias_init": "zeros", "output_init": "torch"}
    labels = [label if label is not None else int(sd["label"]) for (_, label, _), sd in zip(files, sds)]
    theirs = [(f"seq.{i}.weight", f"seq.{i}.bias") for i in layers]
    return _import_rows(store_path, nef, sds, theirs, labels, [s for _, _, s in files], [0] * len(files),
                        shape, "dwsnets", folder, swap_xy=False)


# -- NFN -----------------------------------------------------------------------------------------
def _seed_positions(store, rows) -> np.ndarray:
    """Each row's position in the fit's seed list (task.seeds; 0 = the original INR, k = augmentation copy k-1)."""
    seeds = (store.config.get("task") or {}).get("seeds") if isinstance(store.config, dict) else None
    seeds = list(seeds) if seeds else sorted(set(store.seed.tolist()))
    where = {int(s): k for k, s in enumerate(seeds)}
    return np.array([where[int(s)] for s in store.seed[rows]])


def export_nfn(store, folder, *, fold_pixels: bool = False) -> List[Path]:
    """``randinit_smaller[_aug{k}]_{label}s/net{idx}.pth`` per done row: the first seed is the original
    INR of each image, seed k > 0 its augmentation copy k - 1 (NFN's extra_aug)."""
    n_sine, _ = siren_layers(store, "nfn")
    a, c = output_map(store, "nfn", fold_pixels)
    rows = _done_rows(store)
    labels, sig = store.labels, store.signal_idx
    if labels[rows].min() < 0 or labels[rows].max() > 9:
        raise FitnefError(f"store {store.path}: labels {labels[rows].min()}..{labels[rows].max()}; NFN reads the "
                          f"label from the folder name's one digit (randinit_smaller_<0-9>s)")
    pos = _seed_positions(store, rows)
    folder = Path(folder)
    written = []
    for lo in range(0, len(rows), 1024):
        part = rows[lo:lo + 1024]
        layers = _party_tensors(store, part, a, c, swap_xy=True)
        for j, row in enumerate(part):
            sd = {}
            for i, (w, b) in enumerate(layers):
                key = f"net.{i}.linear" if i < n_sine else f"net.{i}"
                sd[f"{key}.weight"], sd[f"{key}.bias"] = w[j], b[j]
            k = int(pos[lo + j])
            prefix = NFN_PREFIX if k == 0 else f"{NFN_PREFIX}_aug{k - 1}"
            path = folder / f"{prefix}_{int(labels[row])}s" / f"net{int(sig[row])}.pth"
            _save(sd, path)
            written.append(path)
    return written


NFN_DIR = re.compile(rf"^{NFN_PREFIX}(?:_aug(\d+))?_(\d)s$")
NFN_FILE = re.compile(r"^net(\d+)\.pth$")


def import_nfn(folder, store_path, *, shape=None) -> NefStore:
    """An NFN SIREN folder (originals and augmentation copies) -> a fitnef store of SIREN_nfn NeFs: the
    originals are seed 0, copy k seed k + 1; rows seed-major as a fit's (row = k * M + idx)."""
    folder = Path(folder)
    found = []
    for d in (folder.iterdir() if folder.is_dir() else ()):
        m = NFN_DIR.match(d.name)
        if m and d.is_dir():
            k = 0 if m.group(1) is None else int(m.group(1)) + 1
            for p in d.glob("net*.pth"):
                f = NFN_FILE.match(p.name)
                if f:
                    found.append((k, int(f.group(1)), int(m.group(2)), p))
    if not found:
        raise FitnefError(f"no NFN SIRENs under {folder} ({NFN_PREFIX}[_aug<k>]_<label>s/net<idx>.pth)")
    m_sig = max(i for _, i, _, _ in found) + 1
    copies = max(k for k, _, _, _ in found) + 1
    found.sort(key=lambda e: e[0] * m_sig + e[1])
    sds = [torch.load(p, map_location="cpu", weights_only=True) for *_, p in found]
    keys = [k for k in sds[0] if k.endswith(".weight")]
    w0, wl = sds[0][keys[0]], sds[0][keys[-1]]
    c = int(wl.shape[0])
    nef = {"_target_": "nefs.SIREN", "name": "SIREN_nfn", "in_features": int(w0.shape[1]), "out_features": c,
           "hidden_dim": int(w0.shape[0]), "num_layers": len(keys), "omega_0": 30.0, "weight_scale": 1.0,
           "first_init": "siren", "bias_init": "torch", "output_init": "siren"}
    theirs = [(k, k[:-len("weight")] + "bias") for k in keys]
    shape = shape or ([28, 28, 1] if c == 1 else [32, 32, 3])
    rows = [k * m_sig + i for k, i, _, _ in found]
    return _import_rows(store_path, nef, sds, theirs, [lab for _, _, lab, _ in found], [i for _, i, _, _ in found],
                        [k for k, _, _, _ in found], shape, "nfn", folder, swap_xy=True,
                        rows=rows, num_rows=copies * m_sig)


# -- shared import -------------------------------------------------------------------------------
def _import_rows(store_path, nef, sds, theirs, labels, signal_idx, seeds, shape, party, folder, *, swap_xy,
                 rows=None, num_rows=None) -> NefStore:
    from hydra.utils import instantiate

    p = PARTIES[party]
    channels = int(shape[-1])
    modality = {"name": ImageModality.name, "class": locator(ImageModality), "shape": [int(s) for s in shape],
                "mean": [p["shift"]] * channels, "std": [p["scale"]] * channels}
    layout = ParamLayout.of(instantiate({k: v for k, v in nef.items() if k != "name"}))
    ours = [n for n in layout.names if n.endswith(".weight")]
    rows = list(range(len(sds))) if rows is None else rows
    n = int(num_rows or len(sds))
    lab, sig, sd_seed = (np.full(n, -1, dtype=np.int64) for _ in range(3))
    lab[rows], sig[rows], sd_seed[rows] = labels, signal_idx, seeds
    store = NefStore.create_or_open(
        store_path, identity={"imported": {"format": party, "folder": str(Path(folder).absolute())}, "nef": nef,
                              "modality": modality},
        num_rows=n, layout=layout, rows={"labels": lab, "signal_idx": sig, "seed": sd_seed}, chunk_rows=min(n, 1024),
        modality=modality, nef=nef, metric=ImageModality.metric)
    flat = []
    for sd in sds:
        parts = {}
        for name, (wk, bk) in zip(ours, theirs):
            w = sd[wk].float()
            if name == "layers.0.weight" and swap_xy:
                w = w.flip(-1)
            parts[name], parts[name[:-len("weight")] + "bias"] = w, sd[bk].float()
        if [tuple(parts[k].shape) for k in layout.names] != list(layout.shapes):
            raise FitnefError(f"{party} INRs of different sizes in {folder}")
        flat.append(torch.cat([parts[k].reshape(-1) for k in layout.names]).numpy())
    order = np.argsort(rows)
    store.write_rows(np.asarray(rows)[order], np.stack(flat)[order], np.full(len(rows), np.nan), np.zeros(len(rows)))
    return store
