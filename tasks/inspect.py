"""Inspect a fitted store: ``python -m tasks.inspect task.nef_dir=<store>``.

Everything the store needs is read from the store (NeF, dataset and where its files were); a
``dataset.path=...`` on the command line points at data that moved. What is measured and drawn is the
store's modality's own (``Modality.inspect``: tasks/image/inspect.py, tasks/shape/inspect.py, ...),
written into the Hydra run dir; this module holds what every modality's inspection shares.

Only rows marked done are read, so a store that is still being fitted can be inspected.
"""
import logging
from pathlib import Path
from typing import Optional

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nefs.errors import FitnefError
from nefs.store import open_store

from .entry import command
from .plan import resolve_device

log = logging.getLogger(__name__)


# -- shared by the modalities' inspections ------------------------------------------------------------
def store_dataset(store, data_path: Optional[str] = None):
    """(the store's dataset reader, its config), rebuilt from the store's own record."""
    ds = dict(store.attrs.get("dataset") or store.config.get("dataset") or {})
    if not ds.get("_target_"):
        raise FitnefError(f"store {store.path} does not record its dataset; it was not written by tasks.fit")
    if data_path is not None:
        ds["path"] = data_path
    try:
        return instantiate(ds), ds
    except Exception as e:  # noqa: BLE001 - hydra wraps constructor errors
        raise FitnefError(f"cannot build the store's dataset {ds.get('name')}: {e.__cause__ or e}") from None


def stats(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v)), "min": float(np.nanmin(v)),
            "max": float(np.nanmax(v))}


def sampled_rows(store, rows: np.ndarray, ins, rng: np.random.Generator) -> np.ndarray:
    """The rows to draw: ``inspect.rows`` (each must be done), else a sample of ``rows`` drawn with rng."""
    if ins.rows is not None:
        shown = np.asarray([int(r) for r in ins.rows])
        done_now = store.done
        bad = [int(r) for r in shown if not (0 <= r < len(store) and done_now[r])]
        if bad:
            raise FitnefError(f"inspect.rows: {bad} are not done rows of {store.path}")
        return shown
    k = min(int(ins.num_samples), len(rows))
    return np.sort(rng.choice(rows, size=k, replace=False)) if k else rows[:0]


def done_rows(store, max_rows: Optional[int] = None) -> np.ndarray:
    rows = np.flatnonzero(store.done)  # read once: rows finished later are not part of this inspection
    if max_rows is not None:
        rows = rows[:int(max_rows)]
    if len(rows) == 0:
        raise FitnefError(f"store {store.path} has no done rows yet (0/{len(store)})")
    return rows


def _explicit_data_path(cfg) -> Optional[str]:
    """dataset.path when given on the command line (else the store's record is used)."""
    try:
        given = HydraConfig.get().overrides.task
    except ValueError:
        given = []
    if any(o.lstrip("+").startswith("dataset.path=") for o in given):
        return OmegaConf.select(cfg, "dataset.path")
    return None


def run(cfg: DictConfig, out: Path) -> dict:
    """The store's modality inspects it; the report's ``lines`` summarise it."""
    store = open_store(cfg.task.nef_dir)
    return store._modality().inspect(cfg, store, out, _explicit_data_path(cfg), resolve_device(cfg.get("device", "cpu")))


@command("inspect")
def main(cfg: DictConfig) -> None:
    report = run(cfg, Path(HydraConfig.get().runtime.output_dir))
    print("\n".join(report.get("lines", [])))


if __name__ == "__main__":
    main()
