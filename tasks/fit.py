"""Fit a neural dataset: ``python -m tasks.fit nef=siren dataset=mnist``."""
import dataclasses
import json
import logging
import os
from pathlib import Path

from omegaconf import DictConfig

from .entry import command
from .fitting import fit
from .progress import run_dir

log = logging.getLogger(__name__)


@command("config")
def main(cfg: DictConfig) -> float:
    summary = fit(cfg)
    _write_summary(summary)
    print(summary.line())
    if summary.metric == "psnr" and summary.fitted and summary.metric_mean < UNDERFIT_PSNR:
        log.warning("mean psnr %.2f dB is low: a wider NeF fits better (e.g. nef.hidden_dim=32 "
                    "scheduler.value=1e-3; README, nef table)", summary.metric_mean)
    return summary.metric_mean


# Below this mean PSNR (dB) a fit says the NeF is too small: the 105-parameter default ends at ~20 dB on photos
# and at 23.5 dB on the bundled digits it is sized for.
UNDERFIT_PSNR = 22.0


def _write_summary(summary) -> None:
    """summary.json in the Hydra run dir: what scripts.bench and sweeps read back."""
    out = run_dir()
    if out is None:  # not under Hydra (called from Python)
        return
    data = dataclasses.asdict(summary)
    data["train_nefs_per_s"] = summary.fitted / summary.train_s if summary.train_s else None
    data["process_s"] = _process_age_s()  # minus setup_s + wall_s: interpreter start, imports, config
    (out / "summary.json").write_text(json.dumps(data, indent=1))


def _process_age_s():
    """Seconds since this process started (Linux /proc), or None elsewhere."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return None


if __name__ == "__main__":
    main()
