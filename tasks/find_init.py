"""Learn a meta-initialisation: ``python -m tasks.find_init nef=siren dataset=mnist``.

Fit from it with ``python -m tasks.fit task.train.init=meta`` (same nef and dataset).
"""
import json
import logging

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from nefs.engine import ChunkFitter
from nefs.errors import FitnefError
from nefs.keyed import key
from nefs.meta import MetaConfig, MetaLearner, save_init
from nefs.stack import init_stacked

from .entry import command
from .plan import build_nef, load_modality, resolve_device

log = logging.getLogger(__name__)


def split(m: int, fraction: float):
    if not 0 < fraction < 1:
        raise FitnefError(f"meta.train_fraction={fraction}: must be in (0, 1)")
    cut = max(1, min(m - 1, int(round(m * fraction))))
    return np.arange(cut), np.arange(cut, m)


def run(cfg: DictConfig) -> dict:
    device = resolve_device(cfg.device)
    modality, _ = load_modality(cfg)
    train_idx, held_idx = split(len(modality), float(cfg.meta.train_fraction))
    template = build_nef(cfg.nef, modality.in_features, modality.out_features)
    seed = int(cfg.meta.seed)
    default = {k: v[0] for k, v in init_stacked(template, [seed], [0], True, device).items()}
    mcfg = MetaConfig(**{k: v for k, v in OmegaConf.to_container(cfg.meta).items() if k in MetaConfig.__annotations__})
    if mcfg.batch_size < 1 or mcfg.outer_steps < 1 or mcfg.inner_steps < 1:
        raise FitnefError("meta.batch_size, meta.outer_steps and meta.inner_steps must be >= 1")
    problem_type = type(modality.problem(train_idx[:1], [seed], [0], cfg.task.train, device))
    learner = MetaLearner(template.to(device), problem_type.loss, mcfg)

    def batches(step):
        gen = torch.Generator().manual_seed(key(seed, step))
        pick = train_idx[torch.randperm(len(train_idx), generator=gen)[: mcfg.batch_size].numpy()]
        prob = modality.problem(pick, np.full(len(pick), seed), pick, None, device)
        coords, targets, _ = prob.train_batch(0)
        return coords, targets

    bar = tqdm(total=mcfg.outer_steps, desc=f"{mcfg.algorithm} init", unit="step")

    def on_step(step, loss):
        bar.update(1)
        bar.set_postfix_str(f"outer loss {loss:.4f}")
        if step % 50 == 0 or step == mcfg.outer_steps - 1:
            log.info("outer step %d: loss %.5f", step, loss)

    meta = learner.learn(default, batches, on_step)
    bar.close()
    nef = {**OmegaConf.to_container(cfg.nef, resolve=True), "in_features": modality.in_features,
           "out_features": modality.out_features}
    path = save_init(cfg.meta.output, meta, nef, {
        "dataset": cfg.dataset.name, "meta": OmegaConf.to_container(cfg.meta, resolve=True),
        "train_signals": [int(train_idx[0]), int(train_idx[-1]) + 1]})
    report = compare(cfg, modality, template, {"default": default, "meta": meta}, held_idx, device)
    report["init"] = str(path)
    return report


def compare(cfg, modality, template, inits: dict, held_idx, device) -> dict:
    """Mean held-out PSNR after k Adam steps from each init."""
    rows = held_idx[: int(cfg.meta.eval_signals)]
    out = {"held_out_signals": len(rows)}
    for steps in cfg.meta.eval_steps:
        fitter = ChunkFitter(template.to(device), instantiate(cfg.optimizer), instantiate(cfg.scheduler), int(steps),
                             compile=False)
        for name, init in inits.items():
            params = {k: v.expand(len(rows), *v.shape).clone() for k, v in init.items()}
            res = fitter.fit(params, modality.problem(rows, np.zeros(len(rows)), rows, cfg.task.train, device))
            out[f"psnr_{name}_{steps}"] = round(float(res.metric.mean()), 3)
    return out


@command("find_init")
def main(cfg: DictConfig) -> None:
    report = run(cfg)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
