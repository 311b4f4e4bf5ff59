"""PCM WAV files <-> float arrays in [-1, 1] with the standard library's ``wave`` (no audio dependency)."""
from pathlib import Path

import numpy as np
import wave

from nefs.errors import FitnefError


def read_wav(path: Path) -> tuple:
    """(samples float32 (T, C) in [-1, 1], sample rate) of an 8/16/24/32-bit PCM WAV file."""
    try:
        with wave.open(str(path), "rb") as f:
            width, channels, rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
            raw = f.readframes(f.getnframes())
    except (wave.Error, EOFError, OSError) as e:
        raise FitnefError(f"cannot read {path}: {e} (expected a PCM WAV file)") from None
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    elif width == 4:
        x = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    else:
        raise FitnefError(f"cannot read {path}: {8 * width}-bit samples (expected 8, 16, 24 or 32-bit PCM)")
    return x.reshape(-1, channels), rate


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    """Write float samples (T, C) or (T,) in [-1, 1] as 16-bit PCM."""
    x = np.asarray(samples, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(x.shape[1])
        f.setsampwidth(2)
        f.setframerate(int(rate))
        f.writeframes(pcm.tobytes())
