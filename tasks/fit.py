"""Fit a neural dataset: ``python -m tasks.fit nef=siren dataset=mnist``."""
import logging
import sys

import hydra
from omegaconf import DictConfig

from nefs.errors import FitnefError

log = logging.getLogger(__name__)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from .fitting import fit

    try:
        summary = fit(cfg)
    except FitnefError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(summary.line())
    return summary.psnr_mean


if __name__ == "__main__":
    main()
