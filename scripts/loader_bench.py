"""Rows/s of three ways to feed a store to a weight-space model (figures go to docs/evaluation.md).

    python -m scripts.loader_bench --rows 100000 --chunk 1024 --batch 256

- ``per_row``: a map-style Dataset reading ``store.params[i]`` for each index (shuffled DataLoader):
  every row decompresses its whole zarr chunk again;
- ``chunked``: ``nefs.weight_space.ChunkedRows``, whole chunks in random order, shuffled in a buffer;
- ``in_memory``: ``store.dataset()`` (everything read once up front; the read time is counted).

The store is synthetic (random SIREN-8 rows) and written to a temporary folder.
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nefs import SIREN
from nefs.modality import Metric
from nefs.stack import ParamLayout
from nefs.store import NefStore, open_store
from nefs.weight_space import ChunkedRows


class PerRow(torch.utils.data.Dataset):
    def __init__(self, store):
        self.params, self.labels = store.params, store.labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.from_numpy(np.asarray(self.params[i])), int(self.labels[i])


def make(path, rows, chunk):
    layout = ParamLayout.of(SIREN())
    store = NefStore.create_or_open(
        path, identity={"bench": 1}, num_rows=rows, layout=layout,
        rows={"labels": np.arange(rows) % 10, "signal_idx": np.arange(rows), "seed": np.zeros(rows)},
        chunk_rows=chunk, modality={"name": "image", "shape": [28, 28, 1], "mean": [0.1], "std": [0.3]},
        nef={"_target_": "nefs.SIREN", "name": "SIREN"}, metric=Metric("psnr", "dB"))
    rng = np.random.default_rng(0)
    for lo in range(0, rows, 16 * chunk):
        hi = min(rows, lo + 16 * chunk)
        store.write_rows(np.arange(lo, hi), rng.normal(size=(hi - lo, layout.size)).astype(np.float32),
                         np.zeros(hi - lo), np.zeros(hi - lo))


def rate(loader, limit_s):
    n, start = 0, time.perf_counter()
    for x, _ in loader:
        n += len(x)
        if time.perf_counter() - start > limit_s:
            break
    return n / (time.perf_counter() - start), n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100000)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--limit-s", type=float, default=20.0, help="stop a way after this long (per_row is slow)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make(Path(tmp) / "s", args.rows, args.chunk)
        store = open_store(Path(tmp) / "s")
        out = {"rows": args.rows, "chunk": args.chunk, "batch": args.batch}
        loader = torch.utils.data.DataLoader(PerRow(store), batch_size=args.batch, shuffle=True)
        out["per_row"], out["per_row_n"] = rate(loader, args.limit_s)
        chunked = torch.utils.data.DataLoader(ChunkedRows(store, batch_size=args.batch), batch_size=None)
        out["chunked"], out["chunked_n"] = rate(chunked, args.limit_s)

        def memory():
            ds = store.dataset()
            return torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True)
        t = time.perf_counter()
        loader = memory()
        r, n = rate(loader, args.limit_s)
        out["in_memory"], out["in_memory_n"] = n / (time.perf_counter() - t), n
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
