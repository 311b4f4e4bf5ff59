"""Downloads (issue 20): torchvision's files, served by a local HTTP server on 127.0.0.1 that the test starts
and reached through ``dataset.mirror``; the test substitutes its small files' MD5s for the real ones."""
import gzip
import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from nefs.errors import FitnefError
from tasks.fitting import fit
from tasks.image import datasets as D

RNG = np.random.default_rng(1)
QUICK = ["task.train.num_steps=2", "task.train.compile=false", "nef.hidden_dim=8", "task.train.end_idx=8"]


class Mirror:
    """A tiny HTTP server on 127.0.0.1 serving ``files`` (name -> bytes); counts the requests it gets."""

    def __init__(self, files: dict):
        self.files, self.requests = dict(files), []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                mirror.requests.append(self.path)
                body = mirror.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def idx_gz(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def mnist_files(n_train=6, n_test=4):
    """torchvision's four MNIST-format .gz files, and the images/labels they hold (train then test)."""
    x = RNG.integers(0, 256, (n_train + n_test, 28, 28), dtype=np.uint8)
    y = RNG.integers(0, 10, n_train + n_test).astype(np.uint8)
    files = {"train-images-idx3-ubyte.gz": idx_gz(x[:n_train]), "train-labels-idx1-ubyte.gz": idx_gz(y[:n_train]),
             "t10k-images-idx3-ubyte.gz": idx_gz(x[n_train:]), "t10k-labels-idx1-ubyte.gz": idx_gz(y[n_train:])}
    return files, x, y


@pytest.fixture
def data_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_PATH", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def served(monkeypatch):
    """(start(files, tv_class) -> Mirror): serve ``files`` with ``tv_class`` expecting their MD5s."""
    mirrors = []

    def start(files, tv_cls):
        monkeypatch.setattr(tv_cls, "resources", [(n, hashlib.md5(b).hexdigest()) for n, b in files.items()])
        mirrors.append(Mirror(files))
        return mirrors[-1]

    yield start
    for m in mirrors:
        m.close()


@pytest.mark.parametrize("dataset, cls", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_fit_downloads_verifies_and_fits_then_reuses_the_files(compose, data_path, served, dataset, cls):
    import torchvision.datasets as tvd

    files, x, y = mnist_files()
    mirror = served(files, getattr(tvd, cls))
    summary = fit(compose(f"dataset={dataset}", f"dataset.mirror={mirror.url}", *QUICK))
    assert summary.fitted == 8 and np.isfinite(summary.metric_mean)
    raw = data_path / cls / "raw"
    for name in files:   # torchvision's layout: the archives and what they unpack to
        assert (raw / name).is_file() and (raw / name[:-3]).is_file()
    assert sorted(r.lstrip("/") for r in mirror.requests if r.endswith(".gz")) and len(mirror.requests) >= 4
    data = getattr(D, cls)(name=cls, path=".", mirror=mirror.url).load()
    np.testing.assert_array_equal(data.images[..., 0], x)
    np.testing.assert_array_equal(data.labels, y)

    before = len(mirror.requests)   # files on disk: used as they are, no request at all
    fit(compose(f"dataset={dataset}", f"dataset.mirror={mirror.url}", *QUICK, nef_dir=data_path.parent / "again"))
    assert len(mirror.requests) == before


def test_a_corrupted_download_fails_its_checksum_in_one_line(data_path, served):
    import torchvision.datasets as tvd

    files, _, _ = mnist_files()
    mirror = served(files, tvd.MNIST)
    mirror.files["t10k-labels-idx1-ubyte.gz"] = b"\x1f\x8b not what was checksummed"
    with pytest.raises(FitnefError) as err:
        D.MNIST(name="MNIST", path=".", mirror=mirror.url).load()
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "MD5" in msg and mirror.url in msg and "\n" not in msg
    assert not (data_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").exists()   # not left as if it were data


def test_no_server_fails_in_one_line_naming_the_files_and_the_folder(data_path):
    with socket.socket() as s:   # a port on 127.0.0.1 that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FitnefError) as err:
        D.FashionMNIST(name="FashionMNIST", path=".", mirror=f"http://127.0.0.1:{port}/").load()
    msg = str(err.value)
    folder = data_path / "FashionMNIST" / "raw"
    assert str(folder) in msg and "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "by hand" in msg and "\n" not in msg


def test_cifar10_archive_from_a_mirror_is_unpacked_in_torchvisions_layout(data_path, monkeypatch, tmp_path):
    import pickle

    import torchvision.datasets as tvd

    names = [n for n, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list]
    hwc = RNG.integers(0, 256, (len(names), 32, 32, 3), dtype=np.uint8)
    members = {n: pickle.dumps({"data": hwc[k:k + 1].transpose(0, 3, 1, 2).reshape(1, 3072), "labels": [k]})
               for k, n in enumerate(names)}
    members["batches.meta"] = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    archive = buf.getvalue()
    md5 = lambda b: hashlib.md5(b).hexdigest()  # noqa: E731
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", md5(archive))
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[n, md5(members[n])] for n, _ in tvd.CIFAR10.train_list])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [[n, md5(members[n])] for n, _ in tvd.CIFAR10.test_list])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": md5(members["batches.meta"])})
    mirror = Mirror({"cifar-10-python.tar.gz": archive})
    try:
        data = D.CIFAR10(name="CIFAR10", path=".", mirror=mirror.url).load()
        np.testing.assert_array_equal(data.images, hwc)
        np.testing.assert_array_equal(data.labels, np.arange(len(names)))
        assert (data_path / "cifar-10-batches-py" / "test_batch").is_file()
        before = len(mirror.requests)
        D.CIFAR10(name="CIFAR10", path=".", mirror=mirror.url).load()
        assert len(mirror.requests) == before > 0
    finally:
        mirror.close()


def test_tinyimagenet_zip_from_a_mirror_as_fit_a_nef_downloads_it(data_path, monkeypatch):
    import zipfile

    from PIL import Image

    buf, arrays = io.BytesIO(), []
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("tiny-imagenet-200/wnids.txt", "n02\nn01\n")
        for k, wnid in enumerate(["n01", "n02"]):
            arr = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            png = io.BytesIO()
            Image.fromarray(arr).save(png, format="PNG")
            z.writestr(f"tiny-imagenet-200/train/{wnid}/images/{wnid}_0.JPEG", png.getvalue())
            arrays.append(arr)
    archive = buf.getvalue()
    monkeypatch.setattr(D.TinyImageNet, "MD5", hashlib.md5(archive).hexdigest())
    mirror = Mirror({"tiny-imagenet-200.zip": archive})
    try:
        data = D.TinyImageNet(name="TinyImageNet", path=".", mirror=mirror.url).load()
        np.testing.assert_array_equal(data.images, np.stack(arrays))
        np.testing.assert_array_equal(data.labels, [0, 1])
        assert (data_path / "tiny-imagenet-200" / "train" / "n01").is_dir()
        before = len(mirror.requests)
        D.TinyImageNet(name="TinyImageNet", path=".", mirror=mirror.url).load()
        assert len(mirror.requests) == before > 0
    finally:
        mirror.close()
