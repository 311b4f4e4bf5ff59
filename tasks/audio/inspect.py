"""``python -m tasks.inspect`` for audio stores (the audio modality's ``inspect``).

Writes into the run dir ``metrics.json`` (psnr recomputed from the store against the dataset, the
store's own psnr, SNR in dB; mean/std/min/max over the done rows) and, for a seeded sample of rows,
``wave_<row>.png`` (ground truth and reconstruction overlaid) and ``rec_<row>.wav`` / ``gt_<row>.wav``.
"""
import json
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from nefs.errors import FitnefError
from tasks.inspect import done_rows, sampled_rows, stats, store_dataset

from .wav import write_wav


def load_signals(store, data_path: Optional[str] = None) -> np.ndarray:
    reader, ds = store_dataset(store, data_path)
    signals = reader.load().signals
    info = store.modality_info
    if tuple(signals.shape[1:]) != (info["length"], info["channels"]):
        raise FitnefError(f"dataset {ds.get('name')} at {ds.get('path')} has {signals.shape[1:]} signals, the store "
                          f"was fitted on {(info['length'], info['channels'])}; point dataset.path at the store's data")
    return signals


def waveform_png(gt: np.ndarray, rec: np.ndarray, title: str, path: Path, size=(800, 260)) -> None:
    """Ground truth (grey) and reconstruction (blue) of one channel, drawn with pillow."""
    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    x = np.linspace(10, w - 10, len(gt))
    for signal, colour, width in ((gt, (150, 150, 150), 3), (rec, (30, 90, 200), 1)):
        y = h / 2 - np.clip(signal, -1, 1) * (h / 2 - 24)
        draw.line(list(zip(x.tolist(), y.tolist())), fill=colour, width=width)
    draw.text((10, 4), title + "  (grey: ground truth, blue: reconstruction)", fill="black")
    img.save(path)


def run(cfg, out: Path, store, data_path: Optional[str] = None, device="cpu") -> dict:
    ins = cfg.inspect
    signals = load_signals(store, data_path)
    rows = done_rows(store, ins.max_rows)
    signal_idx = store.signal_idx
    psnr, snr = [], []
    batch = int(ins.batch_size)
    for lo in range(0, len(rows), batch):
        part = rows[lo:lo + batch]
        rec = store.reconstruct(part, device=device).cpu().numpy().transpose(0, 2, 1)   # (n, T, C)
        gt = signals[signal_idx[part]]
        mse = ((rec - gt) ** 2).reshape(len(part), -1).mean(1)
        psnr.append(-10 * np.log10(np.maximum(mse / 4.0, 1e-10)))  # peak-to-peak 2 on [-1, 1]
        snr.append(10 * np.log10(np.maximum((gt ** 2).reshape(len(part), -1).mean(1), 1e-12) / np.maximum(mse, 1e-12)))
    psnr, snr = np.concatenate(psnr), np.concatenate(snr)
    stored = store.metric[rows]
    report = {"modality": "audio", "store": str(store.path), "nef": store.attrs["nef"].get("name"),
              "params_per_nef": int(store.layout.size), "num_rows": int(len(rows)), "done": int(store.done.sum()),
              "total": int(len(store)), "psnr": stats(psnr), "store_psnr": stats(stored),
              "max_abs_psnr_diff": float(np.max(np.abs(psnr - stored))), "snr_db": stats(snr),
              "sample_rate": int(store.modality_info["sample_rate"])}
    files = []
    rate = store.modality_info["sample_rate"]
    for r in sampled_rows(store, rows, ins, np.random.default_rng(int(ins.sample_seed))):
        r = int(r)
        rec = store.reconstruct([r])[0].numpy().T
        gt = signals[signal_idx[r]]
        waveform_png(gt[:, 0], rec[:, 0], f"NeF {r} (signal {int(signal_idx[r])}): {float(psnr[rows == r][0]) if r in rows else float('nan'):.2f} dB",
                     out / f"wave_{r}.png")
        write_wav(out / f"rec_{r}.wav", rec, rate)
        write_wav(out / f"gt_{r}.wav", gt, rate)
        files += [f"wave_{r}.png", f"rec_{r}.wav", f"gt_{r}.wav"]
    report["files"] = files
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    report["lines"] = [
        f"inspected {len(rows)} done rows ({report['done']}/{report['total']} done) of {store.path}: psnr "
        f"{report['psnr']['mean']:.2f} ± {report['psnr']['std']:.2f} dB (store: {report['store_psnr']['mean']:.2f}), "
        f"snr {report['snr_db']['mean']:.2f} dB",
        f"wrote metrics.json and {len(files)} waveform/WAV files to {out}"]
    return report
