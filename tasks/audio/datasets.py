"""Audio datasets: every signal in memory as float32 (M, T, C) in [-1, 1], one sample rate.

``Tones`` is generated here (the offline default); ``AudioFolder`` reads any folder of WAV files.
As with images, problems with the user's data are one-line ``FitnefError``s raised by ``load()``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nefs.errors import FitnefError

from ..data_source import DataSource, data_path_note
from .wav import read_wav


@dataclass
class AudioData:
    signals: np.ndarray   # float32 (M, T, C) in [-1, 1]
    labels: np.ndarray    # int64 (M,), -1 where there is no label
    sample_rate: int


class AudioDataset(DataSource):
    def load(self) -> AudioData:
        self.check_options()
        data = self._read()
        channels = data.signals.shape[-1]
        if self.out_channels is not None and int(self.out_channels) != channels:
            raise FitnefError(f"dataset.out_channels={self.out_channels} but {self.name} has {channels} channel(s)")
        return data

    def _read(self) -> AudioData:  # pragma: no cover - abstract
        raise NotImplementedError


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FitnefError(f"dataset.{name}={value!r}: expected a positive integer")
    return value


class Tones(AudioDataset):
    """Generated notes: class k is a tone at the k-th semitone above ``base_hz``, with seeded harmonics,
    phases and decay, so each signal is its own and the default audio fit needs no download."""

    options = ("num_signals", "length", "sample_rate", "num_classes", "base_hz", "seed")

    def __init__(self, name="tones", path=None, out_channels=None, num_signals: int = 256, length: int = 1024,
                 sample_rate: int = 4000, num_classes: int = 6, base_hz: float = 55.0, seed: int = 0, **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.num_signals, self.length, self.sample_rate = num_signals, length, sample_rate
        self.num_classes, self.base_hz, self.seed = num_classes, base_hz, seed

    def _read(self) -> AudioData:
        m, t = _positive("num_signals", self.num_signals), _positive("length", self.length)
        rate, k = _positive("sample_rate", self.sample_rate), _positive("num_classes", self.num_classes)
        rng = np.random.default_rng(int(self.seed))
        labels = np.arange(m, dtype=np.int64) % k
        time = np.arange(t) / rate
        out = np.zeros((m, t), np.float64)
        for i, c in enumerate(labels):
            f0 = float(self.base_hz) * 2 ** (c / 12)
            amps = rng.uniform(0.2, 1.0, 3) / np.arange(1, 4)
            phases = rng.uniform(0, 2 * np.pi, 3)
            decay = rng.uniform(0.5, 4.0)
            wave_ = sum(a * np.sin(2 * np.pi * f0 * (h + 1) * time + p) for h, (a, p) in enumerate(zip(amps, phases)))
            out[i] = wave_ * np.exp(-decay * time / time[-1])
        out /= np.abs(out).max(axis=1, keepdims=True) * 1.05
        return AudioData(out[..., None].astype(np.float32), labels, rate)


class AudioFolder(AudioDataset):
    """Every ``*.wav`` under the folder, sorted by relative path; label = first sub-folder (else -1).
    All files need one sample rate and channel count; ``length`` crops (or zero-pads) each to that many
    samples, else all must be equally long."""

    options = ("length",)

    def __init__(self, name="audio_folder", path=None, out_channels=None, length: int | None = None, **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.length = length

    def _read(self) -> AudioData:
        root = self.root
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".wav") if root.is_dir() else []
        if not files:
            raise FitnefError(f"{self.name}: no .wav files under {root.absolute()} "
                              f"(dataset.path={self.path!r}; {data_path_note()})")
        length = None if self.length is None else _positive("length", self.length)
        signals, rates = [], set()
        for f in files:
            x, rate = read_wav(f)
            rates.add(rate)
            if length is not None:
                x = np.pad(x[:length], ((0, max(0, length - len(x))), (0, 0)))
            signals.append(x)
        if len(rates) > 1:
            raise FitnefError(f"{self.name}: files under {root} have sample rates {sorted(rates)}; resample them to one")
        shapes = {s.shape for s in signals}
        if len(shapes) > 1:
            lens = sorted({s[0] for s in shapes})
            chans = sorted({s[1] for s in shapes})
            if len(chans) > 1:
                raise FitnefError(f"{self.name}: files under {root} have {chans} channels; use one channel count")
            raise FitnefError(f"{self.name}: files under {root} have {len(lens)} lengths ({lens[0]}..{lens[-1]} "
                              f"samples); set dataset.length=<samples> to crop/pad them to one")
        classes = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.asarray([index.get(f.relative_to(root).parts[0], -1) if len(f.relative_to(root).parts) > 1 else -1
                             for f in files], np.int64)
        return AudioData(np.stack(signals).astype(np.float32), labels, rates.pop())
