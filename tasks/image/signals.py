"""A dataset's images as the fit reads them: uint8 (H, W, C) each, decoded only when a row asks for them.

Two kinds. ``ArrayImages``: sets that torchvision hands over as one array (MNIST, CIFAR, SVHN, STL10) or
that are generated (digits); they are already in memory. ``LazyImages``: sets of image files (folders,
ImageNet, CelebA, any torchvision dataset read item by item); an image is decoded the first time one
of the process's rows needs it, many at once on a thread pool sized by the CPUs the process may use
(PIL releases the GIL while it decodes and resizes), and kept for the rest of the run. A shard thus
opens and holds only its own range's files.

What is dataset-wide (the normalisation statistics, the image shape and channel count) must be the
same in every process, yet must not cost each shard a pass over the whole set: ``LazyImages`` takes it
from an evenly spaced sample of at most ``STATS_SAMPLE`` images (all of them in smaller sets) and keeps
it in a small JSON file beside the data (or under the user's cache folder when the data's folder is
read-only), keyed by the dataset's options and its list of files, so that later processes read it.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..data_source import read_cached, write_cached

log = logging.getLogger(__name__)

STATS_SAMPLE = 1024        # images whose pixels give the dataset's mean/std (all of them when fewer)
PROGRESS_AFTER = 256       # show a progress bar for decoding at least this many images (after 1 s)


def pixel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 images (..., C) on the [0, 1] scale (float64), from each channel's
    histogram of the 256 values: exact, and without a float copy of the images (STL10's unlabeled split
    would need 22 GB)."""
    c = images.shape[-1]
    flat = images.reshape(-1, c)
    values = np.arange(256, dtype=np.float64) / 255.0
    mean, std = np.empty(c), np.empty(c)
    for ch in range(c):
        counts = np.bincount(flat[:, ch], minlength=256).astype(np.float64)
        n = counts.sum()
        mean[ch] = counts @ values / n
        std[ch] = np.sqrt(max(counts @ values ** 2 / n - mean[ch] ** 2, 1e-12))
    return mean, std


def decode_workers() -> int:
    """Threads for decoding: as many as PyTorch may use here (entry points size it by the allowed CPUs)."""
    import torch

    return max(1, torch.get_num_threads())


class ImageSignals:
    """M images of one shape (H, W, C), uint8, with an int64 label each (-1: none)."""

    shape: tuple
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, idx) -> np.ndarray:
        """(n, H, W, C) uint8 images ``idx``."""
        raise NotImplementedError

    def prefetch(self, idx) -> None:
        """Make images ``idx`` ready (decoded in parallel); a no-op for sets already in memory."""

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Dataset-wide per-channel (mean, std) on [0, 1], the same in every process."""
        raise NotImplementedError

    @property
    def images(self) -> np.ndarray:
        """All M images at once (inspect and scripts; a fit reads only its rows)."""
        return self.read(np.arange(len(self)))


class ArrayImages(ImageSignals):
    def __init__(self, images: np.ndarray, labels: np.ndarray):
        assert images.dtype == np.uint8 and images.ndim == 4, (images.dtype, images.shape)
        assert labels.shape == (images.shape[0],), (labels.shape, images.shape)
        self.array = images
        self.labels = np.asarray(labels, np.int64)
        self.shape = tuple(images.shape[1:])

    def read(self, idx) -> np.ndarray:
        return self.array[np.asarray(idx)]

    @property
    def images(self) -> np.ndarray:
        return self.array

    def stats(self):
        return pixel_stats(self.array)


class LazyImages(ImageSignals):
    """Images decoded on demand by ``decode(i)`` -> (H, W, C) uint8, kept once decoded.

    ``describe`` is called once, on the sample, to settle what every image must be: it gets the decoded
    sample images and returns the dataset-wide record (``shape`` included) that ``decode`` is then held to.
    """

    def __init__(self, name: str, labels: np.ndarray, decode: Callable[[int, Optional[dict]], np.ndarray],
                 key: dict, cache_folder: Optional[Path], describe: Callable[[list], dict],
                 workers: Optional[int] = None):
        self.name = name
        self.labels = np.asarray(labels, np.int64)
        self._decode = decode
        self._key = key
        self._cache_folder = cache_folder
        self._describe = describe
        self._workers = workers
        self._decoded: dict = {}
        self._record: Optional[dict] = None

    # -- dataset-wide values -------------------------------------------------------------------------
    @property
    def record(self) -> dict:
        """{shape, mean, std, ...}: read from the cache beside the data, else taken from the sample."""
        if self._record is None:
            self._record = self._cached() or self._from_sample()
        return self._record

    @property
    def shape(self) -> tuple:
        return tuple(self.record["shape"])

    def stats(self):
        return np.asarray(self.record["mean"], np.float64), np.asarray(self.record["std"], np.float64)

    def _cached(self) -> Optional[dict]:
        return read_cached(self.name, self._key, self._cache_folder, ("shape", "mean", "std"))

    def _from_sample(self) -> dict:
        m = len(self)
        sample = np.unique(np.linspace(0, m - 1, min(m, STATS_SAMPLE)).round().astype(np.int64))
        images = self._run(sample, None, f"{self.name}: sampling {len(sample)} images for the dataset's statistics")
        record = self._describe(images)
        # each sample image held to the settled record (a gray one converted in a color set, or a size or
        # channel mismatch reported with its file)
        stack = np.stack([img if tuple(img.shape) == tuple(record["shape"]) else self._decode(k, record)
                          for k, img in zip(sample.tolist(), images)])
        mean, std = pixel_stats(stack)
        record = {**record, "mean": mean.tolist(), "std": std.tolist(), "count": m, "sample": len(sample)}
        self._store(record)
        return record

    def _store(self, record: dict) -> None:
        write_cached(self.name, self._key, self._cache_folder, record)

    # -- the images ----------------------------------------------------------------------------------
    def _run(self, idx: np.ndarray, record: Optional[dict], what: str) -> list:
        """Decode ``idx`` on the pool, in order, with a progress bar for long runs."""
        workers = min(self._workers or decode_workers(), max(1, len(idx)))
        decode = lambda k: self._decode(int(k), record)  # noqa: E731
        if workers == 1 or len(idx) < 8:
            return [decode(k) for k in idx]
        from tqdm import tqdm

        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(decode, idx.tolist())
            return list(tqdm(results, total=len(idx), desc=what, unit="img", delay=1.0, leave=False,
                             disable=len(idx) < PROGRESS_AFTER))

    def prefetch(self, idx) -> None:
        want = np.unique(np.asarray(idx, np.int64).reshape(-1))
        missing = np.asarray([k for k in want.tolist() if k not in self._decoded], np.int64)
        if not len(missing):
            return
        record = self.record
        for k, img in zip(missing.tolist(), self._run(missing, record, f"decoding {self.name}")):
            self._decoded[k] = img

    def read(self, idx) -> np.ndarray:
        idx = np.asarray(idx, np.int64).reshape(-1)
        self.prefetch(idx)
        out = np.empty((len(idx), *self.shape), np.uint8)
        for j, k in enumerate(idx.tolist()):
            out[j] = self._decoded[k]
        return out
