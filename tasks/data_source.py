"""Where a dataset lives and which options it takes: shared by the image and shape datasets."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from nefs.errors import FitnefError


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
