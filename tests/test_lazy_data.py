"""A process loads only its range (issue 20, part 3): images are decoded for the rows being fitted, the
dataset-wide values come from a cache beside the data, and a shard's NeFs equal a whole-range fit's."""
import json

import numpy as np
import pytest
from PIL import Image

from nefs import open_store
from nefs.errors import FitnefError
from tasks.fitting import fit
from tasks.image import datasets as D
from tasks.image import signals as S

N = 40
TINY = ["dataset=folder", "dataset.path=imgs", "task.train.num_steps=3", "task.train.compile=false",
        "nef.hidden_dim=8", "task.train.num_parallel_nefs=4", "scheduler.value=1e-2"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """N small RGB images in two class folders under $DATA_PATH/imgs."""
    monkeypatch.setenv("DATA_PATH", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    files = []
    for k in range(N):
        path = tmp_path / "data" / "imgs" / ("a" if k < N // 2 else "b") / f"{k:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files


@pytest.fixture
def opened(monkeypatch):
    """Paths of the image files opened (PIL.Image.open) while the test runs."""
    seen = []
    real = Image.open

    def spy(fp, *args, **kwargs):
        seen.append(str(fp))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    return seen


def test_a_tenth_shard_opens_only_its_own_files_and_equals_the_whole_fit(compose, tmp_path, folder, opened):
    whole = fit(compose(*TINY, nef_dir=tmp_path / "whole"))
    assert whole.fitted == N
    cache = list((tmp_path / "data" / "imgs" / ".fitnef").glob("*.json"))   # dataset-wide values, beside the data
    assert len(cache) == 1 and json.loads(cache[0].read_text())["shape"] == [8, 8, 3]

    opened.clear()
    shard = fit(compose(*TINY, "task.num_shards=10", "task.shard=3", nef_dir=tmp_path / "sharded"))
    lo, hi = shard.start_idx, shard.end_idx
    assert (lo, hi) == (12, 16) and shard.fitted == 4
    assert sorted(opened) == [str(f) for f in folder[lo:hi]]   # each of its own files once, no other

    a, b = open_store(tmp_path / "sharded"), open_store(tmp_path / "whole")
    assert a.done[lo:hi].all() and a.done.sum() == hi - lo
    assert np.array_equal(np.asarray(a.params[lo:hi]), np.asarray(b.params[lo:hi]))
    assert a.modality_info["mean"] == b.modality_info["mean"] and a.modality_info["std"] == b.modality_info["std"]
    np.testing.assert_array_equal(a.labels[lo:hi], b.labels[lo:hi])


def test_stats_are_taken_from_an_even_sample_and_cached(tmp_path, folder, monkeypatch, opened):
    monkeypatch.setattr(S, "STATS_SAMPLE", 10)
    data = D.ImageFolder(name="folder", path="imgs").load()
    assert len(data.signals) == N and data.signals.shape == (8, 8, 3)
    sample = [str(folder[k]) for k in np.linspace(0, N - 1, 10).round().astype(int)]
    assert opened == sample                                   # the sample only, nothing decoded for the fit yet
    mean, std = data.signals.stats()
    expected = S.pixel_stats(np.stack([np.asarray(Image.open(f)) for f in sample]))
    np.testing.assert_allclose(mean, expected[0]) and np.testing.assert_allclose(std, expected[1])

    opened.clear()
    again = D.ImageFolder(name="folder", path="imgs").load()   # another process: values from the cache
    np.testing.assert_array_equal(again.signals.stats()[0], mean)
    assert again.signals.read([5, 7]).shape == (2, 8, 8, 3) and opened == [str(folder[5]), str(folder[7])]


def test_decoding_runs_on_a_pool_and_matches_one_by_one(tmp_path, folder):
    data = D.ImageFolder(name="folder", path="imgs").load()
    lazy = data.signals
    lazy._workers = 2
    rows = np.arange(N)[::-1]
    got = lazy.read(rows)
    want = np.stack([np.asarray(Image.open(folder[k]).convert("RGB")) for k in rows])
    np.testing.assert_array_equal(got, want)


def test_bad_files_are_one_line_naming_the_file(tmp_path, folder):
    folder[30].write_bytes(folder[30].read_bytes()[:40])            # truncated PNG
    with pytest.raises(FitnefError) as err:       # from load(): the statistics' sample (all 40 < 1024) holds it
        D.ImageFolder(name="folder", path="imgs").load()
    assert str(folder[30]) in str(err.value) and "\n" not in str(err.value)


def test_a_non_image_and_a_wrong_channel_count_name_the_file(tmp_path, folder, monkeypatch):
    monkeypatch.setattr(S, "STATS_SAMPLE", 2)          # sampled: files 0 and 39 (RGB)
    (folder[20].parent / "z.png").write_bytes(b"this is text, not a PNG")
    with pytest.raises(FitnefError, match="z.png.*not a readable image") as err:
        D.ImageFolder(name="folder", path="imgs").load().signals.read(np.arange(N + 1))
    assert "\n" not in str(err.value)
    (folder[20].parent / "z.png").unlink()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder[10])   # gray among RGB: read as RGB
    rgb = D.ImageFolder(name="folder", path="imgs").load().signals.read([10])
    assert rgb.shape == (1, 8, 8, 3)
    with pytest.raises(FitnefError, match=f"{folder[0]}.*out_channels=1 but this image has 3 channels"):
        D.ImageFolder(name="folder", path="imgs", out_channels=1).load()   # its sample's first file is RGB


def test_a_color_image_outside_the_sample_of_a_gray_set_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PATH", str(tmp_path))
    monkeypatch.setattr(S, "STATS_SAMPLE", 2)                        # samples the first and the last file
    for k in range(5):
        arr = np.full((4, 4, 3), 90, np.uint8) if k == 2 else np.full((4, 4), 30 * k, np.uint8)
        save_to = tmp_path / "g" / f"{k}.png"
        save_to.parent.mkdir(exist_ok=True)
        Image.fromarray(arr).save(save_to)
    data = D.ImageFolder(name="folder", path="g").load()
    assert data.signals.shape == (4, 4, 1)
    np.testing.assert_array_equal(data.signals.read([1, 3])[..., 0], [np.full((4, 4), 30), np.full((4, 4), 90)])
    with pytest.raises(FitnefError, match=r"2\.png: a RGB image \(3 channels\) among gray ones.*dataset.out_channels=3"):
        data.signals.read([2])
    rgb = D.ImageFolder(name="folder", path="g", out_channels=3).load()
    np.testing.assert_array_equal(rgb.signals.read([2])[0], np.full((4, 4, 3), 90))
