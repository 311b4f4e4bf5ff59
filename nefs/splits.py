"""Train / validation / test splits of a neural dataset, by signal, never by row.

A store holds K NeFs of each signal (one per seed). Splitting rows would put fits of one image in
both train and test, and a classifier could score by recognising the image rather than reading
weights; so every split is a set of *signals* and takes all their rows. Datasets with a standard
split use it (the split published neural datasets use), any other is split by fractions with a
seeded permutation of its signals.
"""
from typing import Dict, Optional

import numpy as np

from .errors import FitnefError

SPLITS = ("train", "val", "test")

# dataset name (its conf/dataset/*.yaml `name`) -> (signals in the full set, first val signal, first test
# signal), on the signal order of its reader: MNIST's 60k train images then its 10k test images, the last
# 5k of train held out for validation; CIFAR-10's five train batches then the test batch, likewise.
STANDARD_SPLITS = {"MNIST": (70000, 55000, 60000), "CIFAR10": (60000, 45000, 50000)}


def dataset_name(store) -> Optional[str]:
    ds = store.attrs.get("dataset") or (store.config or {}).get("dataset") or {}
    return ds.get("name")


def split_signals(signal_idx: np.ndarray, name: Optional[str] = None, fractions=(0.8, 0.1, 0.1),
                  seed: int = 0) -> Dict[str, np.ndarray]:
    """{split: sorted signal ids} over the distinct ids in ``signal_idx``."""
    signals = np.unique(np.asarray(signal_idx))
    std = STANDARD_SPLITS.get(name)
    if std is not None and len(signals) and signals.max() < std[0]:
        _, val, test = std
        parts = {"train": signals[signals < val], "val": signals[(signals >= val) & (signals < test)],
                 "test": signals[signals >= test]}
        if all(len(p) for p in parts.values()):  # a subset inside one part (e.g. the first 5k) uses fractions
            return parts
    fr = np.asarray([float(f) for f in fractions], dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or not 0.999 < fr.sum() < 1.001:
        raise FitnefError(f"split fractions={list(fractions)}: need three non-negative numbers "
                          f"(train, val, test) that sum to 1")
    order = np.random.default_rng(seed).permutation(signals)
    n_train = int(round(fr[0] * len(order)))
    n_val = int(round(fr[1] * len(order)))
    return {"train": np.sort(order[:n_train]), "val": np.sort(order[n_train:n_train + n_val]),
            "test": np.sort(order[n_train + n_val:])}


def split_rows(store, rows: np.ndarray, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> Dict[str, np.ndarray]:
    """{split: the given store rows whose signal is in it}."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise FitnefError(f"store {store.path} has no done rows to split; fit it first (python -m tasks.fit)")
    sig = store.signal_idx[rows]
    by_signal = split_signals(sig, dataset_name(store), fractions, seed)
    return {k: rows[np.isin(sig, v)] for k, v in by_signal.items()}


def check_classes(store, splits: Dict[str, np.ndarray], need=("train", "val", "test")) -> np.ndarray:
    """The classes of the store's rows; every split in ``need`` must have every class."""
    labels = store.labels
    classes = np.unique(labels[np.concatenate([splits[k] for k in splits])])
    if len(classes) and classes[0] < 0:
        raise FitnefError(f"store {store.path} has rows without a label ({classes[0]}); a classifier needs labels")
    for name in need:
        have = np.unique(labels[splits[name]])
        missing = np.setdiff1d(classes, have)
        if len(missing):
            raise FitnefError(f"the {name} split ({len(splits[name])} rows) has no rows of class(es) "
                              f"{', '.join(map(str, missing[:10]))}; fit more signals or change the split fractions")
    return classes
