#!/usr/bin/env python
"""Benchmark driver for the anchor system samuelepapa/fit-a-nef on a small image dataset.

Uses fit-a-nef's own pieces, the way its tasks/image/fit.py does:
  * fit_a_nef.SignalImageTrainer (its vmapped loss + jitted train_step, fast_train_model loop)
  * fit_a_nef.SharedInit(PRNGKey(seed))      (cfg.train.fixed_init=True, the repo default)
  * nef / optimizer / scheduler configs as dicts in the repo's config format
  * data laid out like dataset/image_dataset/image_data.py::load_images
    (images (N, H*W, C) standardized with dataset mean/std, coords = meshgrid(linspace(-1,1)))
  * chunking like tasks/utils.py::get_num_nefs_list: a new trainer (and a new compile) per chunk.

Prints exactly one JSON line on stdout at the end. Everything else goes to stderr.

MODERN-JAX VARIANT (run_anchor_modern.py): same CLI and JSON as run_anchor.py, but runs the
UNMODIFIED fit-a-nef source (pinned 8bb5c4d, copied next to this file in fit_a_nef/) on a
current stack (verified: jax/jaxlib 0.11.2, flax 0.12.12, optax 0.2.8, numpy 2.5) through
runtime monkeypatches applied before fit_a_nef is imported (see install_jax_compat()):
  * jax.random.KeyArray            -> jax.Array          (removed in jax 0.4.24+; imported by nef/*.py)
  * jax.core.Shape                 -> tuple               (removed; used in initializer annotations)
  * jax.core.NamedShape / as_named_shape -> tiny positional-only re-implementation
                                      (removed; used by nef/utils.py::custom_uniform -> SIREN init)
  * jax.tree_map (and tree_leaves/tree_flatten/...) -> jax.tree_util.* (removed in jax 0.6)
  * jax_threefry_partitionable=False (jax's default before 0.5) so that PRNGKey(seed) gives the
    same init bits / pixel permutations as fit-a-nef under jax 0.4.23 (--threefry-partitionable
    keeps the new default instead)
  * torch and faiss are always stubbed (fit_a_nef.metrics imports them but image fitting never uses
    them; a real torch import would also load its own CUDA libraries next to jax's); sklearn and
    h5py are stubbed only if missing (h5py is used by save/load only).
--platform cpu|gpu|cuda sets JAX_PLATFORMS before jax is imported; default: jax's default device.

Runtime patch (the clone is not modified): fit_a_nef/metrics.py imports faiss, torch,
torch.nn.functional and sklearn at module level although the image-fitting path never uses
them (only kmeans/nmi do). If those packages are missing, inert stub modules are put in
sys.modules before importing fit_a_nef; any use of them raises.
"""
import argparse
import json
import os
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# fit_a_nef/ next to this file first, then $ANCHOR_SRC, then the setup.sh work tree.
if os.path.isdir(os.path.join(HERE, "fit_a_nef")):
    DEFAULT_SRC = HERE
else:
    DEFAULT_SRC = os.environ.get("ANCHOR_SRC", "/tmp/fitanef")

# Repo defaults, copied from config/nef.py (available_nefs) at commit 8bb5c4d.
REPO_NEF_DEFAULTS = {
    "SIREN": {"hidden_dim": 8, "num_layers": 3, "omega_0": 8.0},
    "MLP": {"hidden_dim": 15, "num_layers": 3},
    "RFFNet": {"hidden_dim": 32, "num_layers": 3, "std": 3.5, "learnable_coefficients": True},
    "FourierNet": {"num_filters": 8, "hidden_dim": 8, "input_scale": 16, "weight_scale": 6.0},
    "GaborNet": {"num_filters": 10, "hidden_dim": 15, "input_scale": 256.0, "alpha": 1 / 6, "beta": 1.0,
                 "weight_scale": 6.0},
}
# config/optimizer.py available_optimizers
REPO_OPT_PARAMS = {
    "adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0},
    "adamw": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "eps_root": 0.0, "weight_decay": 1e-3},
}

STUBBED = []


def _log(*a):
    print(*a, file=sys.stderr, flush=True)


def _stub(name, attrs=()):
    """Insert an inert module; attribute access raises (except the listed names)."""
    mod = types.ModuleType(name)

    def _missing(*_a, **_k):
        raise RuntimeError(f"{name} is a stub installed by run_anchor.py (package not installed)")

    for a in attrs:
        setattr(mod, a, _missing)

    def __getattr__(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise AttributeError(f"{name}.{attr}: stub module installed by run_anchor.py")

    mod.__getattr__ = __getattr__
    sys.modules[name] = mod
    STUBBED.append(name)
    return mod


def _importable(name):
    try:
        __import__(name)
        return True
    except Exception as e:  # missing or broken (e.g. built for another numpy)
        _log(f"{name} not importable ({type(e).__name__}: {e}); stubbing it")
        return False


def install_import_stubs(real_torch=False):
    """Stubs for fit_a_nef's unused load-time imports. sklearn/h5py are imported for real first
    when they work (so their own imports never meet the torch stub); torch and faiss are stubbed
    unless --real-torch. remove_import_stubs() takes the stubs out of sys.modules again once
    fit_a_nef is imported (its module keeps its references), so no other library sees them."""
    if not _importable("sklearn.metrics"):
        sk = _stub("sklearn")
        skm = _stub("sklearn.metrics", ["normalized_mutual_info_score"])
        sk.metrics = skm
    if not _importable("h5py"):
        _stub("h5py", ["File", "special_dtype"])
    if not (real_torch and _importable("faiss")):
        _stub("faiss", ["Kmeans"])
    if not (real_torch and _importable("torch")):
        torch = _stub("torch")
        torch.Tensor = type("Tensor", (), {})  # isinstance/issubclass probes by array-api helpers
        nn = _stub("torch.nn")
        F = _stub("torch.nn.functional")
        torch.nn = nn
        nn.functional = F


def remove_import_stubs():
    for name in STUBBED:
        if isinstance(sys.modules.get(name), types.ModuleType) and getattr(sys.modules[name], "__file__", None) is None:
            del sys.modules[name]


PATCHED = []


class _NamedShape:
    """Positional-only stand-in for the removed jax.core.NamedShape (what _compute_fans uses)."""

    def __init__(self, *dims):
        self._dims = tuple(int(d) for d in dims)

    @property
    def rank(self):
        return len(self._dims)

    @property
    def total(self):
        t = 1
        for d in self._dims:
            t *= d
        return t

    def __getitem__(self, i):
        return self._dims[i]

    def __len__(self):
        return len(self._dims)

    def __iter__(self):
        return iter(self._dims)

    def __repr__(self):
        return f"NamedShape{self._dims}"


def _as_named_shape(shape):
    return shape if isinstance(shape, _NamedShape) else _NamedShape(*shape)


def install_jax_compat(threefry_partitionable=False):
    """Restore the jax names that fit-a-nef @8bb5c4d uses and newer jax removed (no-op on old jax)."""
    import jax
    import jax.core
    import jax.random
    import jax.tree_util as tu

    def setmissing(mod, name, value, label):
        try:
            getattr(mod, name)
        except AttributeError:
            setattr(mod, name, value)
            PATCHED.append(label)

    setmissing(jax.random, "KeyArray", jax.Array, "jax.random.KeyArray")
    setmissing(jax.core, "Shape", tuple, "jax.core.Shape")
    setmissing(jax.core, "NamedShape", _NamedShape, "jax.core.NamedShape")
    setmissing(jax.core, "as_named_shape", _as_named_shape, "jax.core.as_named_shape")
    for name in ("tree_map", "tree_leaves", "tree_flatten", "tree_unflatten", "tree_structure"):
        setmissing(jax, name, getattr(tu, name), f"jax.{name}")
    if not threefry_partitionable:
        try:
            if jax.config.jax_threefry_partitionable:
                jax.config.update("jax_threefry_partitionable", False)
                PATCHED.append("jax_threefry_partitionable=False")
        except AttributeError:
            pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="npz with images: uint8 (N,H,W) or (N,H,W,C)")
    p.add_argument("--n", type=int, default=512, help="fit the first N images")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--nef", default="SIREN", choices=sorted(REPO_NEF_DEFAULTS))
    p.add_argument("--hidden", type=int, default=None, help="hidden_dim (default: repo config)")
    p.add_argument("--layers", type=int, default=None, help="num_layers (default: repo config)")
    p.add_argument("--omega0", type=float, default=None, help="SIREN omega_0 (default: repo 8.0)")
    p.add_argument("--parallel", type=int, default=512, help="num_parallel_nefs per chunk")
    p.add_argument("--lr", type=float, default=1e-3, help="constant_schedule value")
    p.add_argument("--optimizer", default="adam", choices=sorted(REPO_OPT_PARAMS),
                   help="repo default is adamw (wd 1e-3) with constant lr 5e-4")
    p.add_argument("--masked-portion", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default=None, help="write the fitted params (n x P, fit-a-nef's leaf order) to this .npz")
    p.add_argument("--src", default=DEFAULT_SRC,
                   help="folder holding fit_a_nef/ (default: this file's folder, else $ANCHOR_SRC)")
    p.add_argument("--platform", default=None,
                   help="JAX_PLATFORMS to use (cpu, cuda, gpu); default: jax's default device")
    p.add_argument("--threefry-partitionable", action="store_true",
                   help="keep jax's new RNG default (init bits then differ from fit-a-nef on jax 0.4.23)")
    p.add_argument("--real-torch", action="store_true",
                   help="import the real torch/faiss if installed instead of stubbing them")
    return p.parse_args()


def load_data(path, n):
    d = np.load(path)
    imgs = d["images"]
    if imgs.ndim == 3:  # (N, H, W) grayscale -> (N, H, W, 1)
        imgs = imgs[..., None]
    x = imgs.astype(np.float64) / 255.0  # image_to_numpy: [0, 1]
    # dataset mean/std per channel over the whole dataset (as find_mean_std.py computes them)
    mean = x.mean(axis=(0, 1, 2))
    std = np.sqrt((x ** 2).mean(axis=(0, 1, 2)) - mean ** 2)
    if n > x.shape[0]:
        raise SystemExit(f"--n {n} > dataset size {x.shape[0]}")
    x = x[:n]
    H, W, C = x.shape[1:]
    norm = ((x - mean) / std).astype(np.float32)  # fast_normalize
    # load_images: (num_images, num_pixels, C) and coords (num_pixels, 2) in [-1, 1]
    signals = norm.reshape(n, H * W, C)
    gx = np.linspace(-1, 1, H)
    gy = np.linspace(-1, 1, W)
    gx, gy = np.meshgrid(gx, gy)
    coords = np.stack([gx, gy], axis=-1).reshape(H * W, 2).astype(np.float32)
    return coords, signals, (H, W, C), mean.astype(np.float32), std.astype(np.float32)


def chunk_sizes(n, p):
    out, s = [], 0
    while s < n:
        out.append(min(p, n - s))
        s += out[-1]
    return out


def main():
    args = parse_args()
    if not os.path.isdir(os.path.join(args.src, "fit_a_nef")):
        raise SystemExit(f"fit-a-nef source not found at {args.src} (run setup.sh beside this file)")
    sys.path.insert(0, args.src)
    if args.platform:
        os.environ["JAX_PLATFORMS"] = args.platform
    install_import_stubs(real_torch=args.real_torch)

    import jax
    import jax.numpy as jnp

    install_jax_compat(threefry_partitionable=args.threefry_partitionable)
    import flax
    import optax
    import fit_a_nef
    from fit_a_nef import SharedInit, SignalImageTrainer
    from fit_a_nef.metrics import psnr as repo_psnr

    remove_import_stubs()

    coords_np, signals_np, shape, mean, std = load_data(args.data, args.n)
    C = shape[2]

    params = dict(REPO_NEF_DEFAULTS[args.nef])
    if args.hidden is not None:
        params["hidden_dim"] = args.hidden
    if args.layers is not None:
        params["num_layers"] = args.layers
    if args.omega0 is not None and args.nef == "SIREN":
        params["omega_0"] = args.omega0
    params["output_dim"] = C  # load_cfgs sets nef_cfg.params.output_dim = out_channels
    nef_cfg = {"name": args.nef, "params": params}
    scheduler_cfg = {"name": "constant_schedule", "params": {"value": args.lr}}
    optimizer_cfg = {"name": args.optimizer, "params": dict(REPO_OPT_PARAMS[args.optimizer])}

    _log(f"jax {jax.__version__} jaxlib {__import__('jaxlib').__version__} "
         f"flax {flax.__version__} optax {optax.__version__} numpy {np.__version__}")
    _log(f"devices={jax.devices()} backend={jax.default_backend()}")
    _log(f"fit_a_nef from {os.path.dirname(fit_a_nef.__file__)} stubs={STUBBED} patched={PATCHED}")
    _log(f"nef_cfg={nef_cfg} opt={optimizer_cfg} sched={scheduler_cfg}")
    _log(f"data={args.data} n={args.n} shape={shape} mean={mean} std={std}")

    coords = jnp.asarray(coords_np)
    init_rng = jax.random.PRNGKey(args.seed)
    initializer = SharedInit(init_rng)  # fixed_init=True (repo default)

    compile_s = 0.0
    train_s = 0.0
    psnrs, repo_psnrs, flat = [], [], []
    n_params = None
    start = 0
    sizes = chunk_sizes(args.n, args.parallel)
    wall0 = time.perf_counter()
    for ci, m in enumerate(sizes):
        sig = jnp.asarray(signals_np[start:start + m])
        trainer = SignalImageTrainer(
            signals=sig,
            coords=coords,
            train_rng=jax.random.PRNGKey(args.seed),  # fit.py: train_rng = PRNGKey(seed)
            nef_cfg=nef_cfg,
            scheduler_cfg=scheduler_cfg,
            optimizer_cfg=optimizer_cfg,
            initializer=initializer,
            num_steps=args.steps,
            verbose=False,  # -> fast_train_model (no per-step logging / PSNR)
            masked_portion=args.masked_portion,
            images_shape=shape,
            images_mean=mean,
            images_std=std,
        )
        jax.block_until_ready(trainer.state)
        if n_params is None:
            n_params = int(sum(x[0].size for x in jax.tree_util.tree_leaves(trainer.state.params)))

        # == trainer.compile() (one call of their jitted train_step, result discarded),
        # but blocked so the warm-up step's execution does not leak into train_s.
        t0 = time.perf_counter()
        jax.block_until_ready(trainer.train_step(trainer.state, trainer.coords, trainer.signals))
        compile_s += time.perf_counter() - t0

        t0 = time.perf_counter()
        trainer.train_model()  # their fast_train_model: python loop over jitted train_step
        jax.block_until_ready(trainer.state)
        dt = time.perf_counter() - t0
        train_s += dt

        # evaluation (not timed): reconstruct all pixels, undo standardization -> [0,1] scale
        recon = np.asarray(trainer.apply_model(trainer.coords))  # (m, P, C) standardized
        rec01 = recon.astype(np.float64) * std + mean
        gt01 = signals_np[start:start + m].astype(np.float64) * std + mean
        mse = ((rec01 - gt01) ** 2).mean(axis=(1, 2))
        psnrs.append(-10.0 * np.log10(np.maximum(mse, 1e-10)))  # peak = 1.0 (no clipping)
        repo_psnrs.append(np.asarray(repo_psnr(jnp.asarray(recon), sig, mean, std)))
        _log(f"chunk {ci + 1}/{len(sizes)}: {m} nefs, train {dt:.2f}s, "
             f"psnr {psnrs[-1].mean():.3f} dB")
        if args.save:
            leaves = jax.tree_util.tree_leaves(trainer.state.params)
            flat.append(np.concatenate([np.asarray(x).reshape(m, -1) for x in leaves], axis=1))
        trainer.clean_up(clear_caches=True)  # as fit.py does between chunks
        start += m

    psnr_all = np.concatenate(psnrs)
    if args.save:
        np.savez(args.save, params=np.concatenate(flat), psnr=psnr_all)
    repo_all = np.concatenate(repo_psnrs)
    out = {
        "system": "fit-a-nef",
        "nef": args.nef,
        "hidden": params["hidden_dim"],
        "layers": params.get("num_layers"),
        "n": args.n,
        "steps": args.steps,
        "parallel": args.parallel,
        "compile_s": round(compile_s, 3),
        "train_s": round(train_s, 3),
        "nefs_per_s": round(args.n / train_s, 3),
        "psnr_mean": round(float(psnr_all.mean()), 4),
        "psnr_std": round(float(psnr_all.std()), 4),
        # extras
        "lr": args.lr,
        "optimizer": args.optimizer,
        "omega_0": params.get("omega_0"),
        "params_per_nef": n_params,
        "chunks": len(sizes),
        "psnr_repo_metric_mean": round(float(repo_all.mean()), 4),
        "wall_s": round(time.perf_counter() - wall0, 3),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "device": str(jax.devices()[0]),
        "stubs": STUBBED,
        "patched": PATCHED,
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
