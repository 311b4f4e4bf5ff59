"""The split protocols of the weight-space projects, so ``tasks.evaluate evaluate.protocol=<party>`` scores a
store the way that project's own classifier experiments split their INR dataset (docs/formats.md):

* ``standard`` (fitnef's, nefs/splits.py): by signal, MNIST 55k/5k/10k and CIFAR-10 45k/5k/10k, fractions
  otherwise; every seed of a signal in its split.
* ``dwsnets``: test = the dataset's test images; 5000 of the 60 000 training images (a seeded draw: theirs,
  sklearn's train_test_split, is unseeded) validate; one INR per image (the first seed).
* ``nfn``: by image index over train + test cut at 45000 / 50000 (classify_siren_configs/dset/*.yaml); the
  training images' augmentation copies (later seeds) train too, validation and test use the originals.
* ``arena``: by NeF index (neural_dataset classification_neural_datasets.py): MNIST 55k/5k/10k, CIFAR-10
  45k/5k/10k of the rows.

On a store of fewer signals than the party's dataset (the bundled digits, a subset), the cut points are
scaled to its size in proportion (the report says ``scaled``), so a protocol can be tried on small data.
"""
from typing import Dict, Tuple

import numpy as np

from nefs.errors import FitnefError
from nefs.splits import dataset_name, split_rows

PROTOCOLS = ("standard", "dwsnets", "nfn", "arena")
# (images in the party's dataset, first validation image, first test image), train + test order
FULL = {"mnist": 70000, "fashionmnist": 70000, "cifar10": 60000}
NFN_CUTS = (45000, 50000)
ARENA_CUTS = {"mnist": (55000, 60000), "cifar10": (45000, 50000)}
DWSNETS_TRAIN, DWSNETS_VAL = 60000, 5000


def _key(store) -> str:
    return "".join(c for c in str(dataset_name(store) or "").lower() if c.isalnum())


def _scale(cuts, full: int, n: int) -> Tuple[tuple, bool]:
    if n >= full:
        return tuple(cuts), False
    return tuple(int(round(c * n / full)) for c in cuts), True


def protocol_splits(store, rows: np.ndarray, protocol: str, fractions, seed: int) -> Tuple[Dict[str, np.ndarray], dict]:
    """({split: store rows}, what was done) for ``protocol`` over the given (done) rows."""
    if protocol not in PROTOCOLS:
        raise FitnefError(f"evaluate.protocol={protocol!r}: allowed {', '.join(PROTOCOLS)}")
    if protocol == "standard":
        return split_rows(store, rows, fractions, seed), {"protocol": "standard"}
    rows = np.asarray(rows, dtype=np.int64)
    sig, seeds = store.signal_idx[rows], store.seed[rows]
    first = seeds == (store.seed[np.flatnonzero(store.done)].min() if len(rows) else 0)
    key = _key(store)
    if protocol == "arena":
        full = FULL.get(key)
        if key not in ARENA_CUTS:
            raise FitnefError(f"evaluate.protocol=arena: the arena splits MNIST and CIFAR-10 only (this store: "
                              f"{dataset_name(store)}); use evaluate.protocol=standard")
        (val, test), scaled = _scale(ARENA_CUTS[key], full, len(store))
        out = {"train": rows[rows < val], "val": rows[(rows >= val) & (rows < test)], "test": rows[rows >= test]}
        return out, {"protocol": "arena", "cuts": [val, test], "scaled": scaled}
    m = int(store.signal_idx.max()) + 1
    full = FULL.get(key, 70000)
    if protocol == "nfn":
        (val, test), scaled = _scale(NFN_CUTS, full, m)
        out = {"train": rows[sig < val], "val": rows[first & (sig >= val) & (sig < test)],
               "test": rows[first & (sig >= test)]}
        return out, {"protocol": "nfn", "cuts": [val, test], "scaled": scaled}
    (n_train, n_val), scaled = _scale((DWSNETS_TRAIN, DWSNETS_VAL), full, m)
    train_sig = np.unique(sig[sig < n_train])
    val_sig = np.random.default_rng(seed).choice(train_sig, size=min(n_val, len(train_sig)), replace=False)
    keep = rows[first]
    s = store.signal_idx[keep]
    out = {"train": keep[(s < n_train) & ~np.isin(s, val_sig)], "val": keep[np.isin(s, val_sig)],
           "test": keep[s >= n_train]}
    return out, {"protocol": "dwsnets", "train_images": n_train, "val_images": int(len(val_sig)), "scaled": scaled}
