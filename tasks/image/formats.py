"""Neural datasets in the formats other projects read and write: fit-a-nef's HDF5 files (the layout of the
neural-field-arena datasets) and fitnef's own folders of per-network state dicts. DWSNets' and NFN's
layouts are in ``inr_formats``.

fit-a-nef (``trainer.save``) writes one ``nefs_<start>-<end>.hdf5`` per fitted range of NeF indices:
``params`` (n, P) float32, the flax parameters of each NeF concatenated in the order of
``param_config``, a (1,) variable-length string holding ``json.dumps([[name, shape], ...])``,
and one dataset per signal attribute (``labels``). Names are flax paths (``kernel_net_0.linear.kernel``,
``output_linear.bias`` for SIREN; ``Dense_<i>.kernel`` for MLP) and kernels are (in, out), where a
torch ``Linear.weight`` is (out, in). Beside the files its fit task stores ``nef.json`` (the NeF config its
inspect task rebuilds the model from) and ``cfg.json`` (the task config); the export writes both. The HDF5
files do not record the NeF's hyper-parameters that the shapes do not show (SIREN's omega_0) nor the
image statistics needed to decode, so an import without ``nef.json`` takes those as arguments.
h5py is needed only here (``pip install 'fitnef[formats]'``).

``state-dicts`` is fitnef's own layout, not another project's: ``<label>/nef_<row>.pth`` with fitnef's
parameter names plus a ``fitnef.json`` index (the NeF, the image statistics, each file's row).
"""
import json
import re
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from hydra.utils import instantiate

from nefs.errors import FitnefError
from nefs.modality import locator
from nefs.stack import ParamLayout
from nefs.store import NefStore

from .modality import ImageModality

FIT_A_NEF_FILE = re.compile(r"^nefs_(\d+)-(\d+)\.hdf5$")

# fit-a-nef's per-dataset image statistics and shapes (dataset/image_dataset/utils.py), for decoding its files
FIT_A_NEF_IMAGES = {
    "MNIST": {"shape": [28, 28, 1], "mean": [0.13066047], "std": [0.30810782]},
    "CIFAR10": {"shape": [32, 32, 3], "mean": [0.49186882, 0.48265392, 0.44717726],
                "std": [0.24697122, 0.24338895, 0.2615926]},
}


def _h5py():
    try:
        import h5py   # an optional extra (formats): imported where used
    except ImportError:
        raise FitnefError("fit-a-nef's HDF5 files need h5py: pip install 'fitnef[formats]'") from None
    return h5py


# -- NeF configs and parameter names ---------------------------------------------------------------
def nef_from_flax_names(config: Dict[str, tuple], omega_0: float = 8.0) -> dict:
    """The fitnef NeF config of a fit-a-nef parameter set {flax name: shape} (SIREN or MLP)."""
    names = list(config)
    if any(n.startswith("kernel_net_") for n in names):
        hidden = sorted({int(n.split(".")[0].rsplit("_", 1)[1]) for n in names if n.startswith("kernel_net_")})
        k0, out = config["kernel_net_0.linear.kernel"], config["output_linear.kernel"]
        return {"_target_": "nefs.SIREN", "name": "SIREN", "in_features": int(k0[0]), "out_features": int(out[1]),
                "hidden_dim": int(k0[1]), "num_layers": len(hidden) + 1, "omega_0": float(omega_0)}
    if names and all(n.startswith("Dense_") for n in names):
        dense = sorted({int(n.split(".")[0].split("_")[1]) for n in names})
        k0, out = config["Dense_0.kernel"], config[f"Dense_{dense[-1]}.kernel"]
        return {"_target_": "nefs.MLP", "name": "MLP", "in_features": int(k0[0]), "out_features": int(out[1]),
                "hidden_dim": int(k0[1]), "num_layers": len(dense) - 1}
    raise FitnefError(f"fit-a-nef NeF with parameters {', '.join(names[:6])}... is not supported; "
                      f"import reads SIREN and MLP files")


def flax_names(nef: dict) -> List[tuple]:
    """[(fitnef name, flax name)] in fit-a-nef's file order (layer by layer, bias before kernel)."""
    kind = str(nef.get("_target_") or nef.get("name", "")).rsplit(".", 1)[-1]
    layers = int(nef.get("num_layers", 3))
    if kind == "SIREN":
        pairs = [(f"layers.{i}", f"kernel_net_{i}.linear") for i in range(layers - 1)] + [("output", "output_linear")]
    elif kind == "MLP":
        pairs = [(f"layers.{i}", f"Dense_{i}") for i in range(layers)] + [("output", f"Dense_{layers}")]
    else:
        raise FitnefError(f"nef {kind!r}: fit-a-nef export supports SIREN and MLP stores")
    out = []
    for ours, theirs in pairs:
        out += [(f"{ours}.bias", f"{theirs}.bias"), (f"{ours}.weight", f"{theirs}.kernel")]
    return out


def _build(nef: dict) -> torch.nn.Module:
    return instantiate({k: v for k, v in nef.items() if k != "name"})


def image_modality(dataset: Optional[str], shape=None, mean=None, std=None) -> dict:
    known = FIT_A_NEF_IMAGES.get(dataset or "", {})
    info = {"name": ImageModality.name, "class": locator(ImageModality), "shape": list(shape or known.get("shape") or []),
            "mean": list(mean or known.get("mean") or []), "std": list(std or known.get("std") or [])}
    if len(info["shape"]) != 3 or not info["mean"] or not info["std"]:
        raise FitnefError(f"decoding these NeFs needs the image shape (H, W, C) and per-channel mean/std; "
                          f"give --dataset ({', '.join(FIT_A_NEF_IMAGES)}) or --shape, --mean and --std")
    return info


def _create(path, nef: dict, modality: dict, labels, signal_idx, seeds, chunk: int, source: dict) -> NefStore:
    layout = ParamLayout.of(_build(nef))
    n = len(labels)
    return NefStore.create_or_open(
        path, identity={"imported": source, "nef": nef, "modality": modality}, num_rows=n, layout=layout,
        rows={"labels": labels, "signal_idx": signal_idx, "seed": seeds}, chunk_rows=chunk, modality=modality,
        nef=nef, metric=ImageModality.metric)


# -- fit-a-nef HDF5 --------------------------------------------------------------------------------
def fit_a_nef_files(folder) -> List[tuple]:
    """[(start, end, path)] of the ``nefs_<start>-<end>.hdf5`` files in ``folder``, by start."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FitnefError(f"{folder} is not a folder of fit-a-nef files (nefs_<start>-<end>.hdf5)")
    found = []
    for p in folder.iterdir():
        m = FIT_A_NEF_FILE.match(p.name)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), p))
    if not found:
        raise FitnefError(f"no fit-a-nef files (nefs_<start>-<end>.hdf5) in {folder}")
    return sorted(found)


def import_fit_a_nef(folder, store_path, *, dataset: Optional[str] = None, shape=None, mean=None, std=None,
                     omega_0: Optional[float] = None, num_signals: Optional[int] = None) -> NefStore:
    """fit-a-nef files -> a fitnef store (rows at their NeF indices; psnr left NaN, see scripts.import_nefs).

    ``num_signals`` M: NeF i fitted signal i % M with the (i // M)-th seed (fit-a-nef's indexing);
    default: the number of NeFs (one seed). omega_0, the dataset and its statistics default to what the
    folder's nef.json / cfg.json say (fit-a-nef's default omega_0 8 without them)."""
    h5py = _h5py()
    files = fit_a_nef_files(folder)
    saved_nef, saved_cfg = (json.loads((Path(folder) / n).read_text()) if (Path(folder) / n).exists() else {}
                            for n in ("nef.json", "cfg.json"))
    if omega_0 is None:
        omega_0 = float((saved_nef.get("params") or {}).get("omega_0", 8.0))
    ours = saved_cfg.get("fitnef") or {}
    pixels = ours.get("pixels") or {}
    dataset = dataset or (saved_cfg.get("dataset") or {}).get("name")
    shape, mean, std = shape or ours.get("shape"), mean or pixels.get("mean"), std or pixels.get("std")
    chunks, config = [], None
    for start, end, path in files:
        with h5py.File(path, "r") as f:
            cfg = json.loads(f["param_config"][0].decode("utf-8") if isinstance(f["param_config"][0], bytes)
                             else f["param_config"][0])
            params = np.asarray(f["params"][:], dtype=np.float32)
            labels = np.asarray(f["labels"][:]).astype(np.int64) if "labels" in f else np.full(end - start, -1)
        cfg = {name: tuple(shape) for name, shape in cfg}
        if config is None:
            config = cfg
        elif cfg != config:
            raise FitnefError(f"{path.name} holds another NeF than {files[0][2].name} (param_config differs)")
        if params.shape[0] != end - start or len(labels) != end - start:
            raise FitnefError(f"{path.name}: {params.shape[0]} NeFs and {len(labels)} labels, its name says {end - start}")
        chunks.append((start, end, params, labels))
    nef = nef_from_flax_names(config, omega_0)
    offsets, at = {}, 0
    for name, shp in config.items():  # the file's own order, whatever it is
        size = int(np.prod(shp))
        offsets[name] = (at, size, shp)
        at += size
    total = max(e for _, e, _, _ in chunks)
    m = int(num_signals or total)
    all_labels = np.full(total, -1, dtype=np.int64)
    for start, end, _, labels in chunks:
        all_labels[start:end] = labels
    idx = np.arange(total)
    store = _create(store_path, nef, image_modality(dataset, shape, mean, std), all_labels, idx % m, idx // m,
                    chunk=max(e - s for s, e, _, _ in chunks),
                    source={"format": "fit-a-nef", "folder": str(Path(folder).absolute()), "omega_0": omega_0})
    names = dict(flax_names(nef))
    for start, end, params, _ in chunks:
        parts = []
        for ours, shp in zip(store.layout.names, store.layout.shapes):
            o, size, theirs_shape = offsets[names[ours]]
            block = params[:, o:o + size].reshape(len(params), *theirs_shape)
            if ours.endswith(".weight"):
                block = np.swapaxes(block, 1, 2)  # flax kernel (in, out) -> torch weight (out, in)
            parts.append(block.reshape(len(params), -1))
        flat = np.concatenate(parts, axis=1)
        store.write_rows(np.arange(start, end), flat, np.full(end - start, np.nan), np.zeros(end - start))
    return store


def fit_a_nef_configs(store) -> tuple:
    """(nef.json, cfg.json) as fit-a-nef's fit task stores them (config/utils.py store_cfg: its NeF config with
    ``params.output_dim``; its task config with the dataset, optimizer and scheduler), from the store."""
    nef = dict(store.attrs["nef"])
    kind = str(nef.get("_target_", "")).rsplit(".", 1)[-1]
    params = {"hidden_dim": int(nef["hidden_dim"]), "num_layers": int(nef["num_layers"]),
              "output_dim": int(nef["out_features"])}
    if kind == "SIREN":
        params["omega_0"] = float(nef["omega_0"])
    config = store.config if isinstance(store.config, dict) else {}
    task = config.get("task") or {}
    train = task.get("train") or {}
    dataset = dict(store.attrs.get("dataset") or config.get("dataset") or {})
    sched = config.get("scheduler") or {}
    opt = config.get("optimizer") or {}
    betas = opt.get("betas") or [0.9, 0.999]
    cfg = {
        "task": "image", "seeds": list(task.get("seeds") or [0]),
        "train": {"start_idx": 0, "end_idx": len(store), "num_steps": train.get("num_steps"),
                  "masked_portion": train.get("masked_portion", 1.0), "multi_gpu": False,
                  "train_to_target_psnr": train.get("target"), "check_every": train.get("check_every", 10),
                  "fixed_init": train.get("fixed_init", True), "from_meta_init": train.get("init") == "meta"},
        "dataset": {"name": dataset.get("name"), "path": dataset.get("path"),
                    "out_channels": int(nef["out_features"])},
        "scheduler": {"name": "constant_schedule", "params": {"value": sched.get("value")}}
        if str(sched.get("_target_", "")).endswith("Constant") else {"name": sched.get("_target_"), "params": sched},
        "optimizer": {"name": str(opt.get("_target_", "torch.optim.Adam")).rsplit(".", 1)[-1].lower(),
                      "params": {"b1": betas[0], "b2": betas[1], "eps": opt.get("eps", 1e-8)}},
        # not fit-a-nef's: what decodes these files (fit-a-nef takes its own per-dataset statistics)
        "fitnef": {"store": str(store.path), "shape": store.modality_info.get("shape"),
                   "pixels": {"mean": store.modality_info.get("mean"), "std": store.modality_info.get("std")}},
    }
    return {"name": kind, "params": params}, cfg


def export_fit_a_nef(store, folder, rows_per_file: Optional[int] = None) -> List[Path]:
    """The store's done rows as fit-a-nef files, one per contiguous run of at most ``rows_per_file``,
    with ``nef.json`` and ``cfg.json`` beside them."""
    h5py = _h5py()
    pairs = flax_names(store.attrs["nef"])
    shapes = dict(zip(store.layout.names, store.layout.shapes))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = np.flatnonzero(store.done)
    if len(done) == 0:
        raise FitnefError(f"store {store.path} has no done rows to export")
    per = int(rows_per_file or store.params.chunks[0])
    runs = np.split(done, np.flatnonzero(np.diff(done) != 1) + 1)
    config = []
    for ours, theirs in pairs:
        s = shapes[ours]
        config.append([theirs, list(s[::-1]) if ours.endswith(".weight") else list(s)])
    written = []
    labels = store.labels
    for run in runs:
        for lo in range(0, len(run), per):
            rows = run[lo:lo + per]
            params = store.layout.unflatten(torch.from_numpy(
                np.asarray(store.params.get_orthogonal_selection((rows, slice(None))))))
            flat = np.concatenate([(params[ours].transpose(1, 2) if ours.endswith(".weight") else params[ours])
                                   .reshape(len(rows), -1).numpy() for ours, _ in pairs], axis=1)
            path = folder / f"nefs_{rows[0]}-{rows[-1] + 1}.hdf5"
            with h5py.File(path, "w") as f:
                f.create_dataset("params", data=flat.astype(np.float32))
                text = f.create_dataset("param_config", (1,), dtype=h5py.special_dtype(vlen=str))
                text[0] = json.dumps(config)
                f.create_dataset("labels", data=labels[rows])
            written.append(path)
    nef_json, cfg_json = fit_a_nef_configs(store)
    (folder / "nef.json").write_text(json.dumps(nef_json))
    (folder / "cfg.json").write_text(json.dumps(cfg_json))
    return written


# -- folders of state dicts ------------------------------------------------------------------------
STATE_DICT_INDEX = "fitnef.json"


def _label_of(path: Path, root: Path) -> int:
    """The nearest folder between ``root`` and the file whose name is an integer: the class label."""
    for parent in path.relative_to(root).parents:
        if parent.name.isdigit():
            return int(parent.name)
    return -1


def import_state_dicts(folder, store_path, *, nef: Optional[dict] = None, dataset: Optional[str] = None,
                       shape=None, mean=None, std=None) -> NefStore:
    """A folder of ``*.pth`` / ``*.pt`` state dicts (one network each) -> a fitnef store.

    Written by ``export_state_dicts``: its ``fitnef.json`` gives the NeF, the image statistics and each
    file's row. Otherwise (DWSNets/NFN folders) files are taken in sorted path order, the label is the
    nearest integer-named folder above a file, and tensors are matched to the NeF's parameters in
    state-dict order, which must agree in shape (torch Linear layout, weight (out, in))."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FitnefError(f"{folder} is not a folder of state dicts")
    index = folder / STATE_DICT_INDEX
    if index.exists():
        meta = json.loads(index.read_text())
        nef, modality = meta["nef"], meta["modality"]
        entries = [(folder / e["file"], e["label"], e["signal_idx"], e["seed"]) for e in meta["files"]]
    else:
        files = sorted(p for p in folder.rglob("*") if p.suffix in (".pth", ".pt"))
        if not files:
            raise FitnefError(f"no state dicts (*.pth, *.pt) under {folder}")
        if nef is None:
            raise FitnefError("a state-dict folder without fitnef.json needs the NeF: give --nef and its sizes")
        modality = image_modality(dataset, shape, mean, std)
        entries = [(p, _label_of(p, folder), i, 0) for i, p in enumerate(files)]
    layout = ParamLayout.of(_build(nef))
    rows = []
    for path, *_ in entries:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = sd.get("state_dict", sd) if isinstance(sd, dict) else sd
        tensors = [v for k, v in sd.items() if k.rsplit(".", 1)[-1] in ("weight", "bias")]
        if [tuple(t.shape) for t in tensors] != list(layout.shapes):
            raise FitnefError(f"{path}: tensors {[tuple(t.shape) for t in tensors]} do not match the NeF's "
                              f"{list(layout.shapes)} ({', '.join(layout.names)})")
        rows.append(torch.cat([t.float().reshape(-1) for t in tensors]).numpy())
    n = len(entries)
    store = _create(store_path, nef, modality, np.array([e[1] for e in entries]), np.array([e[2] for e in entries]),
                    np.array([e[3] for e in entries]), chunk=min(n, 1024),
                    source={"format": "state-dicts", "folder": str(folder.absolute())})
    store.write_rows(np.arange(n), np.stack(rows), np.full(n, np.nan), np.zeros(n))
    return store


def export_state_dicts(store, folder) -> List[Path]:
    """Every done row as ``<folder>/<label>/nef_<row>.pth`` (a plain torch state dict), plus fitnef.json."""
    done = np.flatnonzero(store.done)
    if len(done) == 0:
        raise FitnefError(f"store {store.path} has no done rows to export")
    folder = Path(folder)
    labels, sig, seeds = store.labels, store.signal_idx, store.seed
    entries, written = [], []
    for row in done:
        rel = Path(str(int(labels[row]))) / f"nef_{int(row)}.pth"
        (folder / rel.parent).mkdir(parents=True, exist_ok=True)
        torch.save({k: v.clone() for k, v in store.unflatten(row).items()}, folder / rel)
        entries.append({"file": rel.as_posix(), "row": int(row), "label": int(labels[row]),
                        "signal_idx": int(sig[row]), "seed": int(seeds[row])})
        written.append(folder / rel)
    (folder / STATE_DICT_INDEX).write_text(json.dumps({
        "nef": dict(store.attrs["nef"]), "modality": dict(store.modality_info),
        "param_layout": store.layout.to_json(), "files": entries}, indent=1))
    return written
