"""dataset=torchvision (issue 20, part 2): any image dataset of torchvision.datasets by class name, on files the
test writes in each class's own layout."""
import numpy as np
import pytest
from PIL import Image

from nefs.errors import FitnefError
from tasks.fitting import fit
from tasks.image import datasets as D

RNG = np.random.default_rng(2)


@pytest.fixture
def data_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PATH", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


def idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes() + array.tobytes()


def write_emnist(root, n=5):
    """EMNIST's letters split (test part) as torchvision reads it: raw/emnist-letters-test-*-ubyte."""
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    x = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = RNG.integers(1, 27, n).astype(np.uint8)
    (raw / "emnist-letters-test-images-idx3-ubyte").write_bytes(idx(x))
    (raw / "emnist-letters-test-labels-idx1-ubyte").write_bytes(idx(y))
    return x, y


def test_emnist_letters_whole_array_with_labels(data_path):
    from torchvision.datasets import EMNIST

    x, y = write_emnist(data_path)
    ds = D.TorchvisionDataset(name="EMNIST", kwargs={"split": "letters", "train": False}, download=False)
    data = ds.load()
    assert data.images.shape == (5, 28, 28, 1)
    tv = EMNIST(str(data_path), split="letters", train=False)   # torchvision's own items
    for k in range(5):
        np.testing.assert_array_equal(data.images[k, ..., 0], np.asarray(tv[k][0]))
    np.testing.assert_array_equal(data.labels, y)


def write_pets(root, sizes=((30, 20), (24, 24), (20, 36))):
    """OxfordIIITPet: images/<id>.jpg and annotations/test.txt ("<id> <class 1..> <species> <breed>")."""
    base = root / "oxford-iiit-pet"
    (base / "images").mkdir(parents=True)
    (base / "annotations").mkdir()
    lines, arrays = [], []
    for k, (w, h) in enumerate(sizes):
        arr = np.zeros((h, w, 3), np.uint8)
        arr[:] = (40 * k + 20, 200 - 50 * k, 90)
        Image.fromarray(arr).save(base / "images" / f"Breed_{k}.jpg", quality=98)
        lines.append(f"Breed_{k} {k + 1} 1 1")
        arrays.append(arr)
    (base / "annotations" / "test.txt").write_text("\n".join(lines) + "\n")
    return arrays


def test_oxford_pets_item_by_item_with_resolution_and_labels(data_path):
    colors = write_pets(data_path)
    ds = D.TorchvisionDataset(name="OxfordIIITPet", kwargs={"split": "test"}, resolution=8, download=False)
    data = ds.load()
    assert data.signals.shape == (8, 8, 3) and len(data.signals) == 3
    np.testing.assert_array_equal(data.labels, [0, 1, 2])
    for k, arr in enumerate(colors):
        assert np.abs(data.images[k].astype(int) - arr[0, 0]).max() <= 3    # JPEG noise only
    with pytest.raises(FitnefError, match=r"OxfordIIITPet item 1: image is 24x24 but OxfordIIITPet item 0 is 30x20"):
        D.TorchvisionDataset(name="OxfordIIITPet", kwargs={"split": "test"}, download=False).load()


def test_fit_through_the_config_group(compose, data_path, tmp_path):
    write_emnist(data_path, n=6)
    summary = fit(compose("dataset=torchvision", "dataset.name=EMNIST", "dataset.kwargs={split: letters, train: false}", "task.train.num_steps=2", "task.train.compile=false",
                          "nef.hidden_dim=8"))
    assert summary.fitted == 6 and np.isfinite(summary.metric_mean)


def test_unknown_name_and_non_image_dataset_are_one_line(data_path):
    with pytest.raises(FitnefError, match=r"dataset.name='EMNST'.*did you mean EMNIST") as err:
        D.TorchvisionDataset(name="EMNST").load()
    assert "\n" not in str(err.value)
    with pytest.raises(FitnefError, match="not a dataset class"):
        D.TorchvisionDataset(name="download_url").load()
    (data_path / "MovingMNIST").mkdir()
    np.save(data_path / "MovingMNIST" / "mnist_test_seq.npy", np.zeros((20, 2, 64, 64), np.uint8))
    with pytest.raises(FitnefError, match=r"MovingMNIST is not an image dataset: its items are Tensor of shape") as err:
        D.TorchvisionDataset(name="MovingMNIST", download=False).load()
    assert "\n" not in str(err.value)
    with pytest.raises(FitnefError, match=r"torchvision.datasets.Flowers102\(root=.*failed: RuntimeError"):
        D.TorchvisionDataset(name="Flowers102", download=False).load()
