"""Shapes as signals: occupancy fields fitted with balanced inside/outside sampling, BCE and IoU.

As fit-a-nef: each step every NeF sees ``num_points`` = (inside, outside) points of its own shape
(default 2048 each), the NeF outputs a logit, the loss is sigmoid binary cross-entropy and the
metric is the IoU of (logit >= 0) against the ground truth over all of the shape's points.
Coordinates are the dataset's normalised frame (the shape in [-0.5, 0.5], points in [-0.55, 0.55]);
each store row keeps ``loc`` and ``scale`` (original = normalised * scale + loc) so ``query`` and
``extract_mesh`` answer in the original frame.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nefs.errors import FitnefError
from nefs.keyed import keyed_uniform
from nefs.modality import Metric, register
from nefs.stack import stacked_forward

from .meshes import BOX, require
from .schema import ShapeTaskConfig

EVAL_POINTS = 1 << 20  # points (summed over NeFs) evaluated at once for metrics and queries


def parse_num_points(value) -> tuple:
    """``task.train.num_points``: one integer (inside = outside) or [inside, outside]."""
    try:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            pair = (int(value), int(value))
        else:
            items = list(value)
            if len(items) != 2 or any(isinstance(v, bool) for v in items):
                raise TypeError
            pair = (int(items[0]), int(items[1]))
    except (TypeError, ValueError):
        raise FitnefError(f"task.train.num_points={value!r}: expected an integer or [inside, outside]") from None
    if min(pair) < 1:
        raise FitnefError(f"task.train.num_points={value!r}: needs at least 1 inside and 1 outside point")
    return pair


def iou(logits: torch.Tensor, occ: torch.Tensor, valid: torch.Tensor) -> tuple:
    """(intersection, union) counts per row of (logit >= 0) vs (occ >= 0.5) over valid points."""
    pred = (logits >= 0) & valid
    gt = (occ >= 0.5) & valid
    return (pred & gt).sum(dim=1), (pred | gt).sum(dim=1)


@register
class ShapeModality:
    """Shapes as occupancy fields: one NeF per shape (nefs.modality.Modality)."""

    name = "shape"
    metric = Metric("iou", "", higher_is_better=True)
    task_schema = ShapeTaskConfig
    store_ops = ("query", "extract_mesh")   # store.query(row, points), store.extract_mesh(row)
    in_features = 3
    out_features = 1

    def __init__(self, data, num_points=(2048, 2048)):
        self.data = data
        self.num_points = parse_num_points(num_points)

    @classmethod
    def from_data(cls, data, task_cfg=None) -> "ShapeModality":
        if not hasattr(data, "signal"):
            raise FitnefError("task=shape needs a shape dataset: dataset=primitives (default), meshes or shapenet")
        num_points = (2048, 2048) if task_cfg is None else task_cfg.train.num_points
        return cls(data, num_points)

    def __len__(self) -> int:
        return len(self.data)

    def attrs(self) -> dict:
        return {"box": BOX, "row_arrays": ["loc", "scale"],
                "frame": "original = normalised * scale + loc"}

    def signal_bytes(self, i: int) -> bytes:
        """Shape i as the store's data fingerprint sees it (``ShapeData.signal_bytes``)."""
        return self.data.signal_bytes(i)

    def row_arrays(self) -> dict:
        """Per-signal arrays the store keeps with each row (tiled over seeds by the fit)."""
        return {"loc": np.asarray(self.data.loc, np.float32), "scale": np.asarray(self.data.scale, np.float32)}

    def problem(self, signal_idx, seeds, nef_idx, train_cfg=None, device=None) -> "ShapeProblem":
        num_points = self.num_points if train_cfg is None else parse_num_points(train_cfg.num_points)
        signals = [self.data.signal(i) for i in np.asarray(signal_idx)]
        return ShapeProblem.of(signals, torch.as_tensor(np.asarray(seeds), device=device),
                               torch.as_tensor(np.asarray(nef_idx), device=device), num_points,
                               self.data.max_points or None, device)

    @classmethod
    def inspect(cls, cfg, store, out, data_path=None, device="cpu") -> dict:
        from .inspect import run, summary_lines   # on first use: decoding rows loads no inspection code

        if cfg.get("compare"):
            raise FitnefError("compare= is for image stores; inspect shape stores one at a time")
        report = run(cfg, out, store, data_path, device)
        report["lines"] = summary_lines(report, out)
        return report

    def log_panel(self, forward, params, problem, k: int):
        return None   # no cheap picture of a chunk of occupancy fields

    # -- decoding a store's rows (store.reconstruct / query / extract_mesh delegate here) --------
    @staticmethod
    def _grid(resolution: int, device=None) -> torch.Tensor:
        """(R^3, 3) points on the normalised sampling cube, indexed [x, y, z]."""
        t = torch.linspace(-BOX, BOX, resolution, device=device)
        return torch.stack(torch.meshgrid(t, t, t, indexing="ij"), dim=-1).reshape(-1, 3)

    @classmethod
    def reconstruct(cls, store, flat_params: torch.Tensor, device="cpu", resolution: int = 64) -> torch.Tensor:
        """Rows -> (n, R, R, R) occupancy probabilities on the normalised cube [-0.55, 0.55]^3
        (axis order x, y, z)."""
        template = store.build_model().to(device)
        params = store.layout.unflatten(flat_params.to(device))
        grid = cls._grid(resolution, device)
        fwd = stacked_forward(template)
        n = flat_params.shape[0]
        step = max(1, EVAL_POINTS // max(n, 1))
        with torch.no_grad():
            out = torch.cat([fwd(params, grid[i:i + step]) for i in range(0, len(grid), step)], dim=1)
        return torch.sigmoid(out).reshape(n, resolution, resolution, resolution)

    @staticmethod
    def _frame(store, row: int) -> tuple:
        if "loc" not in store or "scale" not in store:
            raise FitnefError(f"store {store.path} has no per-row loc/scale arrays (not a shape store?)")
        return np.asarray(store.array("loc")[int(row)], np.float64), float(store.array("scale")[int(row)])

    @staticmethod
    def _logits(model, points: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model(points[i:i + EVAL_POINTS])[..., 0]
                              for i in range(0, len(points), EVAL_POINTS)]) if len(points) else points[:, 0]

    @classmethod
    def query(cls, store, row: int, points, device="cpu") -> np.ndarray:
        """Occupancy probabilities (n,) of row ``row`` at ``points`` (n, 3) in the original mesh frame.

        Points outside the sampled cube (the shape's bounding box grown by 10% of its longest side)
        get 0: the shape cannot be there, and the field was never trained there."""
        pts = np.asarray(points, np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise FitnefError(f"query points must have shape (n, 3), got {pts.shape}")
        loc, scale = cls._frame(store, row)
        x = (pts - loc) / scale
        model = store.model(int(row)).to(device)
        prob = torch.sigmoid(cls._logits(model, torch.from_numpy(x.astype(np.float32)).to(device))).cpu().numpy()
        return np.where(np.abs(x).max(axis=1) <= BOX, prob, np.float32(0.0))

    @classmethod
    def extract_mesh(cls, store, row: int, resolution: int = 128, threshold: float = 0.5, device="cpu"):
        """A ``trimesh.Trimesh`` of the surface {p = threshold} in the original frame (marching cubes
        on a resolution^3 grid over the normalised cube; empty if the field has no surface there)."""
        trimesh = require("trimesh")
        measure = require("skimage.measure", "scikit-image")
        if not 0 < threshold < 1:
            raise FitnefError(f"threshold={threshold}: must be in (0, 1)")
        if int(resolution) < 2:
            raise FitnefError(f"resolution={resolution}: must be >= 2")
        resolution = int(resolution)
        loc, scale = cls._frame(store, row)
        model = store.model(int(row)).to(device)
        logits = cls._logits(model, cls._grid(resolution, device)).cpu().numpy()
        vol = logits.reshape(resolution, resolution, resolution).astype(np.float64)
        level = float(np.log(threshold / (1 - threshold)))
        # one layer of "outside" around the cube closes surfaces that reach its faces
        vol = np.pad(vol, 1, constant_values=min(vol.min(), level) - 1.0)
        if not vol.min() < level < vol.max():
            return trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), np.int64))
        h = 2 * BOX / (resolution - 1)
        verts, faces, _, _ = measure.marching_cubes(vol, level=level, spacing=(h, h, h), allow_degenerate=False)
        verts = verts - BOX - h  # padded index 1 is the cube's corner -BOX
        mesh = trimesh.Trimesh(vertices=verts * scale + loc, faces=faces, process=True)
        if mesh.volume < 0:
            mesh.invert()
        return mesh


class ShapeProblem:
    """One chunk of shapes for the engine (see nefs.engine.Problem).

    Each shape's points are reordered inside-first and padded to the chunk's largest point count;
    ``n_in``/``n_valid`` say where its inside points end and its real points end. A step draws
    keyed uniform numbers per NeF and maps them to indices below ``n_in`` (inside) and in
    [n_in, n_valid) (outside): NeF i's batch depends only on (seed, index, step), never on the chunk.
    """

    per_nef_fields = ("points", "occ", "n_in", "n_valid", "valid", "seeds", "nef_idx")
    fused_loss = "bce_logits"   # ``loss`` as the fused step names it (nefs/fused)

    def __init__(self, points, occ, n_in, n_valid, seeds, nef_idx, num_points):
        self.points, self.occ = points, occ        # (N, P, 3), (N, P) float 0/1
        self.n_in, self.n_valid = n_in, n_valid    # (N,) long
        self.seeds, self.nef_idx = seeds, nef_idx
        self.k_in, self.k_out = num_points
        self.valid = torch.arange(points.shape[1], device=points.device)[None, :] < n_valid[:, None]

    @classmethod
    def of(cls, signals, seeds, nef_idx, num_points, max_points=None, device=None) -> "ShapeProblem":
        """Padded to ``max_points`` (the dataset's bound, so every chunk has one shape and slots can be
        refilled); a shape with more points keeps an evenly strided subset of them."""
        n, p = len(signals), max_points or max(len(s[0]) for s in signals)
        points = np.zeros((n, p, 3), np.float32)
        occ = np.zeros((n, p), np.float32)
        n_in, n_valid = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for r, (pts, o) in enumerate(signals):
            if len(pts) > p:
                keep = np.linspace(0, len(pts) - 1, p).round().astype(np.int64)
                pts, o = pts[keep], o[keep]
            order = np.argsort(~o, kind="stable")  # inside first, original order within each class
            points[r, :len(pts)], occ[r, :len(pts)] = pts[order], o[order]
            n_in[r], n_valid[r] = int(o.sum()), len(pts)
        t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        return cls(t(points), t(occ), t(n_in), t(n_valid), seeds, nef_idx, num_points)

    def train_batch(self, step: int):
        u = keyed_uniform(self.seeds, self.nef_idx, step, self.k_in + self.k_out)     # (N, K) float64
        n_out = self.n_valid - self.n_in
        idx_in = (u[:, :self.k_in] * self.n_in[:, None]).long()
        idx_out = self.n_in[:, None] + (u[:, self.k_in:] * n_out[:, None]).long()
        # a shape with no inside (or no outside) points gets real points of the other class instead
        idx = torch.cat([idx_in, idx_out], dim=1).clamp_(max=(self.n_valid - 1)[:, None])
        coords = torch.gather(self.points, 1, idx[..., None].expand(-1, -1, 3))
        targets = torch.gather(self.occ, 1, idx)[..., None]
        return coords, targets, True

    @staticmethod
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(pred, target)

    def metric(self, forward, params) -> torch.Tensor:
        """(N,) IoU over each shape's points (1 where both prediction and truth are empty)."""
        def one(p, x):  # the engine's forward shares coords across NeFs; vmap it over per-NeF points
            return forward({k: v.unsqueeze(0) for k, v in p.items()}, x)[0]

        per_nef = torch.vmap(one)
        n, p = self.occ.shape
        step = max(1, EVAL_POINTS // n)
        inter = torch.zeros(n, device=self.occ.device)
        union = torch.zeros(n, device=self.occ.device)
        with torch.no_grad():
            for i in range(0, p, step):
                logits = per_nef(params, self.points[:, i:i + step])[..., 0]
                a, b = iou(logits, self.occ[:, i:i + step], self.valid[:, i:i + step])
                inter += a
                union += b
        return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
