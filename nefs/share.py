"""Sharing a neural dataset: one zip file to upload, and stores read where they were published.

``export_zip`` writes a store as a single zip (the zarr group's files as they are on disk, chunk files
uncompressed by zip since zarr already compressed them), which zarr's ZipStore reads as it is.
``open_group`` opens a store's zarr group read-only from a local folder, a local ``.zip``, or a URL through
fsspec: ``http(s)://`` (fsspec's HTTP filesystem, needs aiohttp: the ``share`` extra), and ``s3://`` /
``hf://`` where their fsspec packages (s3fs, huggingface_hub) are installed; a URL ending in ``.zip`` is read
as a zip there. A published store is served as its folder (a static file server over the store folder, a
bucket prefix, a Hugging Face dataset repo) or as the zip.
"""
import re
import zipfile
from pathlib import Path

from .errors import FitnefError

URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
SKIP = (".inflight",)   # run state of a fit in progress, not part of the dataset


def is_url(path) -> bool:
    return bool(URL.match(str(path)))


def export_zip(store, path) -> Path:
    """The store's folder as one zip at ``path`` (the run state of a fit in flight left out)."""
    src, path = Path(store.path), Path(path)
    if is_url(store.path):
        raise FitnefError(f"store {store.path} is remote: zip it where its files are")
    if path.suffix != ".zip":
        raise FitnefError(f"{path}: the single-file export is a .zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for f in sorted(src.rglob("*")):
            rel = f.relative_to(src)
            if f.is_file() and rel.parts[0] not in SKIP:
                z.write(f, rel.as_posix())
    tmp.replace(path)
    return path


def open_group(path):
    """The zarr group of a store at ``path`` (folder, .zip or URL), read-only; one line if it cannot be read."""
    import zarr

    text = str(path)
    if not is_url(text):
        if text.endswith(".zip") and Path(text).is_file():
            return zarr.open_group(store=zarr.storage.ZipStore(text, mode="r"), mode="r")
        return None   # a local folder: the caller's own checks
    scheme = text.split("://", 1)[0].lower()
    # a zip is read in place by range requests; from a server without them it is downloaded once (simplecache)
    urls = [f"zip::{text}", f"zip::simplecache::{text}"] if text.endswith(".zip") else [text.rstrip("/")]
    for i, url in enumerate(urls):
        try:
            store = zarr.storage.FsspecStore.from_url(url, read_only=True)
            break
        except ImportError as e:
            need = {"http": "aiohttp", "https": "aiohttp", "s3": "s3fs", "hf": "huggingface_hub"}.get(scheme, e.name)
            raise FitnefError(f"reading {scheme}:// stores needs {need} (pip install 'fitnef[share]' or {need})") from None
        except Exception as e:  # no range requests (ValueError), unreachable host, missing file: one line
            if i + 1 == len(urls):
                raise FitnefError(f"cannot read a fitnef store at {text}: {type(e).__name__}: "
                                  f"{str(e).splitlines()[0] if str(e) else 'not found'}") from None
    try:
        return zarr.open_group(store=store, mode="r")
    except Exception as e:  # fsspec / aiohttp errors of every kind: unreachable host, 404, timeouts
        raise FitnefError(f"cannot read a fitnef store at {text}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'no zarr.json there'}") from None
