"""What a person sees while a fit runs: a progress bar over NeFs that also moves with the steps of the
chunk in flight, and a loss curve (``loss_curve.png`` in the Hydra run dir) without any logger.

The engine calls ``hook``'s function after every step; the bar text is refreshed at most every
``task.log.loss`` steps and the curve keeps on-device sums, so neither adds a device sync per step.
"""
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, total_nefs: int, num_steps: int, metric, log_cfg):
        self.num_steps, self.metric = num_steps, metric
        self.every = max(int(log_cfg.get("loss", 10) or 0), 0)
        self.bar = tqdm(total=total_nefs, unit="NeF", disable=not bool(log_cfg.progress), dynamic_ncols=True)
        self.step = 0
        self.score = ""
        self.curve: dict = {}     # step -> [sum of chunk-mean losses (device), count]

    def hook(self, logger=None):
        """The engine's on_step: this bar and curve, then the experiment logger's own."""
        def on_step(step: int, loss: torch.Tensor, params, problem) -> None:
            self.on_step(step, loss)
            if logger is not None:
                logger.on_step(step, loss, params, problem)

        return on_step

    def on_step(self, step: int, loss: torch.Tensor) -> None:
        if not self.every or step % self.every:
            return
        total = self.curve.setdefault(step, [torch.zeros((), device=loss.device), 0])
        total[0] += loss.detach().float().mean()
        total[1] += 1
        self.step = step
        self._text()

    def nefs_done(self, n: int, metrics: np.ndarray) -> None:
        self.score = f"{self.metric.name} {float(np.mean(metrics)):.2f}"
        self.bar.update(n)
        self._text()

    def _text(self) -> None:
        self.bar.set_postfix_str(f"step {self.step}/{self.num_steps}" + (f", {self.score}" if self.score else ""),
                                 refresh=False)
        self.bar.update(0)   # redraws when tqdm's own interval has passed

    def close(self) -> Optional[Path]:
        self.bar.close()
        out = run_dir()
        if out is None or not self.curve:
            return None
        steps = sorted(self.curve)
        losses = [float(self.curve[s][0]) / self.curve[s][1] for s in steps]
        path = out / "loss_curve.png"
        line_plot(np.asarray(steps), np.asarray(losses), path, title="mean training loss per step (all chunks)")
        log.info("loss curve: %s", path)
        return path


def run_dir() -> Optional[Path]:
    """The Hydra run dir of this process, or None when not run under Hydra."""
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not under Hydra (called from Python)
        return None


def line_plot(x: np.ndarray, y: np.ndarray, path: Path, title: str, size=(640, 400)) -> None:
    """A plain line plot (log-scaled y when the values span more than a decade) with pillow alone."""
    w, h = size
    left, right, top, bottom = 70, 20, 30, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    y = np.asarray(y, np.float64)
    logy = bool(np.all(y > 0) and y.max() > 10 * y.min())
    v = np.log10(y) if logy else y
    lo, hi = float(v.min()), float(v.max())
    hi = hi if hi > lo else lo + 1.0
    x0, x1 = float(x.min()), float(x.max()) if x.max() > x.min() else float(x.min()) + 1.0
    px = left + (x - x0) / (x1 - x0) * (w - left - right)
    py = top + (hi - v) / (hi - lo) * (h - top - bottom)
    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    draw.line(list(zip(px.tolist(), py.tolist())), fill=(30, 90, 200), width=2)
    fmt = (lambda t: f"{10 ** t:.3g}") if logy else (lambda t: f"{t:.3g}")
    draw.text((4, top - 6), fmt(hi), fill="black")
    draw.text((4, h - bottom - 6), fmt(lo), fill="black")
    draw.text((left, h - bottom + 6), f"{x0:g}", fill="black")
    draw.text((w - right - 40, h - bottom + 6), f"{x1:g}", fill="black")
    draw.text((left, 8), title + (" (log y)" if logy else ""), fill="black")
    draw.text(((w - 30) // 2, h - 18), "step", fill="black")
    img.save(path)
