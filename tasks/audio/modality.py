"""Audio as signals: one NeF per 1-D recording, f(t) -> samples, with t on linspace(-1, 1).

A recording is a signal on a regular grid, like an image with one coordinate, so the training problem
is the image modality's gridded-signal problem (MSE on standardised values, keyed per-NeF subsets of
samples with ``masked_portion``); samples in [-1, 1] are mapped to [0, 1] for it, so the metric is PSNR
with the peak-to-peak range 2 of [-1, 1].
"""
import numpy as np
import torch

from nefs.errors import FitnefError
from nefs.fingerprint import array_signal_bytes
from nefs.modality import Metric, register
from nefs.stack import stacked_forward
from tasks.image.modality import ImageProblem

from .schema import AudioTaskConfig
from .wav import write_wav


def time_grid(length: int, device=None) -> torch.Tensor:
    """(T, 1) coordinates in [-1, 1]."""
    return torch.linspace(-1, 1, length, device=device)[:, None]


@register
class AudioModality:
    """Recordings (M, T, C) in [-1, 1]: one NeF per recording (nefs.modality.Modality)."""

    name = "audio"
    metric = Metric("psnr", "dB", higher_is_better=True)
    task_schema = AudioTaskConfig
    store_ops = ("to_wav",)      # store.to_wav(row, path): the reconstruction as a WAV file
    in_features = 1

    def __init__(self, signals: np.ndarray, sample_rate: int):
        self.signals = np.asarray(signals, np.float32)
        self.sample_rate = int(sample_rate)
        _, self.length, self.channels = self.signals.shape
        x = (self.signals.reshape(-1, self.channels).astype(np.float64) + 1) / 2
        self.mean = torch.tensor(x.mean(axis=0), dtype=torch.float32)
        self.std = torch.tensor(np.sqrt(np.maximum(x.var(axis=0), 1e-12)), dtype=torch.float32)

    @classmethod
    def from_data(cls, data, task_cfg=None) -> "AudioModality":
        if not hasattr(data, "signals") or not hasattr(data, "sample_rate"):
            raise FitnefError("task=audio needs an audio dataset: dataset=tones (default) or dataset=audio_folder")
        if task_cfg is not None and not 0 < float(task_cfg.train.masked_portion) <= 1:
            raise FitnefError(f"task.train.masked_portion={task_cfg.train.masked_portion}: must be in (0, 1]")
        return cls(data.signals, data.sample_rate)

    @property
    def out_features(self) -> int:
        return self.channels

    def __len__(self) -> int:
        return self.signals.shape[0]

    def signal_bytes(self, i: int) -> bytes:
        """Recording i as the store's data fingerprint sees it (nefs/fingerprint.py): shape and float32 samples."""
        return array_signal_bytes(self.signals, i)

    def attrs(self) -> dict:
        return {"length": self.length, "channels": self.channels, "sample_rate": self.sample_rate,
                "mean": self.mean.tolist(), "std": self.std.tolist()}

    def row_arrays(self) -> dict:
        return {}

    def problem(self, signal_idx, seeds, nef_idx, train_cfg=None, device=None) -> ImageProblem:
        masked_portion = 1.0 if train_cfg is None else float(train_cfg.masked_portion)
        gt01 = (torch.from_numpy(self.signals[np.asarray(signal_idx)]).to(device) + 1) / 2
        return ImageProblem(gt01, self.mean.to(device), self.std.to(device), time_grid(self.length, device),
                            torch.as_tensor(np.asarray(seeds), device=device),
                            torch.as_tensor(np.asarray(nef_idx), device=device), masked_portion)

    # -- decoding a store's rows ----------------------------------------------------------------
    @staticmethod
    def reconstruct(store, flat_params: torch.Tensor, device="cpu") -> torch.Tensor:
        """Rows -> (n, C, T) samples in [-1, 1]."""
        info = store.modality_info
        mean = torch.tensor(info["mean"], device=device)
        std = torch.tensor(info["std"], device=device)
        params = store.layout.unflatten(flat_params.to(device))
        with torch.no_grad():
            pred = stacked_forward(store.build_model().to(device))(params, time_grid(info["length"], device))
        return ((pred * std + mean).clamp(0, 1) * 2 - 1).permute(0, 2, 1).contiguous()

    @classmethod
    def to_wav(cls, store, row: int, path) -> None:
        """Write row ``row``'s reconstruction as a 16-bit WAV file at the dataset's sample rate."""
        write_wav(path, store.reconstruct([int(row)])[0].T.numpy(), store.modality_info["sample_rate"])

    # -- tools ------------------------------------------------------------------------------------
    @classmethod
    def inspect(cls, cfg, store, out, data_path=None, device="cpu") -> dict:
        from .inspect import run   # on first use: a store that only decodes rows loads no inspection code

        return run(cfg, out, store, data_path, device)

    def log_panel(self, forward, params, problem, k: int):
        return None
