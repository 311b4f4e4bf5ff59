"""Import a neural dataset written by another project into a fitnef store.

    python -m scripts.import_nefs dwsnets <mnist-inrs or fmnist_inrs folder> <store> [--num-train 60000]
    python -m scripts.import_nefs nfn <siren_mnist_wts folder> <store>        # originals + aug copies as seeds
    python -m scripts.import_nefs fit-a-nef <folder of nefs_<start>-<end>.hdf5> <store> --dataset MNIST
    python -m scripts.import_nefs state-dicts <folder of *.pth> <store> [--nef siren --hidden-dim 32 ...]

DWSNets and NFN folders are read in their own layouts (tasks/image/inr_formats.py): the NeF is their SIREN
(nef=siren_dwsnets / siren_nfn), the pixel statistics their output's (0.5 / 1, 0.5 / 0.5), NFN's row-first
grid turned into fitnef's. fit-a-nef's HDF5 files do not record SIREN's omega_0 nor how the images were
standardised: the folder's nef.json / cfg.json give them where present (fitnef's export writes both), else
``--omega-0`` (default fit-a-nef's 8) and ``--dataset MNIST|CIFAR10`` (fit-a-nef's own statistics), or
``--shape H,W,C --mean ... --std ...``. With ``--data <conf/dataset name>`` (and ``--data-path``) the
store also records where the images are, so ``tasks.inspect`` works on it, and the import reconstructs
every NeF and stores its PSNR (printed at the end). The store then works with build_model,
reconstruct, tasks.inspect and tasks.evaluate like a fitted one.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from nefs.errors import FitnefError, reported_as_one_line
from tasks.image import formats
from tasks.image.inspect import load_images
from tasks.image.modality import psnr

FORMATS = ("dwsnets", "nfn", "fit-a-nef", "state-dicts")
ROOT = Path(__file__).resolve().parents[1]


def _numbers(text, kind=float, flag="--mean"):
    if text is None:
        return None
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError:
        raise FitnefError(f"{flag}={text!r}: expected comma-separated numbers, e.g. 0.5 or 0.5,0.4,0.3") from None


def dataset_record(name: str, path=None) -> dict:
    """conf/dataset/<name>.yaml as a store's ``dataset`` attribute (what tasks.inspect reloads)."""
    conf = ROOT / "conf" / "dataset" / f"{name}.yaml"
    if not conf.exists():
        known = ", ".join(sorted(p.stem for p in conf.parent.glob("*.yaml")))
        raise FitnefError(f"--data {name!r}: no conf/dataset/{name}.yaml; known: {known}")
    record = OmegaConf.to_container(OmegaConf.load(conf), resolve=True)
    if path is not None:
        record["path"] = str(Path(path).absolute())
    return record


def store_psnr(store, batch_size: int = 1024) -> np.ndarray:
    """Reconstruct every done row against the recorded dataset and write its PSNR into the store."""
    images = load_images(store)
    rows = np.flatnonzero(store.done)
    sig = store.signal_idx
    if sig[rows].max() >= len(images):
        raise FitnefError(f"the NeFs index {sig[rows].max() + 1} signals, the dataset has {len(images)}")
    values = np.empty(len(rows), np.float32)
    for lo in range(0, len(rows), batch_size):
        part = rows[lo:lo + batch_size]
        pred = store.reconstruct(part)
        gt = torch.from_numpy(images[sig[part]]).permute(0, 3, 1, 2).float() / 255.0
        values[lo:lo + len(part)] = psnr(pred, gt).numpy()
    params = np.asarray(store.params.get_orthogonal_selection((rows, slice(None))))
    store.write_rows(rows, params, values, store.steps[rows])
    return values


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("format", help=" | ".join(FORMATS))
    ap.add_argument("source", help="folder to read")
    ap.add_argument("store", help="fitnef store to write")
    ap.add_argument("--dataset", help="fit-a-nef dataset name for the image shape and statistics (MNIST, CIFAR10)")
    ap.add_argument("--shape", help="H,W,C of the images")
    ap.add_argument("--mean", help="per-channel mean on [0, 1] the NeFs' targets were standardised with")
    ap.add_argument("--std", help="per-channel std")
    ap.add_argument("--omega-0", type=float, help="SIREN omega_0 (fit-a-nef: nef.json's, else 8)")
    ap.add_argument("--num-train", type=int, help="dwsnets: training INRs come first (default: as many as found)")
    ap.add_argument("--num-signals", type=int, help="fit-a-nef: signals per seed (default: all rows, one seed)")
    ap.add_argument("--nef", choices=["siren", "mlp"], help="state dicts without fitnef.json: the NeF type")
    ap.add_argument("--hidden-dim", type=int, default=32)
    ap.add_argument("--num-layers", type=int, default=3)
    ap.add_argument("--in-features", type=int, default=2)
    ap.add_argument("--out-features", type=int, default=1)
    ap.add_argument("--data", help="conf/dataset name of the images, to record and to compute PSNR (e.g. mnist)")
    ap.add_argument("--data-path", help="where that dataset lives (dataset.path)")
    args = ap.parse_args(argv)
    with reported_as_one_line():
        kw = dict(dataset=args.dataset, shape=_numbers(args.shape, int, "--shape"), mean=_numbers(args.mean),
                  std=_numbers(args.std, flag="--std"))
        if args.format in ("dwsnets", "nfn"):
            from tasks.image import inr_formats

            shape = kw["shape"]
            store = (inr_formats.import_dwsnets(args.source, args.store, shape=shape or (28, 28, 1),
                                                num_train=args.num_train) if args.format == "dwsnets"
                     else inr_formats.import_nfn(args.source, args.store, shape=shape))
        elif args.format == "fit-a-nef":
            store = formats.import_fit_a_nef(args.source, args.store, omega_0=args.omega_0,
                                             num_signals=args.num_signals, **kw)
        elif args.format == "state-dicts":
            nef = None
            if args.nef:
                nef = {"_target_": f"nefs.{args.nef.upper()}", "name": args.nef.upper(), "hidden_dim": args.hidden_dim,
                       "num_layers": args.num_layers, "in_features": args.in_features,
                       "out_features": args.out_features}
                if args.nef == "siren":
                    nef["omega_0"] = 8.0 if args.omega_0 is None else args.omega_0
            store = formats.import_state_dicts(args.source, args.store, nef=nef, **kw)
        else:
            raise FitnefError(f"unknown format {args.format!r}; allowed: {', '.join(FORMATS)}")
        line = f"imported {int(store.done.sum())} NeFs ({store.attrs['nef']['name']}) into {store.path}"
        if args.data:
            store.update_attrs({"dataset": dataset_record(args.data, args.data_path)})
            values = store_psnr(store)
            line += f": psnr {values.mean():.4f} ± {values.std():.4f} dB"
    print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
