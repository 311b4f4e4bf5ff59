"""``python -m tasks.inspect`` for image stores (the image modality's ``inspect``).

Writes into the run dir:

- ``metrics.json``: psnr, mse, mae, ssim (mean, std, min, max over the inspected done rows; images on
  the [0, 1] scale, reconstructions clamped to it, as the store's own psnr), and the store's psnr;
- ``samples.png`` and ``nef_<row>.png``: ground truth | reconstruction | reconstruction on an
  ``inspect.upscale``x finer coordinate grid (super-resolution) | reconstruction on coordinates
  rotated by ``inspect.rotation`` degrees (what the field does off the training grid);
- with ``compare=<other store>``: ``compare.md`` / ``compare.json``, both stores in one table (on
  the rows done in both when they index the same signals).
"""
import functools
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

from nefs.errors import FitnefError
from nefs.fingerprint import array_signal_bytes, verify_signals
from nefs.stack import stacked_forward
from nefs.store import open_store
from tasks.inspect import done_rows, sampled_rows, stats, store_dataset

from .coords import make_grid

METRICS = ("psnr", "mse", "mae", "ssim")


def load_images(store, data_path: Optional[str] = None) -> np.ndarray:
    """The dataset a store was fitted on, as uint8 (M, H, W, C), from the store's own record."""
    reader, ds = store_dataset(store, data_path)
    images = reader.load().images
    want = tuple(store.modality_info["shape"])
    if tuple(images.shape[1:]) != want:
        raise FitnefError(f"dataset {ds.get('name')} at {ds.get('path')} has {images.shape[1:]} images, "
                          f"the store was fitted on {want}; point dataset.path at the store's data")
    # the same data? (an image's bytes as ImageModality.signal_bytes gives them)
    verify_signals(store, functools.partial(array_signal_bytes, images), now_dataset=ds, record=False)
    return images


# Wang et al. 2004's SSIM, the one papers report: an 11x11 Gaussian window of sigma 1.5, population
# covariances, the data range of [0, 1] images (scikit-image's defaults, a 7x7 uniform window with sample
# covariances, give other numbers)
SSIM_SETTINGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0}
SSIM_MIN_SIDE = 11   # the Gaussian window's side (truncated at 3.5 sigma)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two (C, H, W) images in [0, 1] with Wang et al.'s settings (``SSIM_SETTINGS``), averaged over
    channels; NaN for images smaller than the 11x11 window."""
    try:
        from skimage.metrics import structural_similarity   # an optional extra: imported where used
    except ImportError:
        raise FitnefError("tasks.inspect computes SSIM with scikit-image: pip install 'fitnef[inspect]'") from None

    if min(a.shape[1:]) < SSIM_MIN_SIDE:
        return math.nan
    if a.shape[0] == 1:
        return float(structural_similarity(a[0], b[0], **SSIM_SETTINGS))
    return float(structural_similarity(a, b, channel_axis=0, **SSIM_SETTINGS))


def per_row_metrics(store, rows: np.ndarray, images: np.ndarray, batch_size: int = 512,
                    device="cpu") -> dict:
    """{metric: (n,) array} over ``rows`` (done rows of an image store)."""
    out = {k: [] for k in METRICS}
    signal = store.signal_idx
    for lo in range(0, len(rows), batch_size):
        part = rows[lo:lo + batch_size]
        rec = store.reconstruct(part, device=device).cpu().double()            # (n, C, H, W)
        gt = torch.from_numpy(images[signal[part]]).permute(0, 3, 1, 2).double() / 255.0
        err = (rec - gt).flatten(1)
        mse = (err ** 2).mean(1)
        out["mse"].append(mse.numpy())
        out["mae"].append(err.abs().mean(1).numpy())
        out["psnr"].append((-10.0 * torch.log10(mse.clamp_min(1e-10))).numpy())
        out["ssim"].append(np.array([_ssim(r, g) for r, g in zip(rec.numpy(), gt.numpy())]))
    return {k: np.concatenate(v) for k, v in out.items()}


def image_store(path):
    store = open_store(path)
    if store.modality_info.get("name") != "image":
        raise FitnefError(f"store {path} holds {store.modality_info.get('name')} NeFs; tasks.inspect reads image stores")
    return store


# -- decoding on other grids -----------------------------------------------------------------------
def decode(store, rows: np.ndarray, coords: torch.Tensor, height: int, width: int, device="cpu") -> np.ndarray:
    """Rows' fields evaluated at ``coords`` (height*width, 2) -> (n, height, width, C) in [0, 1]."""
    flat = torch.from_numpy(np.asarray(store.params.get_orthogonal_selection((rows, slice(None)))))
    params = store.layout.unflatten(flat.to(device))
    mean = torch.tensor(store.modality_info["mean"], device=device)
    std = torch.tensor(store.modality_info["std"], device=device)
    with torch.no_grad():
        pred = stacked_forward(store.build_model().to(device))(params, coords.to(device))
    img = (pred * std + mean).clamp(0, 1)
    return img.reshape(len(rows), height, width, -1).cpu().numpy()


def rotated(coords: torch.Tensor, degrees: float) -> torch.Tensor:
    t = math.radians(degrees)
    rot = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=coords.dtype)
    return coords @ rot.T


def sample_panels(store, rows: np.ndarray, images: np.ndarray, upscale: int, degrees: float,
                  device="cpu") -> list:
    """Per row: [ground truth, reconstruction, upscaled reconstruction, rotated reconstruction] (H, W, C)."""
    h, w, _ = store.modality_info["shape"]
    grid = make_grid(h, w)
    rec = decode(store, rows, grid, h, w, device)
    big = decode(store, rows, make_grid(h * upscale, w * upscale), h * upscale, w * upscale, device)
    rot = decode(store, rows, rotated(grid, degrees), h, w, device)
    gt = images[store.signal_idx[rows]].astype(np.float32) / 255.0
    return [[gt[i], rec[i], big[i], rot[i]] for i in range(len(rows))]


# -- pictures --------------------------------------------------------------------------------------
def _to_pil(img01: np.ndarray, size: tuple):
    arr = (np.clip(img01, 0, 1) * 255).round().astype(np.uint8)
    pil = Image.fromarray(arr[..., 0], "L") if arr.shape[-1] == 1 else Image.fromarray(arr[..., :3], "RGB")
    return pil.convert("RGB").resize(size, Image.Resampling.NEAREST)


def grid_png(panels: list, titles: list, labels: list, panel_px: int, path: Path) -> tuple:
    """Rows of panels (each resized to panel_px, nearest) with a title bar and a label per row."""
    pad, head, left = 4, 18, 110
    n_rows, n_cols = len(panels), len(panels[0])
    width = left + n_cols * (panel_px + pad) + pad
    height = head + n_rows * (panel_px + pad) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
        draw.text((left + pad + c * (panel_px + pad), 3), title, fill="black")
    for r, (row, label) in enumerate(zip(panels, labels)):
        y = head + pad + r * (panel_px + pad)
        draw.multiline_text((4, y + 2), label, fill="black")
        for c, img in enumerate(row):
            canvas.paste(_to_pil(img, (panel_px, panel_px)), (left + pad + c * (panel_px + pad), y))
    canvas.save(path)
    return canvas.size


def summarize(store, rows: np.ndarray, per_row: dict) -> dict:
    out = {k: stats(per_row[k]) for k in METRICS}
    sp = store["psnr"][rows]
    out.update({"store": str(store.path), "nef": store.attrs["nef"].get("name"),
                "params_per_nef": int(store.layout.size), "num_rows": int(len(rows)),
                "done": int(store.done.sum()), "total": int(len(store)),
                "store_psnr": stats(sp), "max_abs_psnr_diff": float(np.nanmax(np.abs(sp - per_row["psnr"]))),
                "steps_mean": float(store.steps[rows].mean())})
    return out


def compare_table(reports: list) -> str:
    head = ["store", "nef", "params", "rows", "psnr (dB)", "ssim", "mse", "mae", "steps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in reports:
        lines.append("| " + " | ".join([
            r["store"], str(r["nef"]), str(r["params_per_nef"]), str(r["num_rows"]),
            f"{r['psnr']['mean']:.2f} ± {r['psnr']['std']:.2f}", f"{r['ssim']['mean']:.4f}",
            f"{r['mse']['mean']:.5f}", f"{r['mae']['mean']:.4f}", f"{r['steps_mean']:.0f}"]) + " |")
    return "\n".join(lines)


def run(cfg, out: Path, store, data_path: Optional[str] = None, device="cpu") -> dict:
    ins = cfg.inspect
    images = load_images(store, data_path)
    rows = done_rows(store, ins.max_rows)
    per_row = per_row_metrics(store, rows, images, int(ins.batch_size), device)
    report = summarize(store, rows, per_row)

    # pictures of a sample of rows
    shown = sampled_rows(store, rows, ins, np.random.default_rng(int(ins.sample_seed)))
    pngs = []
    if len(shown):
        up = int(ins.upscale)
        if up < 1:
            raise FitnefError(f"inspect.upscale={up}: must be >= 1")
        h, w, _ = store.modality_info["shape"]
        panel_px = int(ins.panel_px) if ins.panel_px else max(up * max(h, w), 128)
        panels = sample_panels(store, shown, images, up, float(ins.rotation), device)
        titles = ["ground truth", "reconstruction", f"{up}x resolution ({up * h}x{up * w})",
                  f"rotated {float(ins.rotation):g} deg"]
        psnr_of = dict(zip(rows.tolist(), per_row["psnr"].tolist()))
        labels = []
        for r in shown:
            p = psnr_of.get(int(r), float(store["psnr"][int(r)]))
            labels.append(f"NeF {int(r)}\nimage {int(store.signal_idx[int(r)])}\n{p:.2f} dB")
        size = grid_png(panels, titles, labels, panel_px, out / "samples.png")
        pngs.append("samples.png")
        for r, row, label in zip(shown, panels, labels):
            grid_png([row], titles, [label], panel_px, out / f"nef_{int(r)}.png")
            pngs.append(f"nef_{int(r)}.png")
        report["png"] = {"files": pngs, "rows": [int(r) for r in shown], "panel_px": panel_px,
                         "columns": titles, "samples_size": list(size)}
    (out / "metrics.json").write_text(json.dumps(report, indent=1))

    if cfg.get("compare"):
        other = image_store(cfg.compare)
        other_rows = done_rows(other, ins.max_rows)
        same_signals = (len(other) == len(store) and np.array_equal(other.signal_idx, store.signal_idx))
        if same_signals:   # compare like with like: the rows done in both
            common = np.intersect1d(rows, other_rows)
            if len(common) == 0:
                raise FitnefError(f"stores {store.path} and {other.path} have no done rows in common")
            keep = np.isin(rows, common)
            mine = summarize(store, common, {k: v[keep] for k, v in per_row.items()})
            other_rows = common
        else:
            mine = report
        other_images = images if same_signals and other.attrs.get("dataset") == store.attrs.get("dataset") \
            else load_images(other)
        theirs = summarize(other, other_rows, per_row_metrics(other, other_rows, other_images,
                                                              int(ins.batch_size), device))
        table = compare_table([mine, theirs])
        note = "rows done in both stores" if same_signals else "each store's own done rows"
        (out / "compare.md").write_text(f"Compared on {note}.\n\n{table}\n")
        (out / "compare.json").write_text(json.dumps({"rows": note, "stores": [mine, theirs]}, indent=1))
        print(table)
        report["compare"] = [mine, theirs]
    report["lines"] = summary_lines(report, out)
    return report


def summary_lines(report: dict, out: Path) -> list:
    p = report["psnr"]
    files = ", ".join(["metrics.json", *report.get("png", {}).get("files", [])[:2]])
    more = len(report.get("png", {}).get("files", [])) - 2
    return [f"inspected {report['num_rows']} done rows ({report['done']}/{report['total']} done) of {report['store']}: "
            f"psnr {p['mean']:.2f} ± {p['std']:.2f} dB (store: {report['store_psnr']['mean']:.2f}), "
            f"ssim {report['ssim']['mean']:.4f}, mse {report['mse']['mean']:.5f}, mae {report['mae']['mean']:.4f}",
            f"wrote {files}{f' and {more} more PNGs' if more > 0 else ''} to {out}"]
