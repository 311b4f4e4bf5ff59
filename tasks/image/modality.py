"""Images as signals: coordinate grid, normalisation, per-step pixel sampling, loss and PSNR.

Conventions follow fit-a-nef: coordinates on linspace(-1, 1) with coords[..., 0] the column (x)
and coords[..., 1] the row (y) of a row-major flattened image; pixels standardised by the dataset's
per-channel mean/std for training (the data's own, or ``task.pixels``: a NeF then fits
(pixel - mean) / std, so mean 0.5 / std 1 is DWSNets' "linear output + 0.5" and 0.5 / 0.5 NFN's [-1, 1]
images, exactly in their parameterisation); metrics on the [0, 1] scale, reconstructions clamped to it.
"""

import numpy as np
import torch

from nefs.errors import FitnefError
from nefs.keyed import keyed_subset
from nefs.modality import Metric, register
from nefs.stack import stacked_forward
from tasks.loggers import image_strip

from .coords import make_grid
from .schema import ImageTaskConfig
from .signals import ArrayImages, ImageSignals

__all__ = ["ImageModality", "ImageProblem", "make_grid", "psnr"]


def psnr(pred01: torch.Tensor, target01: torch.Tensor) -> torch.Tensor:
    """Per-item PSNR (peak 1) over all but the first dim; inputs on the [0, 1] scale."""
    mse = ((pred01 - target01) ** 2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


@register
class ImageModality:
    """Images (M, H, W, C): one NeF per image (nefs.modality.Modality)."""

    name = "image"
    metric = Metric("psnr", "dB", higher_is_better=True)
    task_schema = ImageTaskConfig
    in_features = 2

    def __init__(self, images, mean=None, std=None):
        """images: ``ImageSignals`` (tasks/image/signals.py: decoded as rows need them) or a uint8 array
        (M, H, W, C). mean/std: per channel on [0, 1]; default the dataset-wide values of ``images``."""
        self.signals = images if isinstance(images, ImageSignals) else ArrayImages(
            np.asarray(images), np.full(len(images), -1, np.int64))
        self.height, self.width, self.channels = self.signals.shape
        if mean is None:
            mean, std = self.signals.stats()
        self.mean = torch.tensor(np.asarray(mean), dtype=torch.float32)
        self.std = torch.tensor(np.asarray(std), dtype=torch.float32)

    @classmethod
    def from_data(cls, data, task_cfg=None) -> "ImageModality":
        if task_cfg is not None and not 0 < float(task_cfg.train.masked_portion) <= 1:
            raise FitnefError(f"task.train.masked_portion={task_cfg.train.masked_portion}: must be in (0, 1]")
        signals = getattr(data, "signals", None)
        source = data.images if signals is None else signals
        pixels = task_cfg.get("pixels") if task_cfg is not None else None
        if not pixels:
            return cls(source)
        channels = source.shape[-1]
        mean, std = list(pixels.mean), list(pixels.std)
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise FitnefError(f"task.pixels: mean={mean}, std={std}: need {channels} values each (one per channel "
                              f"of the images), std > 0")
        return cls(source, mean, std)

    @property
    def images(self) -> np.ndarray:
        """All images (M, H, W, C) uint8, every one decoded: for tools, not for a fit."""
        return self.signals.images

    @property
    def out_features(self) -> int:
        return self.channels

    def __len__(self) -> int:
        return len(self.signals)

    def signal_bytes(self, i: int) -> bytes:
        """Image i as the store's data fingerprint sees it (nefs/fingerprint.py): its size and uint8 pixels
        (the bytes ``array_signal_bytes`` gives for the same image in an (M, H, W, C) array)."""
        return np.asarray(self.signals.shape, np.int64).tobytes() + self.signals.read([int(i)])[0].tobytes()

    def prefetch(self, signal_idx) -> None:
        """Decode these images now, in parallel (the fingerprint asks for them one by one next)."""
        self.signals.prefetch(signal_idx)

    def attrs(self) -> dict:
        """What a store needs to decode its NeFs without the dataset."""
        return {"shape": [self.height, self.width, self.channels],
                "mean": self.mean.tolist(), "std": self.std.tolist()}

    def row_arrays(self) -> dict:
        return {}

    def targets01(self, signal_idx: np.ndarray, device=None) -> torch.Tensor:
        """(n, H*W, C) ground truth on [0, 1]."""
        x = torch.from_numpy(self.signals.read(np.asarray(signal_idx)))
        if torch.device(device or "cpu").type == "cuda":  # uint8 over the bus, asynchronously
            x = x.pin_memory().to(device, non_blocking=True)
        return x.to(device).reshape(len(signal_idx), -1, self.channels).float() / 255.0

    def problem(self, signal_idx, seeds, nef_idx, train_cfg=None, device=None) -> "ImageProblem":
        """The engine's view of these signals; train_cfg supplies ``masked_portion``."""
        masked_portion = 1.0 if train_cfg is None else float(train_cfg.masked_portion)
        gt = self.targets01(signal_idx, device)
        return ImageProblem(gt, self.mean.to(device), self.std.to(device),
                            make_grid(self.height, self.width, device),
                            torch.as_tensor(np.asarray(seeds), device=device),
                            torch.as_tensor(np.asarray(nef_idx), device=device), masked_portion)

    @staticmethod
    def reconstruct(store, flat_params: torch.Tensor, device="cpu") -> torch.Tensor:
        """Rows of a store -> (n, C, H, W) images clamped to [0, 1]."""
        h, w, c = store.modality_info["shape"]
        mean = torch.tensor(store.modality_info["mean"], device=device)
        std = torch.tensor(store.modality_info["std"], device=device)
        template = store.build_model().to(device)
        params = store.layout.unflatten(flat_params.to(device))
        with torch.no_grad():
            pred = stacked_forward(template)(params, make_grid(h, w, device))
        img = (pred * std + mean).clamp(0, 1)
        return img.reshape(-1, h, w, c).permute(0, 3, 1, 2).contiguous()

    @classmethod
    def inspect(cls, cfg, store, out, data_path=None, device="cpu") -> dict:
        from .inspect import run   # on first use: a store that only decodes rows loads no inspection code

        return run(cfg, out, store, data_path, device)

    def log_panel(self, forward, params, problem, k: int):
        """Ground truth over reconstruction for the chunk's first ``k`` NeFs, uint8 (H', W'[, C])."""
        k = min(k, problem.gt01.shape[0])
        h, w, c = self.height, self.width, self.channels
        with torch.no_grad():
            pred = forward({n: v[:k] for n, v in params.items()}, problem.coords)
            rec = (pred * problem.std + problem.mean).clamp(0, 1)
        return image_strip(problem.gt01[:k].reshape(k, h, w, c), rec.reshape(k, h, w, c))


class ImageProblem:
    """One chunk of images for the engine (see nefs.engine.Problem)."""

    per_nef_fields = ("gt01", "targets", "seeds", "nef_idx")
    fused_loss = "mse"   # ``loss`` as the fused step names it (nefs/fused)

    def __init__(self, gt01, mean, std, coords, seeds, nef_idx, masked_portion):
        self.gt01 = gt01
        self.mean, self.std = mean, std
        self.targets = (gt01 - mean) / std
        self.coords = coords
        self.seeds, self.nef_idx = seeds, nef_idx
        self.masked_portion = float(masked_portion)
        self.num_sampled = max(1, int(self.masked_portion * coords.shape[0]))

    def train_batch(self, step: int):
        if self.masked_portion >= 1.0:
            return self.coords, self.targets, False
        idx = keyed_subset(self.seeds, self.nef_idx, step, self.coords.shape[0], self.num_sampled)
        coords = self.coords[idx]                                        # (n, k, 2)
        targets = torch.gather(self.targets, 1, idx[..., None].expand(-1, -1, self.targets.shape[-1]))
        return coords, targets, True

    @staticmethod
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((pred - target) ** 2).mean()

    def metric(self, forward, params) -> torch.Tensor:
        with torch.no_grad():
            pred = forward(params, self.coords)
        return psnr((pred * self.std + self.mean).clamp(0, 1), self.gt01)
