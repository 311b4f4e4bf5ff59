"""Shape datasets: occupancy samples (points in the normalised frame + inside/outside) per shape.

``load()`` returns a :class:`ShapeData`: labels, the per-shape normalisation (``loc``, ``scale``:
original = normalised * scale + loc) and a reader giving one shape's points and occupancies. ShapeNet
is read lazily, a chunk of files at a time (all of it would not fit in memory); a mesh folder is sampled
lazily too, a mesh when one of the process's rows needs it (then kept); the bundled primitives are made
once into memory. The per-shape frames, which every row of the store records, are dataset-wide values:
read once from every file, then cached beside the data (tasks/data_source.py) so that a shard opens only
its own files. Problems with the user's data are one-line
:class:`nefs.errors.FitnefError`s raised from ``load()`` (not ``__init__``, which Hydra wraps).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from nefs.errors import FitnefError
from nefs.keyed import key

from ..data_source import DataSource, data_path_note, listing_key, read_cached, write_cached
from .meshes import (MESH_EXTENSIONS, NPZ_KEYS, load_mesh, mesh_files, normalisation, occupancy_samples, path_seed,
                     require)

log = logging.getLogger(__name__)

# fit-a-nef's ShapeNet selection (dataset/shape_dataset/shapenet.py): label = position in this list.
FIT_A_NEF_CATEGORIES = ("03691459", "02828884", "04530566", "03636649", "04090263",
                        "04256520", "02958343", "02691156", "03001627", "04379243")
# Models fit-a-nef leaves out (category, file).
FIT_A_NEF_SKIPPED = frozenset({("03691459", "a76f63c6b3702a4981c9b20aad15512.npz"),
                               ("03001627", "a5d21835219c8fed19fb4103277a6b93.npz")})


@dataclass
class ShapeData:
    """A shape dataset: M shapes, each a set of points (normalised frame) with occupancies."""

    labels: np.ndarray                      # int64 (M,), -1 where there is no label
    loc: np.ndarray                         # float32 (M, 3): original = normalised * scale + loc
    scale: np.ndarray                       # float32 (M,)
    names: list                             # where each shape came from (file or model id)
    reader: Callable[[int], tuple] = field(repr=False)  # i -> (points (P, 3) float32, occupancy (P,) bool)
    max_points: int = 0                     # the most points a shape has (fit chunks are padded to it)
    mesh: Callable[[int], object] | None = field(default=None, repr=False)  # i -> its trimesh (original frame)

    def __len__(self) -> int:
        return len(self.labels)

    def signal(self, i: int) -> tuple:
        return self.reader(int(i))

    def signal_bytes(self, i: int) -> bytes:
        """Shape i as the store's data fingerprint sees it (nefs/fingerprint.py): its points and occupancy."""
        points, occupancy = self.signal(i)
        return np.ascontiguousarray(points, np.float32).tobytes() + np.ascontiguousarray(occupancy, bool).tobytes()


def _in_memory(samples: Sequence[dict]) -> Callable[[int], tuple]:
    points = [np.concatenate([s["random_points"], s["near_surf_points"]]).astype(np.float32) for s in samples]
    occ = [np.concatenate([s["random_points_occupancy"], s["near_surf_points_occupancy"]]).astype(bool)
           for s in samples]
    return lambda i: (points[i], occ[i])


class ShapeDataset(DataSource):
    """Base: data root, option checks; subclasses implement ``_read``."""

    def load(self) -> ShapeData:
        self.check_options()
        if self.out_channels is not None and int(self.out_channels) != 1:
            raise FitnefError(f"dataset.out_channels={self.out_channels} but {self.name} occupancies have 1 channel")
        data = self._read()
        assert data.labels.dtype == np.int64 and data.loc.shape == (len(data), 3), (data.labels.dtype, data.loc.shape)
        return data

    def _read(self) -> ShapeData:
        raise NotImplementedError

    def _missing(self, where: Path, expected: str) -> FitnefError:
        return FitnefError(f"{self.name} data not found at {where.absolute()}: expected {expected} "
                           f"(dataset.path={self.path!r}; {data_path_note()}; set DATA_PATH or dataset.path)")

    def _positive(self, option: str, value, allow_zero: bool = False) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            raise FitnefError(f"dataset.{option}={value!r} for {self.name}; expected a "
                              f"{'non-negative' if allow_zero else 'positive'} integer")
        return value


class _Sampled(ShapeDataset):
    """Datasets made from meshes here: occupancy sampled at load time."""

    options = ("num_uniform", "num_near", "near_sigma")

    def __init__(self, name: str, path: str | None = None, out_channels: int | None = None,
                 num_uniform: int = 20000, num_near: int = 20000, near_sigma: float = 0.01, **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.num_uniform, self.num_near, self.near_sigma = num_uniform, num_near, near_sigma

    def _check_sampling(self) -> None:
        self._positive("num_uniform", self.num_uniform, allow_zero=True)
        self._positive("num_near", self.num_near, allow_zero=True)
        if self.num_uniform + self.num_near == 0:
            raise FitnefError(f"dataset.num_uniform + dataset.num_near must be > 0 for {self.name}")
        if not isinstance(self.near_sigma, (int, float)) or self.near_sigma < 0:
            raise FitnefError(f"dataset.near_sigma={self.near_sigma!r}: expected a number >= 0")

    def _sample(self, mesh, seed: int, name: str) -> dict:
        return occupancy_samples(mesh, self.num_uniform, self.num_near, float(self.near_sigma),
                                 np.random.default_rng(seed), name=name)

    @staticmethod
    def _data(samples, labels, names, mesh=None) -> ShapeData:
        return ShapeData(labels=np.asarray(labels, np.int64), mesh=mesh,
                         loc=np.stack([s["loc"] for s in samples]).astype(np.float32),
                         scale=np.asarray([s["scale"] for s in samples], np.float32),
                         names=list(names), reader=_in_memory(samples),
                         max_points=max(len(s["random_points"]) + len(s["near_surf_points"]) for s in samples))


# -- ShapeNet (fit-a-nef's npz layout) ----------------------------------------------------------


class ShapeNet(ShapeDataset):
    """``root/ShapeNet/<category>/<model>.npz`` with ``random_points``, ``near_surf_points`` and their
    ``*_occupancy`` (optionally ``loc``/``scale``, as ``scripts.prepare_shapes`` writes; else the
    identity). Points of a shape are random then near-surface, as fit-a-nef concatenates them.

    ``categories``: "auto" (fit-a-nef's ten when all are present, else every category folder in
    sorted order) or a list of folder names; label = position in it. ``shuffle_seed``: the model
    order is permuted as fit-a-nef does (numpy ``default_rng(42).shuffle``) so NeF indices match its
    stores; null keeps (category, file name) order. ``skip_listed`` drops the two models fit-a-nef skips.
    """

    options = ("categories", "shuffle_seed", "skip_listed")

    def __init__(self, name: str, path: str | None = None, out_channels: int | None = None,
                 categories="auto", shuffle_seed: int | None = 42, skip_listed: bool = True, **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.categories, self.shuffle_seed, self.skip_listed = categories, shuffle_seed, skip_listed

    def _read(self) -> ShapeData:
        base = self.root / "ShapeNet"
        expected = "ShapeNet/<category>/<model>.npz files"
        if not base.is_dir():
            raise self._missing(base, expected)
        present = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        if self.categories == "auto":
            cats = list(FIT_A_NEF_CATEGORIES) if set(FIT_A_NEF_CATEGORIES) <= set(present) else present
        elif isinstance(self.categories, str):
            raise FitnefError(f"dataset.categories={self.categories!r}: expected 'auto' or a list of folder names")
        else:
            cats = [str(c) for c in self.categories]
            absent = [c for c in cats if c not in present]
            if absent:
                raise self._missing(base, f"category folders {', '.join(absent)} (present: {', '.join(present)})")
        files, labels = [], []
        for label, cat in enumerate(cats):
            for f in sorted(p.name for p in (base / cat).iterdir() if p.suffix == ".npz" and p.is_file()):
                if self.skip_listed and (cat, f) in FIT_A_NEF_SKIPPED:
                    continue
                files.append(base / cat / f)
                labels.append(label)
        if not files:
            raise self._missing(base, expected + ", found none")
        order = np.arange(len(files))
        if self.shuffle_seed is not None:
            np.random.default_rng(int(self.shuffle_seed)).shuffle(order)
        files = [files[i] for i in order]
        labels = np.asarray(labels, np.int64)[order]
        key = listing_key([f"{f.parent.name}/{f.name}" for f in files], kind="ShapeNet frames")
        cached = read_cached(self.name, key, base, ("loc", "scale", "max_points"))
        if cached is None:
            loc, scale = self._normalisations(files)
            cached = {"loc": loc.tolist(), "scale": scale.tolist(), "max_points": len(self._signal(files[0])[0])}
            write_cached(self.name, key, base, cached)
        loc, scale = np.asarray(cached["loc"], np.float32).reshape(-1, 3), np.asarray(cached["scale"], np.float32)
        # fit-a-nef's files all hold the same number of points: the first one's count is the bound
        # (a larger shape is evaluated on an evenly strided subset of that many points)
        return ShapeData(labels=labels, loc=loc, scale=scale,
                         names=[f"{f.parent.name}/{f.stem}" for f in files], reader=lambda i: self._signal(files[i]),
                         max_points=int(cached["max_points"]))

    def _normalisations(self, files) -> tuple:
        loc = np.zeros((len(files), 3), np.float32)
        scale = np.ones(len(files), np.float32)
        for i, f in enumerate(files):
            try:
                with np.load(f) as z:
                    if "loc" in z.files and "scale" in z.files:
                        loc[i], scale[i] = z["loc"], z["scale"]
            except Exception as e:  # noqa: BLE001 - a corrupt zip raises many types
                raise FitnefError(f"{self.name}: cannot read {f}: {type(e).__name__}: {e}") from None
        return loc, scale

    def _signal(self, file: Path) -> tuple:
        try:
            with np.load(file) as z:
                missing = [k for k in NPZ_KEYS if k not in z.files]
                if missing:
                    raise FitnefError(f"{self.name}: {file} lacks {', '.join(missing)}")
                pts = np.concatenate([z["random_points"], z["near_surf_points"]]).astype(np.float32)
                occ = np.concatenate([np.asarray(z["random_points_occupancy"], np.float32),
                                      np.asarray(z["near_surf_points_occupancy"], np.float32)]) >= 0.5
        except FitnefError:
            raise
        except Exception as e:  # noqa: BLE001
            raise FitnefError(f"{self.name}: cannot read {file}: {type(e).__name__}: {e}") from None
        if pts.ndim != 2 or pts.shape[1] != 3 or occ.shape != (pts.shape[0],) or not np.isfinite(pts).all():
            raise FitnefError(f"{self.name}: {file}: expected finite points (P, 3) and P occupancies, "
                              f"got {pts.shape} and {occ.shape}")
        return pts, occ


# -- any folder of meshes -------------------------------------------------------------------------


class MeshFolder(_Sampled):
    """Any folder of mesh files trimesh reads (obj off ply stl glb gltf), searched recursively and
    sorted by relative path; label = index of the first sub-folder (files at the top: -1). Each mesh
    is normalised and sampled at load time (``num_uniform`` points in the padded cube, ``num_near``
    jittered surface points); for large sets run ``scripts.prepare_shapes`` once and use ``shapenet``."""

    def _read(self) -> ShapeData:
        self._check_sampling()
        folder = self.root
        expected = f"a folder of mesh files ({' '.join(e[1:] for e in MESH_EXTENSIONS)})"
        if not folder.is_dir():
            raise self._missing(folder, expected)
        rel = mesh_files(folder)
        if not rel:
            raise self._missing(folder, expected + ", found none")
        classes = sorted({r.parts[0] for r in rel if len(r.parts) > 1})
        index = {c: i for i, c in enumerate(classes)}
        labels = [index[r.parts[0]] if len(r.parts) > 1 else -1 for r in rel]
        key = listing_key([r.as_posix() for r in rel], kind="mesh frames")
        frames = read_cached(self.name, key, folder, ("loc", "scale"))
        if frames is None:   # every mesh's frame, once: each row of the store records its shape's
            pairs = [normalisation_of(load_mesh(folder / r), str(folder / r)) for r in _bar(rel, "meshes", "framing")]
            frames = {"loc": [p[0].tolist() for p in pairs], "scale": [p[1] for p in pairs]}
            write_cached(self.name, key, folder, frames)
        sampled: dict = {}

        def reader(i: int) -> tuple:
            """Mesh i's occupancy samples, made when a row first needs them (seeded by its path) and kept."""
            if i not in sampled:
                r = rel[i]
                sampled[i] = _in_memory([self._sample(load_mesh(folder / r), path_seed(r), str(folder / r))])(0)
            return sampled[i]

        return ShapeData(labels=np.asarray(labels, np.int64), loc=np.asarray(frames["loc"], np.float32).reshape(-1, 3),
                         scale=np.asarray(frames["scale"], np.float32), names=[r.as_posix() for r in rel],
                         reader=reader, max_points=int(self.num_uniform) + int(self.num_near),
                         mesh=lambda i: load_mesh(folder / rel[int(i)]))


def normalisation_of(mesh, name: str) -> tuple:
    """(loc, scale) of a mesh, as ``occupancy_samples`` normalises it."""
    try:
        loc, scale = normalisation(np.asarray(mesh.vertices, dtype=np.float64))
    except FitnefError as e:
        raise FitnefError(f"{name}: {e}") from None
    return loc, scale


# -- bundled primitives ---------------------------------------------------------------------------

PRIMITIVE_CLASSES = ("box", "ellipsoid", "cylinder", "capsule", "cone", "torus")


def primitive(kind: str, rng: np.random.Generator):
    """One trimesh primitive of ``kind`` with random proportions, size, rotation and position."""
    trimesh = __import__("trimesh")
    c = trimesh.creation
    s = rng.uniform(0.5, 2.0, size=3)
    if kind == "box":
        mesh = c.box(extents=s)
    elif kind == "ellipsoid":
        mesh = c.icosphere(subdivisions=3, radius=1.0)
        mesh.apply_scale(s / 2)
    elif kind == "cylinder":
        mesh = c.cylinder(radius=s[0] / 2, height=s[2], sections=64)
    elif kind == "capsule":
        mesh = c.capsule(radius=s[0] / 3, height=s[2], count=[32, 32])
    elif kind == "cone":
        mesh = c.cone(radius=s[0] / 2, height=s[2], sections=64)
    elif kind == "torus":
        major = s[0] / 2
        mesh = c.torus(major_radius=major, minor_radius=major * rng.uniform(0.2, 0.5), major_sections=48,
                       minor_sections=20)
    else:
        raise FitnefError(f"unknown primitive {kind!r}; available: {', '.join(PRIMITIVE_CLASSES)}")
    transform = trimesh.transformations.random_rotation_matrix(rng.random(3))
    transform[:3, 3] = rng.uniform(-3, 3, size=3)
    mesh.apply_transform(transform)
    return mesh


class Primitives(_Sampled):
    """Bundled default: ``per_class`` shapes of each of box, ellipsoid, cylinder, capsule, cone and torus
    (label = that order), made with trimesh with random proportions, size, rotation and position, then
    sampled like any mesh. Deterministic and offline. ``path`` is ignored."""

    options = _Sampled.options + ("per_class", "classes")

    def __init__(self, name: str = "primitives", path: str | None = None, out_channels: int | None = None,
                 per_class: int = 4, classes: Sequence[str] = PRIMITIVE_CLASSES, **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.per_class, self.classes = per_class, classes

    def _read(self) -> ShapeData:
        require("trimesh")
        self._check_sampling()
        self._positive("per_class", self.per_class)
        classes = [str(c) for c in self.classes]
        bad = [c for c in classes if c not in PRIMITIVE_CLASSES]
        if bad or not classes:
            raise FitnefError(f"dataset.classes={classes}: choose from {', '.join(PRIMITIVE_CLASSES)}")
        jobs = [(PRIMITIVE_CLASSES.index(c), c, k) for c in classes for k in range(self.per_class)]
        samples, meshes = [], []
        for label, kind, k in _bar(jobs, "primitives"):
            mesh = primitive(kind, np.random.default_rng(key(label, k)))
            samples.append(self._sample(mesh, key(label, k, 1), f"{kind}_{k}"))
            meshes.append(mesh)
        return self._data(samples, [j[0] for j in jobs], [f"{c}_{k}" for _, c, k in jobs],
                          mesh=lambda i: meshes[int(i)])


def _bar(items, what: str, doing: str = "sampling"):
    """A progress bar over slow per-mesh work (only when there is enough of it to watch)."""
    if len(items) < 16:
        return items
    return tqdm(items, desc=f"{doing} {what}", unit="mesh", leave=False, dynamic_ncols=True)
