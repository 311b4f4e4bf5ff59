"""task=audio: a third modality built only from its own package and conf files, and what it gets for free
(fit, resume, store API, inspect, status)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nefs import open_store
from nefs.errors import FitnefError
from tasks.audio.datasets import AudioFolder, Tones
from tasks.audio.wav import read_wav, write_wav
from tasks.fitting import fit

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["task=audio", "dataset.num_signals=12", "dataset.length=256", "task.train.num_steps=150",
         "scheduler.value=1e-3", "task.train.compile=false"]


def test_wav_roundtrip_and_bit_depths(tmp_path):
    x = np.sin(np.linspace(0, 20, 300))[:, None] * 0.8
    write_wav(tmp_path / "a.wav", x, 8000)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and y.shape == (300, 1) and np.abs(y - x).max() < 1e-4
    import wave

    with wave.open(str(tmp_path / "b.wav"), "wb") as f:   # 8-bit unsigned PCM, stereo
        f.setnchannels(2), f.setsampwidth(1), f.setframerate(4000)
        f.writeframes(bytes([128, 255, 0, 128] * 10))
    y, _ = read_wav(tmp_path / "b.wav")
    assert y.shape == (20, 2) and y[0, 0] == 0 and y[0, 1] > 0.99 and y[1, 0] == -1
    (tmp_path / "c.wav").write_bytes(b"not a wav")
    with pytest.raises(FitnefError, match="c.wav"):
        read_wav(tmp_path / "c.wav")


def test_audio_folder_reads_labels_and_refuses_mixed_lengths(tmp_path):
    for cls, n in (("cat", 2), ("dog", 1)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            write_wav(tmp_path / cls / f"{i}.wav", np.zeros((100, 1)) + 0.1 * i, 4000)
    data = AudioFolder(path=str(tmp_path)).load()
    assert data.signals.shape == (3, 100, 1) and list(data.labels) == [0, 0, 1] and data.sample_rate == 4000
    write_wav(tmp_path / "dog" / "long.wav", np.zeros((150, 1)), 4000)
    with pytest.raises(FitnefError, match="dataset.length"):
        AudioFolder(path=str(tmp_path)).load()
    assert AudioFolder(path=str(tmp_path), length=120).load().signals.shape == (4, 120, 1)
    with pytest.raises(FitnefError, match="no .wav files"):
        AudioFolder(path=str(tmp_path / "none")).load()


def test_tones_are_seeded_signals_in_range():
    a, b = Tones(num_signals=12, length=256).load(), Tones(num_signals=12, length=256).load()
    assert a.signals.shape == (12, 256, 1) and np.array_equal(a.signals, b.signals)
    assert np.abs(a.signals).max() <= 1 and list(a.labels[:7]) == [0, 1, 2, 3, 4, 5, 0]


@pytest.mark.slow
def test_fit_an_audio_dataset_and_use_the_store(compose, tmp_path):
    summary = fit(compose(*SMALL))
    assert summary.fitted == 12 and summary.metric == "psnr" and summary.metric_mean > 25
    s = open_store(tmp_path / "store")
    assert s.modality_info["name"] == "audio" and s.modality_info["sample_rate"] == 4000
    rec = s.reconstruct([0, 3])
    assert tuple(rec.shape) == (2, 1, 256) and float(rec.abs().max()) <= 1
    gt = Tones(num_signals=12, length=256).load().signals
    mse = ((rec.numpy().transpose(0, 2, 1) - gt[[0, 3]]) ** 2).mean(axis=(1, 2))
    assert np.allclose(-10 * np.log10(mse / 4), s["psnr"][[0, 3]], atol=1e-2)
    s.to_wav(3, tmp_path / "r.wav")
    y, rate = read_wav(tmp_path / "r.wav")
    assert rate == 4000 and np.abs(y[:, 0] - rec[1, 0].numpy()).max() < 1e-3
    assert fit(compose(*SMALL)).fitted == 0   # resume: nothing left


@pytest.mark.slow
def test_inspect_and_status_of_an_audio_store(tmp_path):
    store = tmp_path / "store"
    common = [f"task.nef_dir={store}", "task.log.progress=false"]
    run = subprocess.run([sys.executable, "-m", "tasks.fit", *SMALL, *common, f"hydra.run.dir={tmp_path / 'fit'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    ins = subprocess.run([sys.executable, "-m", "tasks.inspect", f"task.nef_dir={store}", "inspect.num_samples=2",
                          f"hydra.run.dir={tmp_path / 'ins'}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert ins.returncode == 0, ins.stderr[-2000:]
    report = json.loads((tmp_path / "ins" / "metrics.json").read_text())
    assert report["modality"] == "audio" and report["num_rows"] == 12
    assert report["max_abs_psnr_diff"] < 0.01
    files = sorted(p.name for p in (tmp_path / "ins").iterdir() if p.suffix in (".png", ".wav"))
    assert len(files) == 6 and any(f.startswith("wave_") for f in files) and any(f.startswith("rec_") for f in files)
    st = subprocess.run([sys.executable, "-m", "tasks.status", f"task.nef_dir={store}"], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
    assert st.returncode == 0 and "12/12 done" in st.stdout and "dB" in st.stdout, st.stdout + st.stderr


def test_audio_task_refuses_an_image_dataset(compose):
    with pytest.raises(FitnefError, match="task=audio needs an audio dataset"):
        fit(compose("task=audio", "dataset=digits", "task.train.end_idx=2"))
