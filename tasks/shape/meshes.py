"""Meshes -> occupancy samples in fit-a-nef's ShapeNet layout.

A mesh is normalised into the unit cube: ``normalised = (original - loc) / scale`` with ``loc`` the
centre of its bounding box and ``scale`` its longest side, so the shape spans [-0.5, 0.5] on its
longest axis (Occupancy Networks' convention, which fit-a-nef's ShapeNet data follows). Points are
drawn uniformly in the padded cube [-BOX, BOX]^3 and near the surface (surface samples plus Gaussian
jitter); a point is inside where the generalised winding number (libigl's fast approximation) has
magnitude above 1/2, which stays meaningful for meshes with small holes or flipped orientation.

trimesh and libigl are optional dependencies (``pip install -e .[shapes]``), imported lazily.
"""
from __future__ import annotations

import importlib
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nefs.errors import FitnefError
from nefs.keyed import key

if TYPE_CHECKING:
    import trimesh

BOX = 0.55  # half-side of the sampling volume in the normalised frame: unit cube + 10% padding
MESH_EXTENSIONS = (".obj", ".off", ".ply", ".stl", ".glb", ".gltf")
NPZ_KEYS = ("random_points", "random_points_occupancy", "near_surf_points", "near_surf_points_occupancy")


class MeshWarning(UserWarning):
    """A mesh whose occupancy may be wrong (not watertight) or that was skipped."""


# the setup.cfg extra that installs each optional module (matplotlib is for pictures: inspect)
EXTRA_OF = {"matplotlib": "inspect"}


def require(module: str, pip_name: str | None = None):
    """Import an optional dependency, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRA_OF.get(module, "shapes")
        raise FitnefError(f"the shape task needs {pip_name or module}: pip install -e '.[{extra}]' "
                          f"(or pip install {pip_name or module})") from None


def load_mesh(path) -> "trimesh.Trimesh":
    """One triangle mesh from any file trimesh reads (scenes are merged); FitnefError if unusable."""
    trimesh = require("trimesh")
    try:
        mesh = trimesh.load(str(path), force="mesh")
    except Exception as e:  # noqa: BLE001 - loaders raise many types on bad files
        raise FitnefError(f"cannot read mesh {path}: {type(e).__name__}: {e}") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise FitnefError(f"cannot read mesh {path}: no triangles in it")
    return mesh


def normalisation(vertices: np.ndarray) -> tuple[np.ndarray, float]:
    """(loc, scale): bounding-box centre and longest side."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    scale = float((hi - lo).max())
    if not np.isfinite(scale) or scale <= 0:
        raise FitnefError("mesh has no extent (all vertices coincide)")
    return ((lo + hi) / 2).astype(np.float64), scale


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points uniformly on the surface (area-weighted faces, uniform barycentric coordinates)."""
    tri = vertices[faces]                                         # (F, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if area.sum() <= 0:
        raise FitnefError("mesh has zero surface area")
    face = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[face]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


EXACT_MAX_FACES = 2048  # below this libigl's exact winding number is the faster one (measured here)


def inside(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Boolean (n,): |generalised winding number| > 1/2 (libigl: exact for small meshes, else its
    Barnes-Hut approximation, which is ~100x faster than trimesh's ray-based ``contains``)."""
    igl = require("igl", "libigl")
    v = np.ascontiguousarray(vertices, dtype=np.float64)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    q = np.ascontiguousarray(points, dtype=np.float64)
    w = igl.winding_number(v, f, q) if len(f) <= EXACT_MAX_FACES else igl.fast_winding_number(v, f, q)
    return np.abs(w) > 0.5


def occupancy_samples(mesh, num_uniform: int, num_near: int, near_sigma: float, rng: np.random.Generator,
                      name: str = "mesh") -> dict:
    """The arrays of one ShapeNet-layout npz for ``mesh`` (points in the normalised frame).

    Warns (MeshWarning, naming ``name``) when the mesh is not watertight: its inside is then what
    the winding number makes of it, which is usually right for small holes and wrong for open shells.
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    try:
        loc, scale = normalisation(vertices)
    except FitnefError as e:
        raise FitnefError(f"{name}: {e}") from None
    if not mesh.is_watertight:
        warnings.warn(f"{name}: mesh is not watertight; inside/outside comes from the generalised winding "
                      f"number and may be wrong near holes", MeshWarning, stacklevel=2)
    v = (vertices - loc) / scale
    uniform = rng.uniform(-BOX, BOX, size=(num_uniform, 3))
    try:
        near = sample_surface(v, faces, num_near, rng) if num_near else np.zeros((0, 3))
    except FitnefError as e:
        raise FitnefError(f"{name}: {e}") from None
    near = near + rng.normal(scale=near_sigma, size=near.shape)
    occ = inside(v, faces, np.concatenate([uniform, near]))
    return {
        "random_points": uniform.astype(np.float32),
        "random_points_occupancy": occ[:num_uniform],
        "near_surf_points": near.astype(np.float32),
        "near_surf_points_occupancy": occ[num_uniform:],
        "loc": loc.astype(np.float32),
        "scale": np.float32(scale),
    }


def mesh_files(folder: Path, extensions=MESH_EXTENSIONS) -> list[Path]:
    """Mesh files under ``folder`` (recursive), relative paths sorted by their parts; hidden skipped."""
    ext = {e.lower() for e in extensions}
    rel = sorted((p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in ext),
                 key=lambda r: r.parts)
    return [r for r in rel if not any(part.startswith(".") for part in r.parts)]


def path_seed(rel) -> int:
    """A sampling seed that depends only on a file's relative path (adding files changes no other)."""
    return key(zlib.crc32(Path(rel).as_posix().encode()))
