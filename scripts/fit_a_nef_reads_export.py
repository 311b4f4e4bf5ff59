"""Check an exported store with fit-a-nef's own code (run with the anchor kit's venv, ../shared/anchor).

    python -m scripts.export_nefs fit-a-nef outputs/fig/siren_shared /tmp/fan
    python -c "..."   # save fitnef's outputs of those rows: coords (P, 2), pred (n, P, 1) -> ref.npz
    /tmp/anchor-venv/bin/python scripts/fit_a_nef_reads_export.py /tmp/fan/nefs_0-256.hdf5 ref.npz

Reads the file as fit-a-nef's trainer.load does (h5py + fit_a_nef.utils.unflatten_params), evaluates its
flax SIREN (hidden 8, 3 layers, omega_0 8) on the coordinates and prints the largest difference to fitnef's
outputs. Not imported by anything; needs the anchor kit (jax, flax, /tmp/fitanef).
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANCHOR = os.environ.get("ANCHOR_KIT", os.path.join(ROOT, "..", "shared", "anchor"))  # the kit beside the repo
SRC = os.environ.get("ANCHOR_SRC", "/tmp/fitanef")


def main(hdf5_path: str, ref_path: str) -> None:
    sys.path[:0] = [ANCHOR, SRC]
    import run_anchor

    run_anchor.install_import_stubs()  # fit_a_nef imports torch/faiss/sklearn at load time; unused here
    import h5py
    import jax
    import jax.numpy as jnp
    import numpy as np
    from fit_a_nef.nef.siren import SIREN
    from fit_a_nef.utils import unflatten_params

    with h5py.File(hdf5_path, "r") as f:  # as fit-a-nef's trainer.load reads its files
        config = json.loads(f["param_config"][0].decode("utf-8"))
        comb = f["params"][:]
    params = unflatten_params(config, comb)
    model = SIREN(output_dim=1, hidden_dim=8, num_layers=3, omega_0=8.0)
    ref = np.load(ref_path)
    out = jax.vmap(lambda p: model.apply({"params": p}, jnp.asarray(ref["coords"])))(params)
    print(json.dumps({"nefs": int(comb.shape[0]), "max_abs_diff": float(np.abs(np.asarray(out) - ref["pred"]).max())}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
