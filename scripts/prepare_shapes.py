"""Meshes -> fit-a-nef's ShapeNet npz layout, for ``dataset=shapenet``:

    python -m scripts.prepare_shapes <mesh dir> <out dir> [--num-uniform 100000] [--num-near 100000]

Every mesh file under <mesh dir> (obj off ply stl glb gltf, searched recursively) becomes
``<out dir>/ShapeNet/<category>/<model>.npz`` with ``random_points`` (uniform in the normalised cube
[-0.55, 0.55]^3), ``near_surf_points`` (surface samples + N(0, near_sigma^2) jitter), their
``*_occupancy`` (inside test: generalised winding number, libigl) and the normalisation ``loc``,
``scale`` (original = normalised * scale + loc). <category> is the mesh's first sub-folder
("uncategorised" for files directly in <mesh dir>). Then:

    python -m tasks.fit task=shape dataset=shapenet dataset.path=<out dir>

A mesh that is not watertight is written with a warning naming it; one that cannot be read is
skipped with a warning. Existing outputs are kept (rerunning resumes) unless --overwrite.
Sampling is seeded by each file's relative path, so outputs do not depend on the other files.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nefs.errors import FitnefError
from tasks.shape.meshes import MeshWarning, load_mesh, mesh_files, occupancy_samples, path_seed, require

TOP_LEVEL = "uncategorised"


def target(rel: Path, taken: set) -> Path:
    """ShapeNet/<category>/<model>.npz for a mesh's relative path (unique among ``taken``)."""
    category = rel.parts[0] if len(rel.parts) > 1 else TOP_LEVEL
    inner = list(rel.parts[1:-1]) if len(rel.parts) > 1 else []
    model = "__".join(inner + [rel.stem])
    out = Path("ShapeNet") / category / f"{model}.npz"
    if out in taken:  # e.g. chair.obj and chair.ply side by side
        out = out.with_name(f"{model}_{rel.suffix[1:].lower()}.npz")
    taken.add(out)
    return out


def prepare_one(src: Path, rel: Path, dst: Path, num_uniform: int, num_near: int, near_sigma: float) -> list:
    """Write one npz atomically; returns the warnings raised on the way (as messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MeshWarning)
        try:
            mesh = load_mesh(src)
            arrays = occupancy_samples(mesh, num_uniform, num_near, near_sigma,
                                       np.random.default_rng(path_seed(rel)), name=str(src))
        except FitnefError as e:
            return [f"skipped: {e}"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, dst)
    return [str(w.message) for w in caught if issubclass(w.category, MeshWarning)]


def _job(args):
    return args[1], prepare_one(*args)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.prepare_shapes",
                                description="Turn a folder of meshes into fit-a-nef's ShapeNet npz layout.")
    p.add_argument("mesh_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--num-uniform", type=int, default=100_000, help="points uniform in the cube (default 100000)")
    p.add_argument("--num-near", type=int, default=100_000, help="points near the surface (default 100000)")
    p.add_argument("--near-sigma", type=float, default=0.01, help="jitter of near-surface points (normalised units)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="redo meshes whose npz exists")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        if a.num_uniform < 0 or a.num_near < 0 or a.num_uniform + a.num_near == 0 or a.near_sigma < 0:
            raise FitnefError("--num-uniform and --num-near must be >= 0 (not both 0), --near-sigma >= 0")
        if not a.mesh_dir.is_dir():
            raise FitnefError(f"mesh folder {a.mesh_dir} does not exist")
        rel = mesh_files(a.mesh_dir)
        if not rel:
            raise FitnefError(f"no mesh files (obj off ply stl glb gltf) under {a.mesh_dir}")
        require("trimesh"), require("igl", "libigl")
    except FitnefError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    taken: set = set()
    jobs = [(a.mesh_dir / r, r, a.out_dir / target(r, taken), a.num_uniform, a.num_near, a.near_sigma) for r in rel]
    todo = [j for j in jobs if a.overwrite or not j[2].exists()]
    bar = tqdm(total=len(todo), unit="mesh", disable=a.no_progress, dynamic_ncols=True)
    skipped = leaky = 0
    if a.workers > 1:
        pool = ProcessPoolExecutor(a.workers)
        results = pool.map(_job, todo, chunksize=4)
    else:
        pool, results = None, map(_job, todo)
    for r, notes in results:
        for note in notes:
            if note.startswith("skipped:"):
                skipped += 1
            else:
                leaky += 1
            warnings.warn(note, MeshWarning, stacklevel=1)
        bar.update(1)
    bar.close()
    if pool is not None:
        pool.shutdown()
    print(f"{len(todo) - skipped} meshes written, {len(jobs) - len(todo)} already there, {skipped} skipped "
          f"(unreadable), {leaky} not watertight; load with: python -m tasks.fit task=shape dataset=shapenet "
          f"dataset.path={a.out_dir.absolute()}")
    return 0


if __name__ == "__main__":
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"{category.__name__}: {message}\n"
    sys.exit(main())
