"""The neural dataset on disk: a zarr v3 group that any zarr reader can open.

Layout (T = number of NeF indices, P = parameters per NeF):
  params (T, P) float32, chunked by fit chunk     labels, signal_idx, seed (T,) int64
  <metric> (T,) float32 (psnr for images)         steps (T,) int32        done (T,) bool
  attrs: param_layout, config (the identity), modality, nef, versions, metric, complete;
         run facts of the latest fit: dataset (its config, path included), shards (if sharded)
  a modality's own per-row arrays, (T, ...) (shapes: loc (T, 3), scale (T,) float32)

Crash safety: zarr's local store writes each chunk file atomically (temp file + rename); a row's
params and metrics are written before its ``done`` flag, so a killed fit leaves rows either done
and whole, or not done (refitted on resume). Processes fitting disjoint ranges into one store hold an
exclusive file lock for writes to chunks they may share; a shard whose range falls on chunk boundaries
owns its chunk files and writes them without it (``write_rows(..., exclusive=)``).
"""
import contextlib
import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import zarr

from .errors import FitnefError
from .diffs import diff_keys
from .fingerprint import record_digests
from .locking import DEFAULT_TIMEOUT_S, store_lock
from .modality import Metric, lookup
from .stack import ParamLayout
from .weight_space import NeuralDataset, WeightSpace

ROW_ARRAYS = ("labels", "signal_idx", "seed")
RESERVED = ("params", "steps", "done", *ROW_ARRAYS)  # and the store's metric


def _not_done(group, start: int, end: int) -> np.ndarray:
    """Indices in [start, end) whose ``done`` flag is not set."""
    return np.flatnonzero(~group["done"][start:end]) + start


def _inside(array, rows: np.ndarray, lo: int, hi: int) -> bool:
    """Do the chunk files that ``rows`` (sorted) touch in ``array`` hold only rows of [lo, hi)?"""
    c, n = int(array.chunks[0]), int(array.shape[0])
    return int(rows[0]) // c * c >= lo and min((int(rows[-1]) // c + 1) * c, n) <= hi


class NefStore:
    """A fitted neural dataset. Users get one from ``nefs.open_store(path)``."""

    def __init__(self, path, group: zarr.Group, lock_timeout: float = DEFAULT_TIMEOUT_S):
        # a URL stays a string (Path would fold its "//"); such a store is read-only
        self.path = str(path) if "://" in str(path) else Path(path)
        self.lock_timeout = float(lock_timeout)   # seconds to wait for another process's write lock
        self.group = group
        attrs = group.attrs
        self.layout = ParamLayout.from_json(attrs["param_layout"])
        self.config = attrs["config"]
        self.modality_info = attrs["modality"]   # the modality's own decoding facts (Modality.attrs)
        self.metric_info = Metric.from_json(attrs.get("metric", "psnr"))
        self.metric_name = self.metric_info.name
        self.signal_digests = None  # {store chunk: hash of its signals}, set by nefs.fingerprint.verify_signals

    # -- creation / resume (used by the fitting tasks) ---------------------------------------
    @classmethod
    def create_or_open(cls, path, *, identity: dict, num_rows: int, layout: ParamLayout, rows: dict,
                       chunk_rows: int, modality: dict, nef: dict, metric: Metric,
                       versions: Optional[dict] = None,
                       upgrade: Optional[Callable[[dict], dict]] = None,
                       lock_timeout: float = DEFAULT_TIMEOUT_S) -> "NefStore":
        """upgrade: brings the store's recorded identity to the caller's keys before they are compared (an
        identity written by an earlier version; tasks/identity.py ``upgrade_identity``)."""
        path = Path(path)
        identity = json.loads(json.dumps(identity))  # plain JSON types, as stored
        with store_lock(path, lock_timeout):
            if (path / "zarr.json").exists():
                group = zarr.open_group(str(path), mode="r+")
                if group.attrs.get("complete"):
                    stored = group.attrs["config"]
                    diffs = diff_keys(upgrade(stored) if upgrade else stored, identity)
                    if diffs:
                        raise FitnefError(
                            f"store {path} was fitted with a different config ({'; '.join(diffs)}); "
                            f"use another task.nef_dir or the store's config")
                    if group["params"].shape != (num_rows, layout.size):
                        raise FitnefError(f"store {path} has {group['params'].shape} params, "
                                          f"this run needs {(num_rows, layout.size)}")
                    return cls(path, group, lock_timeout)
                # a creation that died half-way: nothing was fitted yet, start it again
            chunk = max(1, min(int(chunk_rows), num_rows))
            # mode "a" + overwrite: replace our arrays, never other files in the folder
            # (e.g. meta_init/ lives inside the default store folder)
            group = zarr.open_group(str(path), mode="a", zarr_format=3)
            group.create_array("params", shape=(num_rows, layout.size), chunks=(chunk, layout.size),
                               dtype="float32", fill_value=np.nan, overwrite=True)
            for name in ROW_ARRAYS:
                arr = group.create_array(name, shape=(num_rows,), chunks=(chunk,), dtype="int64", fill_value=-1, overwrite=True)
                arr[:] = np.asarray(rows[name], dtype=np.int64)
            for name in sorted(set(rows) - set(ROW_ARRAYS)):  # a modality's own per-row arrays
                values = np.asarray(rows[name])
                if name in RESERVED or name == metric.name or values.shape[:1] != (num_rows,):
                    raise ValueError(f"row array {name!r}: reserved name or not {num_rows} rows {values.shape}")
                arr = group.create_array(name, shape=values.shape, chunks=(chunk,) + values.shape[1:],
                                         dtype=values.dtype, fill_value=0, overwrite=True)
                arr[...] = values
            group.create_array(metric.name, shape=(num_rows,), chunks=(chunk,), dtype="float32", fill_value=np.nan,
                               overwrite=True)
            group.create_array("steps", shape=(num_rows,), chunks=(chunk,), dtype="int32", fill_value=0, overwrite=True)
            group.create_array("done", shape=(num_rows,), chunks=(chunk,), dtype="bool", fill_value=False, overwrite=True)
            group.attrs.update({
                "param_layout": layout.to_json(), "config": identity, "modality": modality, "nef": nef,
                "metric": metric.to_json(), "versions": versions or {}, "format": "fitnef/1",
            })
            group.attrs["complete"] = True  # last: marks the creation as whole
            return cls(path, group, lock_timeout)

    def update_attrs(self, values: dict) -> None:
        """Set attributes that describe runs, not the NeFs (e.g. where the dataset lives, the sharding),
        under the write lock and re-reading the group first, so concurrent runs never drop each
        other's keys. Unchanged keys are not rewritten."""
        values = json.loads(json.dumps(values))
        with store_lock(self.path, self.lock_timeout):
            group = zarr.open_group(str(self.path), mode="r+")
            changed = {k: v for k, v in values.items() if group.attrs.get(k) != v}
            if changed:
                group.attrs.update(changed)
            self.group = group

    @staticmethod
    def peek_pending(path, start: int, end: int) -> np.ndarray:
        """Rows of [start, end) not yet done in the store at ``path`` (all of them if there is none yet),
        read without creating or locking anything: what a run plans its work by."""
        path = Path(path)
        if not (path / "zarr.json").exists():
            return np.arange(start, end)
        group = zarr.open_group(str(path), mode="r")
        if not group.attrs.get("complete") or "done" not in group:
            return np.arange(start, end)
        return _not_done(group, start, end)

    @staticmethod
    def peek_chunk_rows(path) -> Optional[int]:
        """Rows per chunk file of the store at ``path``, None if there is none yet (read-only, no lock): a
        plan cuts its shard at these boundaries before opening the store."""
        path = Path(path)
        if not (path / "zarr.json").exists():
            return None
        group = zarr.open_group(str(path), mode="r")
        return int(group["params"].chunks[0]) if group.attrs.get("complete") and "params" in group else None

    def pending(self, start: int, end: int) -> np.ndarray:
        """Indices in [start, end) not yet done."""
        return _not_done(self.group, start, end)

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk file of the per-row arrays (all share it): the unit of lock-free writing."""
        return int(self.group["params"].chunks[0])

    def write_rows(self, rows: np.ndarray, params: np.ndarray, metric: np.ndarray, steps: np.ndarray, *,
                   exclusive: Optional[tuple] = None) -> None:
        """Write fitted rows (sorted indices); ``done`` is set only after the data is on disk.

        ``exclusive=(lo, hi)``: the caller's promise that no other process writes rows in [lo, hi) (a
        shard's range). A write whose chunk files all lie inside that range can then take no lock: nobody
        else writes those files, and each file is replaced atomically. Any other write (a range not on
        chunk boundaries shares its edge chunks with a neighbour) holds the store's file lock."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        g = self.group
        arrays = ("params", self.metric_name, "steps", "done")
        mine = exclusive is not None and all(_inside(g[a], rows, *exclusive) for a in arrays)
        lock = contextlib.nullcontext() if mine else store_lock(self.path, self.lock_timeout)
        with lock:  # one orthogonal write per array
            record_digests(g, rows, self.signal_digests, self.chunk_rows)  # what data the rows came from
            g["params"].set_orthogonal_selection((rows, slice(None)), params.astype(np.float32))
            g[self.metric_name].set_orthogonal_selection(rows, metric.astype(np.float32))
            g["steps"].set_orthogonal_selection(rows, steps.astype(np.int32))
            g["done"].set_orthogonal_selection(rows, np.ones(len(rows), dtype=bool))

    # -- user API ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.group["params"].shape[0]

    @property
    def params(self):
        """(T, P) zarr array; slice it (``store.params[rows]``) to read numpy."""
        return self.group["params"]

    def _vec(self, name):
        return self.group[name][:]

    labels = property(lambda self: self._vec("labels"))
    signal_idx = property(lambda self: self._vec("signal_idx"))
    seed = property(lambda self: self._vec("seed"))
    done = property(lambda self: self._vec("done"))
    steps = property(lambda self: self._vec("steps"))
    metric = property(lambda self: self._vec(self.metric_name))

    def array(self, name: str):
        """A per-row array by name, as the zarr array (slice it to read numpy: ``store.array("loc")[row]``)."""
        if name not in self.group:
            raise FitnefError(f"store {self.path} has no array {name!r} "
                              f"(arrays: {', '.join(sorted(self.group.array_keys()))})")
        return self.group[name]

    def __getitem__(self, name: str) -> np.ndarray:
        """Any per-row array by name (``store["psnr"]``, a modality's own ``store["loc"]``), as numpy."""
        return self.array(name)[:]

    def __contains__(self, name: str) -> bool:
        return name in self.group

    @property
    def attrs(self) -> dict:
        """The store's attributes (config, nef, modality, metric, dataset, shards, versions), read-only."""
        return dict(self.group.attrs)

    def unflatten(self, row) -> dict:
        """One row -> {parameter name: tensor} for ``build_model().load_state_dict``."""
        values = np.asarray(self.params[int(row)]) if np.ndim(row) == 0 else np.asarray(row)
        return self.layout.unflatten(torch.from_numpy(values.astype(np.float32)))

    def build_model(self) -> torch.nn.Module:
        """The NeF module (untrained weights; load a row with ``load_state_dict(unflatten(i))``)."""
        from hydra.utils import instantiate   # ~0.5 s: reading a store's arrays needs no Hydra

        return instantiate(self._nef_kwargs())

    def _nef_kwargs(self) -> dict:
        nef = dict(self.group.attrs["nef"])
        nef.pop("name", None)
        return nef

    def model(self, row: int) -> torch.nn.Module:
        m = self.build_model()
        m.load_state_dict(self.unflatten(row))
        return m

    def _modality(self):
        """The class that wrote (and decodes) this store's rows, imported on first use."""
        return lookup(self.modality_info["name"], self.modality_info.get("class"))

    def flat_params(self, rows) -> torch.Tensor:
        """(n, P) float32 parameters of ``rows``."""
        rows = np.atleast_1d(np.asarray(rows))
        return torch.from_numpy(np.asarray(self.params.get_orthogonal_selection((rows, slice(None)))))

    def reconstruct(self, rows, device="cpu") -> torch.Tensor:
        """Decoded signals of ``rows`` on the dataset's grid, as the store's modality defines them
        (images: (n, C, H, W) in [0, 1]; shapes: (n, 64, 64, 64) occupancy probabilities)."""
        return self._modality().reconstruct(self, self.flat_params(rows), device=device)

    def __getattr__(self, op: str):
        """A modality's own row decoders, e.g. ``store.query(row, points)`` and ``store.extract_mesh(row)``
        for shapes: the names in its ``store_ops``, called as ``op(store, row, ...)``."""
        if op.startswith("_") or "modality_info" not in self.__dict__:
            raise AttributeError(op)
        cls = self._modality()
        if op not in getattr(cls, "store_ops", ()):
            raise AttributeError(f"{type(self).__name__} of {self.modality_info['name']} NeFs has no attribute {op!r} "
                                 f"(its modality's decoders: {', '.join(getattr(cls, 'store_ops', ())) or 'none'})")
        fn = getattr(cls, op)
        return lambda *args, **kwargs: fn(self, *args, **kwargs)

    def dataset(self, only_done: bool = True, split=None, normalize=False, transform=None, **split_kw):
        """Done rows as (params, label); ``split`` train/val/test (by signal, nefs.splits), ``normalize``
        True/"param"/"layer" with train-split statistics, ``transform`` on the raw params (nefs.weight_space)."""
        if split is None and not normalize and transform is None and not split_kw:
            return NefDataset(self, only_done)
        return NeuralDataset(self, split, normalize, transform, only_done, **split_kw)

    def weight_space(self, rows=None):
        """Rows (default: the done rows) as per-layer weights (N, out, in) and biases (N, out)."""
        rows = np.flatnonzero(self.done) if rows is None else rows
        return WeightSpace.from_flat(self.flat_params(rows).numpy(), self.layout)


class NefDataset(torch.utils.data.Dataset):
    """(flat params, label) pairs: a neural dataset as a plain torch Dataset."""

    def __init__(self, store: NefStore, only_done: bool = True):
        self.rows = np.flatnonzero(store.done) if only_done else np.arange(len(store))
        self.params = np.asarray(store.params[:])[self.rows]
        self.labels = store.labels[self.rows]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return torch.from_numpy(self.params[i]), int(self.labels[i])


def open_store(path, lock_timeout: float = DEFAULT_TIMEOUT_S) -> NefStore:
    """The store at ``path``: a folder, or read-only a ``.zip`` of one or a URL (http(s), s3, hf: nefs.share)."""
    from .share import open_group

    group = open_group(path)
    if group is None:
        path = Path(path)
        if not (path / "zarr.json").exists():
            raise FitnefError(f"no fitnef store at {path} (expected a zarr group with zarr.json)")
        group = zarr.open_group(str(path), mode="r")
    if "param_layout" not in group.attrs:
        raise FitnefError(f"{path} is a zarr group but not a fitnef store (no param_layout attribute)")
    if not group.attrs.get("complete"):
        raise FitnefError(f"store {path} is being created, or its creation was interrupted (rerun the fit)")
    return NefStore(path, group, lock_timeout)
