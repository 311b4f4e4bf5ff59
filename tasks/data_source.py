"""Where a dataset lives and which options it takes: shared by the image and shape datasets."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

from nefs.errors import FitnefError

log = logging.getLogger(__name__)

CACHE_FOLDER = ".fitnef"   # beside the data: <data folder>/.fitnef/<dataset>-<key>.json


def data_path_note() -> str:
    """Say where relative dataset paths are resolved, for error messages."""
    value = os.environ.get("DATA_PATH")
    return "DATA_PATH is unset, so relative paths are under ./data" if value is None else f"DATA_PATH={value}"


def resolve_data_path(path) -> Path:
    """``path`` if absolute, else ``$DATA_PATH/path`` (DATA_PATH defaults to ``data``)."""
    p = Path(os.path.expanduser(str(path))) if path is not None else Path("")
    if p.is_absolute():
        return p
    return Path(os.path.expanduser(os.environ.get("DATA_PATH", "data"))) / p


class DataSource:
    """Base of every dataset config class (``_target_`` of conf/dataset/*.yaml).

    Bad options are reported by ``check_options`` from ``load()``, not from ``__init__``: Hydra wraps
    anything raised while instantiating into a multi-line error, hiding the one-line message.
    """

    #: Extra keyword options a subclass accepts (besides name/path/out_channels).
    options: Sequence[str] = ()

    def __init__(self, name: str, path: str | None = None, out_channels: int | None = None, **kwargs):
        self.name = name
        self.path = path
        self.out_channels = out_channels
        self._unknown = {k: v for k, v in kwargs.items() if k not in self.options}

    @property
    def root(self) -> Path:
        return resolve_data_path(self.path)

    def check_options(self) -> None:
        if self._unknown:
            allowed = ", ".join(["name", "path", "out_channels", *self.options])
            raise FitnefError(f"unknown option(s) dataset.{', dataset.'.join(sorted(self._unknown))} for "
                              f"{type(self).__name__}; allowed: {allowed}")


# -- dataset-wide values, computed once ---------------------------------------------------------------
def _cache_files(name: str, key: dict, folder: Optional[Path]) -> list:
    """Beside the data (keyed by ``key``), then the user's cache folder (keyed by the data's location too,
    since the key alone may not tell two folders apart)."""
    def named(k) -> str:
        return f"{name}-{hashlib.sha256(json.dumps(k, sort_keys=True, default=str).encode()).hexdigest()[:20]}.json"

    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fitnef" / "datasets"
    where = None if folder is None else str(Path(folder).absolute())
    out = [home / named({**key, "where": where})]
    if folder is not None:
        out.insert(0, Path(folder) / CACHE_FOLDER / named(key))
    return out


def read_cached(name: str, key: dict, folder: Optional[Path], required: Sequence[str]) -> Optional[dict]:
    """A dataset's dataset-wide values (normalisation statistics, frames, ...) as an earlier process cached
    them, or None. ``key`` says what they depend on (options, the list of files)."""
    for file in _cache_files(name, key, folder):
        try:
            record = json.loads(file.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and set(required) <= set(record):
            log.info("%s: dataset-wide values from %s", name, file)
            return record
    return None


def write_cached(name: str, key: dict, folder: Optional[Path], record: dict) -> None:
    """Keep ``record`` beside the data (else in the user's cache folder) for the next process; atomic, so
    shards that start together and all compute the same values may all write them."""
    for file in _cache_files(name, key, folder):
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, file)
            return
        except OSError:
            continue


def listing_key(paths: Sequence, **options) -> dict:
    """What cached dataset-wide values depend on: the options and the list of files (names only)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode() + b"\0")
    return {**options, "files": len(paths), "listing": h.hexdigest()}
