"""Meta-learned initialisations (Tancik et al., CVPR 2021): one set of starting weights from which
every NeF of a dataset fits in far fewer steps.

MAML: the outer loss is the loss after a few inner SGD (or Adam) steps taken from the shared init, differentiated
through those steps with torch.func (second order, or first order by dropping the inner steps'
derivatives). Reptile: the init moves towards the average of the inner-loop solutions. The inner loop
runs over a batch of signals with the same vmapped per-NeF gradient the engine uses.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

import torch
from torch.func import functional_call, grad_and_value

from .diffs import diff_keys
from .errors import FitnefError
from .slot_optim import adam_direction, adam_moments

log = logging.getLogger(__name__)

Params = Dict[str, torch.Tensor]


@dataclass
class MetaConfig:
    algorithm: str = "maml"          # maml | reptile
    first_order: bool = False        # MAML: ignore second derivatives through the inner steps
    outer_steps: int = 300
    outer_lr: float = 1e-3           # Adam on the init (MAML) / interpolation rate (Reptile)
    inner_steps: int = 2
    inner_lr: float = 1e-2           # learning rate of the inner loop
    inner_optimizer: str = "sgd"     # sgd | adam (Adam's own first steps, as the fit will take them)
    batch_size: int = 64             # signals per outer step


class MetaLearner:
    def __init__(self, template: torch.nn.Module, loss: Callable, cfg: MetaConfig):
        if cfg.algorithm not in ("maml", "reptile"):
            raise FitnefError(f"meta.algorithm={cfg.algorithm!r}: use maml or reptile")
        if cfg.inner_optimizer not in ("sgd", "adam"):
            raise FitnefError(f"meta.inner_optimizer={cfg.inner_optimizer!r}: use sgd or adam")
        self.template, self.loss, self.cfg = template, loss, cfg

        def nef_loss(p, x, y):
            return loss(functional_call(template, p, (x,)), y)

        self.nef_loss = nef_loss
        self.batched_grad = torch.vmap(grad_and_value(nef_loss), in_dims=(0, None, 0))

    def inner(self, init: Params, coords, targets, steps: int, keep_graph: bool) -> Params:
        """``steps`` inner steps (SGD, or Adam with torch.optim's defaults) from ``init`` for every signal in
        ``targets`` (N, P, C)."""
        n = targets.shape[0]
        params = {k: v.expand(n, *v.shape) for k, v in init.items()}
        m = {k: torch.zeros_like(p) for k, p in params.items()}
        v = {k: torch.zeros_like(p) for k, p in params.items()}
        b1, b2, eps = 0.9, 0.999, 1e-8   # torch.optim.Adam's defaults, as the fit will use them
        for t in range(1, steps + 1):
            g, _ = self.batched_grad(params, coords, targets)
            if not keep_graph:
                g = {k: x.detach() for k, x in g.items()}
            if self.cfg.inner_optimizer == "sgd":
                params = {k: params[k] - self.cfg.inner_lr * g[k] for k in params}
                continue
            for k in params:
                m[k], v[k] = adam_moments(m[k], v[k], g[k], b1, b2)
            params = {k: params[k] - self.cfg.inner_lr * adam_direction(m[k], v[k], t, b1, b2, eps) for k in params}
        return params

    def outer_loss(self, init: Params, coords, targets) -> torch.Tensor:
        adapted = self.inner(init, coords, targets, self.cfg.inner_steps, keep_graph=not self.cfg.first_order)
        losses = torch.vmap(self.nef_loss, in_dims=(0, None, 0))(adapted, coords, targets)
        return losses.mean()

    def learn(self, init: Params, batches: Callable[[int], tuple], on_step: Optional[Callable] = None) -> Params:
        """batches(step) -> (coords, targets) of one outer step's signals."""
        init = {k: v.detach().clone() for k, v in init.items()}
        if self.cfg.algorithm == "maml":
            opt = torch.optim.Adam(list(init.values()), lr=self.cfg.outer_lr)
            outer_grad = grad_and_value(self.outer_loss)
            for step in range(self.cfg.outer_steps):
                coords, targets = batches(step)
                g, loss = outer_grad(init, coords, targets)
                for k, p in init.items():
                    p.grad = g[k]
                opt.step()
                if on_step:
                    on_step(step, float(loss))
        else:
            for step in range(self.cfg.outer_steps):
                coords, targets = batches(step)
                with torch.no_grad():
                    adapted = self.inner(init, coords, targets, self.cfg.inner_steps, keep_graph=False)
                    for k in init:
                        init[k] += self.cfg.outer_lr * (adapted[k].mean(0) - init[k])
                    loss = torch.vmap(self.nef_loss, in_dims=(0, None, 0))(adapted, coords, targets).mean()
                if on_step:
                    on_step(step, float(loss))
        return {k: v.detach() for k, v in init.items()}


def save_init(path, params: Params, nef: dict, extra: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"params": {k: v.cpu() for k, v in params.items()}, "nef": nef, **extra}, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half an init
    return path


def load_init(path, nef: dict, layout_names) -> Params:
    """The init at ``path``, checked against the run's NeF config (a mismatch is a clear error)."""
    path = Path(path)
    if not path.is_file():
        raise FitnefError(f"task.train.meta_init_path={str(path)!r}: no such file "
                          f"(create one with python -m tasks.find_init)")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    diffs = diff_keys({k: v for k, v in saved["nef"].items() if k != "name"},
                      {k: v for k, v in nef.items() if k != "name"})
    if diffs:
        raise FitnefError(f"meta init {path} was learned for another NeF config "
                          f"({'; '.join(d.replace('(store)', '(init)') for d in diffs)})")
    if list(saved["params"]) != list(layout_names):
        raise FitnefError(f"meta init {path} has parameters {list(saved['params'])}, the NeF has {list(layout_names)}")
    return saved["params"]
