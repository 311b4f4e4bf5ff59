"""``python -m tasks.inspect`` for shape stores (the shape modality's ``inspect``).

Writes into the run dir:

- ``metrics.json``: ``iou`` (fresh: ``store.query`` on the dataset's own points, prob >= 0.5 vs the
  stored occupancy), ``store_iou`` (the IoU the fit stored), ``chamfer`` (symmetric chamfer distance in
  the original frame: the mean of the two mean nearest-neighbour distances between
  ``inspect.chamfer_points`` samples of the extracted mesh and of the ground-truth surface) and
  ``chamfer_normalised`` (the same divided by the shape's scale, i.e. for a shape of longest side 1),
  each as mean / std / min / max over the inspected rows;
- ``mesh_<row>.ply``: the mesh extracted at ``inspect.resolution`` (marching cubes) for the sampled rows;
- ``shape_<row>.png``: ground truth (top) vs reconstruction (bottom) from three views (matplotlib, Agg).

The ground-truth surface is the dataset's mesh where it has one (primitives, mesh folders); otherwise
(ShapeNet npz files) the dataset's points that lie next to a point of the other class.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from nefs.errors import FitnefError
from nefs.fingerprint import verify_signals
from tasks.inspect import done_rows, sampled_rows, stats, store_dataset

from .meshes import require, sample_surface

log = logging.getLogger(__name__)

VIEWS = ((20, -60), (20, 30), (80, -90))  # (elevation, azimuth) of the three views
MAX_DRAWN_FACES = 6000                    # renders draw a random subset of bigger meshes' faces


def load_shapes(store, data_path: Optional[str] = None):
    """The ShapeData a store was fitted on, from the store's own record."""
    reader, ds = store_dataset(store, data_path)
    data = reader.load()
    top = int(store.signal_idx.max()) + 1 if len(store) else 0
    if len(data) < top:
        raise FitnefError(f"dataset {ds.get('name')} at {ds.get('path')} has {len(data)} shapes, the store indexes "
                          f"{top}; point dataset.path at the store's data")
    verify_signals(store, data.signal_bytes, now_dataset=ds, record=False)  # the data it was fitted on?
    return data


def _frame(store, row: int) -> tuple:
    return np.asarray(store.array("loc")[int(row)], np.float64), float(store.array("scale")[int(row)])


def fresh_iou(store, row: int, points_norm: np.ndarray, occ: np.ndarray, device="cpu") -> float:
    loc, scale = _frame(store, row)
    pred = store.query(row, points_norm.astype(np.float64) * scale + loc, device=device) >= 0.5
    union = (pred | occ).sum()
    return float((pred & occ).sum() / union) if union else 1.0


def gt_surface(data, signal: int, loc, scale, n: int, rng) -> tuple:
    """(points (n, 3) on the ground-truth surface in the original frame, mesh or None, what it is)."""
    mesh = data.mesh(signal) if getattr(data, "mesh", None) is not None else None
    if mesh is not None and len(mesh.faces):
        v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
        return sample_surface(v, f, n, rng), mesh, "mesh surface"
    from scipy.spatial import cKDTree   # scipy comes with the shapes extra (scikit-image): imported where used

    pts, occ = data.signal(signal)
    _, nn = cKDTree(pts).query(pts, k=min(9, len(pts)))
    boundary = (occ[nn] != occ[:, None]).any(axis=1)
    near = pts[boundary] if boundary.any() else pts[occ]
    if len(near) > n:
        near = near[rng.choice(len(near), n, replace=False)]
    return near.astype(np.float64) * scale + loc, None, "boundary samples"


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric chamfer distance: (mean_a min_b |a-b| + mean_b min_a |a-b|) / 2."""
    from scipy.spatial import cKDTree   # as in gt_surface

    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float((cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean()) / 2)


def render(gt_mesh, gt_points, rec_mesh, title: str, path: Path, rng) -> None:
    """Two rows (ground truth, reconstruction) x three views."""
    import matplotlib   # an optional extra (inspect): imported where used, after choosing the Agg backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    pts_all = [np.asarray(gt_points)] + ([np.asarray(rec_mesh.vertices)] if len(rec_mesh.vertices) else [])
    allp = np.concatenate(pts_all)
    lo, hi = allp.min(0), allp.max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.05 + 1e-9
    fig = plt.figure(figsize=(3 * len(VIEWS), 6), dpi=80)

    def draw(ax, mesh, points, colour):
        if mesh is not None and len(mesh.faces):
            faces = np.asarray(mesh.faces)
            if len(faces) > MAX_DRAWN_FACES:
                faces = faces[rng.choice(len(faces), MAX_DRAWN_FACES, replace=False)]
            tri = np.asarray(mesh.vertices)[faces]
            normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
            shade = 0.35 + 0.65 * np.abs(normal @ np.array([0.3, 0.4, 0.87]))
            ax.add_collection3d(Poly3DCollection(tri, facecolors=np.asarray(colour)[None] * shade[:, None],
                                                 edgecolor="none"))
        elif points is not None and len(points):
            ax.scatter(*np.asarray(points).T, s=1, c=[colour])
        else:
            ax.text2D(0.4, 0.5, "empty", transform=ax.transAxes)

    for r, (label, mesh, points, colour) in enumerate([("ground truth", gt_mesh, gt_points, (0.3, 0.5, 0.9)),
                                                         ("reconstruction", rec_mesh, None, (0.9, 0.5, 0.3))]):
        for c, (elev, azim) in enumerate(VIEWS):
            ax = fig.add_subplot(2, len(VIEWS), r * len(VIEWS) + c + 1, projection="3d")
            draw(ax, mesh, points, colour)
            for set_lim, k in ((ax.set_xlim, 0), (ax.set_ylim, 1), (ax.set_zlim, 2)):
                set_lim(centre[k] - half, centre[k] + half)
            ax.view_init(elev=elev, azim=azim)
            ax.set_box_aspect((1, 1, 1))
            ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
            ax.set_title(f"{label} ({elev}, {azim})", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(cfg, out: Path, store, data_path: Optional[str] = None, device="cpu") -> dict:
    require("trimesh")  # fail early, with the extra to install
    require("matplotlib")
    ins = cfg.inspect
    resolution = int(ins.get("resolution", 64) or 64)
    n_surface = int(ins.get("chamfer_points", 10000) or 10000)
    if resolution < 2:
        raise FitnefError(f"inspect.resolution={resolution}: must be >= 2")
    data = load_shapes(store, data_path)
    rows = done_rows(store, ins.max_rows)
    rng = np.random.default_rng(int(ins.sample_seed))
    shown = sampled_rows(store, rows, ins, rng)

    signal = store.signal_idx
    stored = store.metric
    per = {"iou": [], "store_iou": [], "chamfer": [], "chamfer_normalised": []}
    files, reference = [], set()
    # IoU over every inspected row (cheap); meshes, chamfer and pictures for the sampled rows
    for r in rows:
        pts, occ = data.signal(signal[r])
        per["iou"].append(fresh_iou(store, r, pts, occ, device))
        per["store_iou"].append(float(stored[r]))
    for r in shown:
        r = int(r)
        loc, scale = _frame(store, r)
        mesh = store.extract_mesh(r, resolution=resolution, device=device)
        gt_pts, gt_mesh, what = gt_surface(data, int(signal[r]), loc, scale, n_surface, rng)
        reference.add(what)
        rec_pts = (sample_surface(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64),
                                  n_surface, rng) if len(mesh.faces) else np.zeros((0, 3)))
        cd = chamfer(rec_pts, gt_pts)
        per["chamfer"].append(cd)
        per["chamfer_normalised"].append(cd / scale)
        mesh.export(out / f"mesh_{r}.ply")
        iou_r = per["iou"][int(np.flatnonzero(rows == r)[0])] if r in rows else fresh_iou(
            store, r, *data.signal(signal[r]), device)
        render(gt_mesh, gt_pts, mesh, f"NeF {r} (shape {int(signal[r])} {data.names[int(signal[r])]}): "
               f"IoU {iou_r:.3f}, chamfer {cd / scale:.4f} (normalised)", out / f"shape_{r}.png", rng)
        files += [f"mesh_{r}.ply", f"shape_{r}.png"]
        if not len(mesh.faces):
            log.warning("NeF %d has no surface at resolution %d", r, resolution)

    iou = np.asarray(per["iou"])
    report = {"modality": "shape", "store": str(store.path), "nef": store.attrs["nef"].get("name"),
              "params_per_nef": int(store.layout.size), "num_rows": int(len(rows)),
              "done": int(store.done.sum()), "total": int(len(store)),
              "iou": stats(iou), "store_iou": stats(per["store_iou"]),
              "max_abs_iou_diff": float(np.max(np.abs(iou - np.asarray(per["store_iou"])))),
              "steps_mean": float(store.steps[rows].mean())}
    if len(shown):
        report.update({"chamfer": stats(per["chamfer"]), "chamfer_normalised": stats(per["chamfer_normalised"]),
                       "chamfer_rows": [int(r) for r in shown], "chamfer_points": n_surface,
                       "chamfer_reference": sorted(reference), "resolution": resolution,
                       "files": files})
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    return report


def summary_lines(report: dict, out: Path) -> list:
    i = report["iou"]
    lines = [f"inspected {report['num_rows']} done rows ({report['done']}/{report['total']} done) of "
             f"{report['store']}: iou {i['mean']:.4f} ± {i['std']:.4f} (store: {report['store_iou']['mean']:.4f})"]
    if "chamfer" in report:
        c = report["chamfer_normalised"]
        lines.append(f"chamfer (normalised, {len(report['chamfer_rows'])} rows at resolution {report['resolution']}): "
                     f"{c['mean']:.4f} ± {c['std']:.4f}")
    lines.append(f"wrote metrics.json and {len(report.get('files', []))} mesh/PNG files to {out}")
    return lines
