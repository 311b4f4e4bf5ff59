"""Export a fitnef store in a format other projects read.

    python -m scripts.export_nefs <store> <folder>               # the store's own default (its recipe's `export`)
    python -m scripts.export_nefs dwsnets <store> <folder>       # DWSNets: mnist_png_*/checkpoints/model_final.pth
    python -m scripts.export_nefs dwsnets <store> <folder> --layout fmnist   # DWSNets' Fashion-MNIST layout
    python -m scripts.export_nefs nfn <store> <folder>           # NFN: randinit_smaller[_aug<k>]_<label>s/net<idx>.pth
    python -m scripts.export_nefs fit-a-nef <store> <folder>     # nefs_<start>-<end>.hdf5 + nef.json + cfg.json
    python -m scripts.export_nefs state-dicts <store> <folder>   # fitnef's own: <label>/nef_<row>.pth + fitnef.json
    python -m scripts.export_nefs zip <store> <file.zip>         # the whole store as one zip, to upload

Each party's own dataset class reads its folder unchanged (tasks/image/inr_formats.py, tasks/image/formats.py
say which files and keys); a store whose NeF the format cannot hold is refused in one line naming what it
needs. A zip opens like the store (``nefs.open_store("x.zip")``). Only done rows are exported.
"""
import argparse
import sys

from nefs.errors import FitnefError, reported_as_one_line

FORMATS = ("dwsnets", "nfn", "fit-a-nef", "state-dicts", "zip")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("args", nargs="+", metavar="[format] store folder",
                    help=f"format: {' | '.join(FORMATS)} (default: the store's recorded export.format)")
    ap.add_argument("--layout", help="dwsnets: mnist | fmnist (default: the store's export.layout, else mnist)")
    ap.add_argument("--seed", type=int, help="dwsnets: export the NeFs of this seed only")
    ap.add_argument("--num-train", type=int, help="dwsnets: signals [0, N) are training INRs (default: the "
                    "dataset's train count: MNIST and Fashion-MNIST 60000; else all)")
    ap.add_argument("--fold-pixels", action="store_true", help="dwsnets / nfn: a store fitted with other pixel "
                    "statistics than the party's: fold them into the output layer (same images)")
    ap.add_argument("--rows-per-file", type=int, help="fit-a-nef: NeFs per file (default: the store's chunk)")
    args = ap.parse_args(argv)
    with reported_as_one_line():
        from nefs.store import open_store

        if len(args.args) not in (2, 3):
            raise FitnefError(f"expected [format] <store> <folder>, got {len(args.args)} arguments")
        fmt = args.args[0] if len(args.args) == 3 else None
        store_path, folder = args.args[-2:]
        if fmt is not None and fmt not in FORMATS:
            raise FitnefError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
        store = open_store(store_path)
        recorded = store.attrs.get("export") or {}
        fmt = fmt or recorded.get("format") or "state-dicts"
        files = export(store, fmt, folder, layout=args.layout or recorded.get("layout"), seed=args.seed,
                       num_train=args.num_train, fold_pixels=args.fold_pixels, rows_per_file=args.rows_per_file)
    if fmt == "zip":
        print(f"exported store {store.path} ({int(store.done.sum())} NeFs done) as {files[0]}")
    else:
        print(f"exported {int(store.done.sum())} NeFs of {store.path} as {len(files)} {fmt} files in {folder}")


def export(store, fmt: str, folder, *, layout=None, seed=None, num_train=None, fold_pixels=False,
           rows_per_file=None) -> list:
    """Write ``store`` in format ``fmt`` to ``folder``; the files written."""
    if fmt == "zip":
        from nefs.share import export_zip

        return [export_zip(store, folder)]
    if fmt == "state-dicts":
        from tasks.image.formats import export_state_dicts

        return export_state_dicts(store, folder)
    if fmt == "fit-a-nef":
        from tasks.image.formats import export_fit_a_nef

        return export_fit_a_nef(store, folder, rows_per_file)
    from tasks.image import inr_formats

    if fmt == "dwsnets":
        return inr_formats.export_dwsnets(store, folder, layout or "mnist", seed=seed, num_train=num_train,
                                          fold_pixels=fold_pixels)
    if fmt == "nfn":
        return inr_formats.export_nfn(store, folder, fold_pixels=fold_pixels)
    raise FitnefError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")


if __name__ == "__main__":
    main(sys.argv[1:])
