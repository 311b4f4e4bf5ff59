"""Fetching a dataset's files the way torchvision does (its URLs, its MD5 checksums, its folders), from
torchvision's own servers or from ``dataset.mirror``: another base URL that serves the same file names
(an institutional mirror, a local cache for compute nodes without internet).

torchvision's ``download_url`` does the transfer (with its progress bar) and the checksum; this module
turns its failures into one line that says what could not be fetched, from where, the folder the files
were expected in, and how to place them there by hand.
"""
from __future__ import annotations

import contextlib
import io
import logging
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from nefs.errors import FitnefError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Remote:
    """One file torchvision downloads: where from (base URLs tried in order), its name and MD5."""

    bases: tuple          # base URLs ending in "/"
    filename: str
    md5: Optional[str]
    extract_to: Optional[Path] = None   # unpack the archive there after the checksum passed


def base_of(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/"


def fetch(what: str, files: Sequence[Remote], folder: Path, mirror: Optional[str], hint: str = "") -> None:
    """Download ``files`` into ``folder`` (skipping those already there with the right checksum), then unpack
    the archives among them; a failure is one ``FitnefError`` line."""
    from torchvision.datasets.utils import check_integrity, download_url, extract_archive

    folder = Path(folder)
    for f in files:
        bases = (mirror.rstrip("/") + "/",) if mirror else f.bases
        target = folder / f.filename
        errors = []
        for base in bases:
            url = base + f.filename
            try:
                with contextlib.redirect_stdout(io.StringIO()) as said:  # torchvision prints as it goes
                    download_url(url, str(folder), f.filename, f.md5)
                log.info("%s", said.getvalue().strip() or f"fetched {url}")
                break
            except RuntimeError as e:    # torchvision: "File not found or corrupted." after the transfer
                if target.exists() and not check_integrity(str(target), f.md5):
                    size = target.stat().st_size
                    target.unlink()     # not left behind looking like data
                    raise FitnefError(
                        f"{what}: {f.filename} fetched from {url} fails its MD5 checksum ({size} bytes, expected MD5 "
                        f"{f.md5}); the file was removed from {folder}: check dataset.mirror, or place the right "
                        f"file there by hand") from None
                errors.append(f"{url}: {_reason(e)}")
            except (urllib.error.URLError, OSError, ValueError) as e:
                errors.append(f"{url}: {_reason(e)}")
        else:
            names = ", ".join(x.filename for x in files)
            sources = mirror or " or ".join(bases)
            raise FitnefError(
                f"{what}: could not fetch {f.filename} ({'; '.join(errors)}) into {folder.absolute()}; without a "
                f"network, place {names} from {sources} in {folder.absolute()} by hand, or set dataset.mirror=<base "
                f"URL serving them>{hint}")
        if f.extract_to is not None:
            try:
                extract_archive(str(target), str(f.extract_to))
            except Exception as e:  # noqa: BLE001 - tarfile/zipfile/gzip raise many kinds
                raise FitnefError(f"{what}: cannot unpack {target} ({_reason(e)}); delete it and rerun") from None


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
