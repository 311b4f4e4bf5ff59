"""A neural dataset as weight-space models see it: per-layer weights and biases, their symmetries.

Weight-space models (DWSNets, NFN, DeepSets over neurons) take a NeF not as one flat vector but as
its layers: weights (N, out, in) and biases (N, out). For a chain of linear layers with an
elementwise activation between them (SIREN, MLP), permuting the neurons of a hidden layer (the
rows of its weight and bias and the columns of the next layer's weight) gives another parameter
vector of the *same function*; a model that respects that symmetry does not have to learn it, and a
flat model can be taught it by augmentation (``RandomPermutation``).

Everything here works on flat rows in a store's ``ParamLayout`` order, so a transform can be
applied inside a Dataset and the result is still a row that ``store.build_model`` loads.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
import torch

from .errors import FitnefError
from .splits import split_rows
from .stack import ParamLayout


def linear_chain(layout: ParamLayout) -> List[tuple]:
    """[(weight name, bias name)] of the layout's linear layers in forward order.

    A layout is a chain when it holds only ``<layer>.weight`` (out, in) / ``<layer>.bias`` (out,)
    pairs, stored in forward order, each layer's ``in`` the previous layer's ``out``. NeFs with
    other parameters (Fourier features, multiplicative filters) have other symmetries and are refused."""
    shapes = dict(zip(layout.names, layout.shapes))
    chain, seen = [], set()
    for name in layout.names:
        prefix, _, kind = name.rpartition(".")
        if prefix in seen:
            continue
        w, b = f"{prefix}.weight", f"{prefix}.bias"
        if kind not in ("weight", "bias") or w not in shapes or b not in shapes \
                or len(shapes[w]) != 2 or shapes[b] != shapes[w][:1]:
            raise FitnefError(f"parameter {name!r} is not part of a linear layer; weight-space views need "
                              f"a chain of linear layers (SIREN, MLP), this NeF has {', '.join(layout.names)}")
        seen.add(prefix)
        chain.append((w, b))
    for (w0, _), (w1, _) in zip(chain[:-1], chain[1:]):
        if shapes[w0][0] != shapes[w1][1]:
            raise FitnefError(f"layers {w0} {shapes[w0]} and {w1} {shapes[w1]} do not chain (out != next in)")
    return chain


@dataclass
class WeightSpace:
    """N NeFs as layers: ``weights[l]`` (N, out_l, in_l), ``biases[l]`` (N, out_l)."""

    layout: ParamLayout
    weights: List[torch.Tensor]
    biases: List[torch.Tensor]

    @classmethod
    def from_flat(cls, flat, layout: ParamLayout) -> "WeightSpace":
        flat = torch.as_tensor(np.asarray(flat)) if not isinstance(flat, torch.Tensor) else flat
        if flat.ndim == 1:
            flat = flat[None]
        params = layout.unflatten(flat)
        chain = linear_chain(layout)
        return cls(layout, [params[w] for w, _ in chain], [params[b] for _, b in chain])

    def to_flat(self) -> torch.Tensor:
        """(N, P) rows in the layout's order (loadable with ``store.unflatten``)."""
        chain = linear_chain(self.layout)
        params = {}
        for (w, b), wt, bt in zip(chain, self.weights, self.biases):
            params[w], params[b] = wt, bt
        return self.layout.flatten(params)

    def __len__(self) -> int:
        return self.weights[0].shape[0]

    @property
    def hidden_sizes(self) -> List[int]:
        """Neurons of each hidden layer (the ones a permutation may reorder)."""
        return [w.shape[1] for w in self.weights[:-1]]


def permute_hidden(ws: WeightSpace, perms: Sequence[torch.Tensor]) -> WeightSpace:
    """The same functions with hidden neurons reordered: ``perms[l]`` (N, hidden_l) per NeF."""
    weights, biases = list(ws.weights), list(ws.biases)
    for layer, p in enumerate(perms):
        rows = p[:, :, None].expand(-1, -1, weights[layer].shape[2])
        weights[layer] = torch.gather(weights[layer], 1, rows)
        biases[layer] = torch.gather(biases[layer], 1, p)
        cols = p[:, None, :].expand(-1, weights[layer + 1].shape[1], -1)
        weights[layer + 1] = torch.gather(weights[layer + 1], 2, cols)
    return WeightSpace(ws.layout, weights, biases)


def random_permutations(ws: WeightSpace, generator: Optional[torch.Generator] = None) -> List[torch.Tensor]:
    n = len(ws)
    return [torch.argsort(torch.rand(n, h, generator=generator), dim=1) for h in ws.hidden_sizes]


class RandomPermutation:
    """Transform: each NeF's hidden neurons in a fresh random order (function-preserving augmentation)."""

    def __init__(self, layout: ParamLayout, generator: Optional[torch.Generator] = None):
        linear_chain(layout)  # refuse non-chains up front
        self.layout, self.generator = layout, generator

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        ws = WeightSpace.from_flat(flat, self.layout)
        out = permute_hidden(ws, random_permutations(ws, self.generator)).to_flat()
        return out.reshape(flat.shape)


class GaussianNoise:
    """Transform: add N(0, std^2) to every parameter (not function-preserving; a robustness augmentation)."""

    def __init__(self, std: float, generator: Optional[torch.Generator] = None):
        if std < 0:
            raise FitnefError(f"noise std={std}: must be >= 0")
        self.std, self.generator = float(std), generator

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return flat
        return flat + self.std * torch.randn(flat.shape, generator=self.generator, dtype=flat.dtype)


class Compose:
    def __init__(self, transforms):
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, flat):
        for t in self.transforms:
            flat = t(flat)
        return flat


# -- normalisation ---------------------------------------------------------------------------------
NORMALIZE = ("none", "param", "layer")


def normalization_stats(flat: np.ndarray, layout: ParamLayout, mode: str) -> tuple:
    """(mean, std) of shape (P,) from the given (training) rows.

    ``param``: one mean/std per parameter (the standardised flat vector a flat model wants);
    ``layer``: one per parameter tensor, so neurons of a layer share them and the hidden-neuron
    symmetry survives normalisation (what a permutation-invariant model needs)."""
    if mode not in NORMALIZE:
        raise FitnefError(f"normalize={mode!r}; allowed: {', '.join(NORMALIZE)} (or true = param)")
    flat = np.asarray(flat, dtype=np.float64)
    p = layout.size
    if mode == "none" or len(flat) == 0:
        return np.zeros(p, np.float32), np.ones(p, np.float32)
    if mode == "param":
        mean, std = flat.mean(0), flat.std(0)
    else:
        mean, std = np.empty(p), np.empty(p)
        start = 0
        for size in layout.sizes:
            part = flat[:, start:start + size]
            mean[start:start + size], std[start:start + size] = part.mean(), part.std()
            start += size
    std = np.where(std > 1e-8, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


# -- datasets --------------------------------------------------------------------------------------
def normalize_mode(normalize) -> str:
    if normalize is True:
        return "param"
    if normalize in (False, None):
        return "none"
    return str(normalize)


class NeuralDataset(torch.utils.data.Dataset):
    """(params (P,), label) of one split of a store's done rows, read once into memory.

    Transforms run on the raw parameters (so a permutation stays function-preserving), then the
    normalisation, whose statistics always come from the store's *train* split."""

    def __init__(self, store, split: Optional[str] = None, normalize=False, transform=None,
                 only_done: bool = True, fractions=(0.8, 0.1, 0.1), split_seed: int = 0):
        self.store = store
        rows = np.flatnonzero(store.done) if only_done else np.arange(len(store))
        self.mode = normalize_mode(normalize)
        splits = None
        if split is not None or self.mode != "none":
            splits = split_rows(store, rows, fractions=fractions, seed=split_seed)
        if split is not None:
            if split not in splits:
                raise FitnefError(f"split={split!r}; allowed: {', '.join(splits)}")
            rows = splits[split]
        self.rows = rows
        self.params = np.asarray(store.params.get_orthogonal_selection((rows, slice(None)))) if len(rows) \
            else np.zeros((0, store.layout.size), np.float32)
        self.labels = store.labels[rows]
        train = self.params if split == "train" else (
            np.asarray(store.params.get_orthogonal_selection((splits["train"], slice(None)))) if splits else None)
        mean, std = normalization_stats(train if train is not None else self.params, store.layout, self.mode)
        self.mean, self.std = torch.from_numpy(mean), torch.from_numpy(std)
        self.transform = transform

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        x = torch.from_numpy(self.params[i])
        if self.transform is not None:
            x = self.transform(x)
        if self.mode != "none":
            x = (x - self.mean) / self.std
        return x, int(self.labels[i])


class ChunkedRows(torch.utils.data.IterableDataset):
    """Batches (params (B, P), labels (B,)) of chosen rows, read a whole zarr chunk at a time.

    For stores too large to hold in memory: reading one row per ``__getitem__`` decompresses a
    whole chunk for every row; this reads each chunk once per epoch (chunks in random order when
    ``shuffle``, rows shuffled within a buffer of ``buffer_chunks`` chunks) and yields ready batches,
    so wrap it in ``DataLoader(ds, batch_size=None)``.

    The shuffle order is keyed by (seed, epoch). Call ``set_epoch(e)`` before each epoch, as with
    ``DistributedSampler``: the loader hands that epoch to its workers, so every epoch differs and is
    reproducible whatever ``num_workers``. Without it the epoch advances by itself in this process, and in
    ``DataLoader`` workers (fresh copies of the dataset each epoch, whose advance is lost) the order is keyed
    by the loader's per-epoch base seed instead, so epochs still differ."""

    def __init__(self, store, rows=None, batch_size: int = 256, shuffle: bool = True, buffer_chunks: int = 4,
                 transform=None, seed: int = 0):
        self.store = store
        self.rows = np.flatnonzero(store.done) if rows is None else np.sort(np.asarray(rows, dtype=np.int64))
        self.batch_size, self.shuffle = int(batch_size), bool(shuffle)
        self.buffer_chunks, self.transform, self.seed = max(1, int(buffer_chunks)), transform, int(seed)
        self.chunk = store.params.chunks[0]
        self.epoch = 0
        self._epoch_set = False   # set_epoch was called: the caller numbers the epochs

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the next pass (its shuffle order); call it before each epoch."""
        self.epoch, self._epoch_set = int(epoch), True

    def __len__(self):
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if self._epoch_set or info is None:
            rng = np.random.default_rng((self.seed, self.epoch))
        else:   # a worker's copy: the loader's base seed, new every epoch (seed - id: the same in all workers)
            rng = np.random.default_rng((self.seed, int(info.seed) - int(info.id)))
        if not self._epoch_set:
            self.epoch += 1
        ids = np.unique(self.rows // self.chunk)
        if info is not None:  # workers share the chunks, never a row twice
            ids = ids[info.id::info.num_workers]
        if self.shuffle:
            ids = rng.permutation(ids)
        labels_all = self.store.labels
        params = self.store.params
        carry_x, carry_y = np.zeros((0, params.shape[1]), np.float32), np.zeros(0, np.int64)
        for start in range(0, len(ids), self.buffer_chunks):
            xs, ys = [carry_x], [carry_y]
            for c in ids[start:start + self.buffer_chunks]:
                lo, hi = int(c) * self.chunk, min((int(c) + 1) * self.chunk, params.shape[0])
                block = np.asarray(params[lo:hi])
                mine = self.rows[(self.rows >= lo) & (self.rows < hi)]
                xs.append(block[mine - lo])
                ys.append(labels_all[mine])
            x, y = np.concatenate(xs), np.concatenate(ys)
            if self.shuffle:
                order = rng.permutation(len(x))
                x, y = x[order], y[order]
            last = start + self.buffer_chunks >= len(ids)
            n_full = len(x) if last else (len(x) // self.batch_size) * self.batch_size
            for b in range(0, n_full, self.batch_size):
                bx = torch.from_numpy(np.ascontiguousarray(x[b:b + self.batch_size]))
                if self.transform is not None:
                    bx = self.transform(bx)
                yield bx, torch.from_numpy(y[b:b + self.batch_size])
            carry_x, carry_y = x[n_full:], y[n_full:]


def canonical_signs(ws: WeightSpace) -> WeightSpace:
    """The same functions for an *odd* activation (SIREN's sine): every hidden neuron flipped so its bias is >= 0.

    sin(-z) = -sin(z), so negating a neuron's incoming weights and bias negates its output, which negating its
    outgoing weights undoes: a second symmetry besides the order of neurons. Choosing one sign per neuron
    removes it (not valid for ReLU or other non-odd activations)."""
    weights, biases = list(ws.weights), list(ws.biases)
    for layer in range(len(weights) - 1):
        s = torch.where(biases[layer] < 0, -1.0, 1.0).to(biases[layer].dtype)
        weights[layer] = weights[layer] * s[:, :, None]
        biases[layer] = biases[layer] * s
        weights[layer + 1] = weights[layer + 1] * s[:, None, :]
    return WeightSpace(ws.layout, weights, biases)


class CanonicalSigns:
    """Transform: ``canonical_signs`` on flat rows (function-preserving for odd activations only)."""

    def __init__(self, layout: ParamLayout):
        linear_chain(layout)
        self.layout = layout

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        return canonical_signs(WeightSpace.from_flat(flat, self.layout)).to_flat().reshape(flat.shape)
