"""Experiment loggers for fits (``logger=none`` default, ``logger=wandb``).

The engine knows nothing of them: ``ChunkFitter(on_step=...)`` calls ``Logger.on_step(step, loss,
params, problem)`` after each optimizer step, and the fitting loop calls ``rows`` for every batch of
finished NeFs and ``finish`` at the end. wandb is imported only when ``logger=wandb`` is chosen; it
honours ``WANDB_MODE`` (``offline`` works with no account and no network).
"""
import dataclasses
import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from nefs.errors import FitnefError
from nefs.stack import stacked_forward

from .progress import run_dir

log = logging.getLogger(__name__)


def make_logger(cfg: DictConfig, modality, template: torch.nn.Module) -> Optional["WandbLogger"]:
    """The logger the config asks for (``logger=...``), or None."""
    lg = cfg.get("logger") or {}
    name = lg.get("name", "none") if isinstance(lg, (dict, DictConfig)) else str(lg)
    if name in (None, "none"):
        return None
    if name not in ("none", "wandb", None):
        raise FitnefError(f"logger={name!r}: available loggers are none, wandb")
    return WandbLogger(cfg, modality, template)


class WandbLogger:
    """Loss and metric curves (mean over the chunk's NeFs), sample reconstructions, the config."""

    def __init__(self, cfg: DictConfig, modality, template: torch.nn.Module):
        try:
            import wandb   # an optional extra: imported by the logger that uses it
        except ImportError:
            raise FitnefError("logger=wandb needs the wandb package: pip install 'fitnef[wandb]'") from None
        self.wandb = wandb
        lg = cfg.get("logger") or {}
        lg = lg if isinstance(lg, (dict, DictConfig)) else {}
        log_cfg = OmegaConf.select(cfg, "task.log", default={}) or {}
        self.every_loss = max(int(log_cfg.get("loss", 10) or 0), 0)
        self.every_metric = max(int(log_cfg.get("metrics", 10) or 0), 0)
        self.every_images = max(int(log_cfg.get("images", 500) or 0), 0)
        self.num_images = int(lg.get("num_images", 4) or 0)
        self.modality = modality
        self.forward = stacked_forward(template)
        out = Path(lg.get("dir") or run_dir() or Path.cwd())
        out.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=lg.get("project") or "fitnef", entity=lg.get("entity"), name=lg.get("run_name"),
            mode=lg.get("mode") or None,   # None: WANDB_MODE, else online
            dir=str(out), config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous")
        self.run.define_metric("global_step")
        self.run.define_metric("train/*", step_metric="global_step")
        self.metric_name = modality.metric.name
        self._base, self._last, self._chunk = 0, 0, 0
        self.fitted = 0

    # -- called by the engine after each optimizer step --------------------------------------
    def on_step(self, step: int, loss: torch.Tensor, params: dict, problem) -> None:
        if step <= self._last:     # a new chunk started: keep the x axis increasing
            self._base += self._last
            self._chunk += 1
        self._last = step
        record = {}
        if self.every_loss and step % self.every_loss == 0:
            record["train/loss"] = float(loss.float().mean())
        if self.every_metric and step % self.every_metric == 0:
            record[f"train/{self.metric_name}"] = float(problem.metric(self.forward, params).float().mean())
        if self.every_images and self.num_images and step % self.every_images == 0:
            panel = self.modality.log_panel(self.forward, params, problem, self.num_images)
            if panel is not None:
                record["train/reconstructions"] = self.wandb.Image(
                    panel, caption=f"chunk {self._chunk} step {step}: ground truth (top), reconstruction (bottom)")
        if record:
            record.update({"global_step": self._base + step, "train/step": step, "train/chunk": self._chunk})
            self.run.log(record)

    # -- called by the fitting loop ------------------------------------------------------------
    def rows(self, rows: np.ndarray, metric: np.ndarray) -> None:
        self.fitted += len(rows)
        record = {"nefs/fitted": self.fitted, f"nefs/{self.metric_name}_mean": float(np.mean(metric))}
        if len(metric) > 1:
            record[f"nefs/{self.metric_name}"] = self.wandb.Histogram(np.asarray(metric, dtype=np.float64))
        self.run.log(record)

    def finish(self, summary=None) -> None:
        if summary is not None:
            self.run.summary.update({f"fit/{k}": v for k, v in dataclasses.asdict(summary).items()
                                     if isinstance(v, (int, float, str))})
        self.run.finish()


def image_strip(gt: torch.Tensor, rec: torch.Tensor, zoom: int = 4) -> np.ndarray:
    """(k, H, W, C) ground truths and reconstructions in [0, 1] -> uint8 image, GT row over recon row."""
    k, h, w, c = gt.shape
    top = torch.cat(list(gt.float().cpu()), dim=1)
    bottom = torch.cat(list(rec.float().cpu()), dim=1)
    img = (torch.cat([top, bottom], dim=0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    img = img.repeat(zoom, axis=0).repeat(zoom, axis=1)
    return img[..., 0] if c == 1 else img
