"""Export a fitnef store in a format other projects read.

    python -m scripts.export_nefs fit-a-nef <store> <folder>     # nefs_<start>-<end>.hdf5, fit-a-nef's layout
    python -m scripts.export_nefs state-dicts <store> <folder>   # <label>/nef_<row>.pth + fitnef.json

fit-a-nef's loaders (``trainer.load``, its inspect task) read the HDF5 files directly; DWSNets/NFN-style
data code reads one torch state dict per network with the label as the folder name. Only done rows
are exported.
"""
import argparse
import sys

from nefs.errors import FitnefError, reported_as_one_line

FORMATS = ("fit-a-nef", "state-dicts")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("format", help=" | ".join(FORMATS))
    ap.add_argument("store")
    ap.add_argument("folder")
    ap.add_argument("--rows-per-file", type=int, help="fit-a-nef: NeFs per file (default: the store's chunk)")
    args = ap.parse_args(argv)
    with reported_as_one_line():
        from tasks.image import formats
        from nefs.store import open_store

        if args.format not in FORMATS:
            raise FitnefError(f"unknown format {args.format!r}; allowed: {', '.join(FORMATS)}")
        store = open_store(args.store)
        if args.format == "fit-a-nef":
            files = formats.export_fit_a_nef(store, args.folder, args.rows_per_file)
        else:
            files = formats.export_state_dicts(store, args.folder)
    print(f"exported {int(store.done.sum())} NeFs of {store.path} as {len(files)} {args.format} files in {args.folder}")


if __name__ == "__main__":
    main(sys.argv[1:])
