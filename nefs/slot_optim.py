"""The optimizers of the training loop, all with one interface: ``step(grads, lr)``, ``reset(slots)``,
``release()``, and ``per_slot`` (whether each slot keeps its own step count and learning rate).

torch.optim keeps one ``step`` per tensor, shared by every NeF stacked in it. That is right while all
NeFs start together (``StackedOptimizer``: torch.optim itself, its fused CUDA kernels included), and
wrong once a finished NeF's slot is refilled by a new one: Adam's bias correction must then count the
new NeF's own steps. The slot versions keep a step count and a learning rate per slot, follow
torch.optim's update formulas (tests/test_slot_optim.py checks each step for step against its twin),
and can reset single slots. Adam's maths (``adam_moments``, ``adam_direction``) is shared with the
meta-learner's differentiable inner loop (nefs/meta.py).
"""
import functools
import math
from typing import Dict

import torch

from .errors import FitnefError

Params = Dict[str, torch.Tensor]


def _per_slot(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(S,) -> (S, 1, ..., 1) broadcasting against a stacked tensor."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def adam_moments(m, v, g, b1: float, b2: float) -> tuple:
    """Adam's running first and second moments after gradient ``g`` (pure: returns new tensors)."""
    return m + (1 - b1) * (g - m), b2 * v + (1 - b2) * g * g


def adam_direction(m, v, step, b1: float, b2: float, eps: float):
    """Adam's bias-corrected update direction at ``step`` (1-based; an int, or per-slot counts that
    broadcast against ``m``): the parameter moves by ``-lr`` times this."""
    if isinstance(step, torch.Tensor):
        step = step.double()
        bc1, bc2_sqrt = (1 - b1 ** step).to(m.dtype), (1 - b2 ** step).sqrt().to(m.dtype)
    else:
        bc1, bc2_sqrt = 1 - b1 ** step, math.sqrt(1 - b2 ** step)
    return (m / bc1) / (v.sqrt() / bc2_sqrt + eps)


class StackedOptimizer:
    """torch.optim on the stacked tensors: one step count for all slots, so slots are never refilled."""

    per_slot = False

    def __init__(self, factory, params: Params, lr: float, **impl):
        self.params = params
        self.impl = impl
        self.opt = factory(list(params.values()), lr=lr, **impl)

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state)
        for g in self.opt.param_groups:   # this device's implementation, not the saver's
            g.update(self.impl)

    def step(self, grads: Params, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr
        for k, p in self.params.items():
            p.grad = grads[k]
        self.opt.step()

    def reset(self, slots) -> None:
        raise FitnefError("torch.optim keeps one step count for all NeFs of a chunk; refilling a slot "
                          "needs a per-slot optimizer (nefs.slot_optim.slot_optimizer)")

    def release(self) -> None:
        for p in self.params.values():
            p.grad = None


class SlotOptimizer:
    state_names: tuple = ()
    per_slot = True

    def __init__(self, params: Params, compile: bool = False):
        self.params = params
        first = next(iter(params.values()))
        self.step_count = torch.zeros(first.shape[0], dtype=torch.long, device=first.device)
        self.state = {s: {k: torch.zeros_like(p) for k, p in params.items()} for s in self.state_names}
        # dozens of tiny elementwise ops per step: fused into a few kernels when compiled
        self._apply = torch.compile(self._apply_eager, dynamic=False) if compile else self._apply_eager

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "state": self.state}

    @torch.no_grad()
    def load_state_dict(self, saved: dict) -> None:
        """Copy a ``state_dict`` into this optimizer's buffers (in place: the compiled update keeps them)."""
        self.step_count.copy_(saved["step_count"])
        for s, bufs in self.state.items():
            for k, b in bufs.items():
                b.copy_(saved["state"][s][k])

    def reset(self, slots: torch.Tensor) -> None:
        """Fresh optimizer state for the NeFs now in ``slots``."""
        self.step_count[slots] = 0
        for bufs in self.state.values():
            for b in bufs.values():
                b[slots] = 0

    @torch.no_grad()
    def step(self, grads: Params, lr: torch.Tensor) -> None:
        """One update; ``lr`` is (S,), each slot's learning rate."""
        self.step_count += 1
        self._apply(self.params, grads, lr, self.step_count, self.state)

    def _apply_eager(self, params, grads, lr, step_count, state) -> None:
        for k, p in params.items():
            self._update(k, p, grads[k], _per_slot(lr.to(p.dtype), p))

    def release(self) -> None:
        pass

    def _update(self, k, p, g, lr):  # pragma: no cover - abstract
        raise NotImplementedError


class SlotAdam(SlotOptimizer):
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False, compile=False):
        super().__init__(params, compile)
        self.b1, self.b2 = (float(b) for b in betas)
        self.eps, self.wd, self.decoupled = float(eps), float(weight_decay), decoupled

    def _update(self, k, p, g, lr):
        if self.wd:
            if self.decoupled:
                p.mul_(1 - lr * self.wd)
            else:
                g = g.add(p, alpha=self.wd)
        m, v = self.state["exp_avg"][k], self.state["exp_avg_sq"][k]
        m_new, v_new = adam_moments(m, v, g, self.b1, self.b2)
        m.copy_(m_new)
        v.copy_(v_new)
        p.sub_(lr * adam_direction(m, v, _per_slot(self.step_count, p), self.b1, self.b2, self.eps))


class SlotSGD(SlotOptimizer):
    state_names = ("momentum_buffer",)

    def __init__(self, params, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, compile=False):
        super().__init__(params, compile)
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.nesterov, self.wd = bool(nesterov), float(weight_decay)

    def _update(self, k, p, g, lr):
        if self.wd:
            g = g.add(p, alpha=self.wd)
        if self.momentum:
            buf = self.state["momentum_buffer"][k]
            first = _per_slot(self.step_count == 1, p)
            # torch.optim starts the buffer at the first gradient
            buf.copy_(torch.where(first, g, buf * self.momentum + (1 - self.dampening) * g))
            g = g.add(buf, alpha=self.momentum) if self.nesterov else buf
        p.sub_(lr * g)


class SlotRMSprop(SlotOptimizer):
    state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0,
                 compile=False):
        super().__init__(params, compile)
        self.alpha, self.eps, self.momentum = float(alpha), float(eps), float(momentum)
        self.centered, self.wd = bool(centered), float(weight_decay)

    def _update(self, k, p, g, lr):
        if self.wd:
            g = g.add(p, alpha=self.wd)
        sq = self.state["square_avg"][k]
        sq.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
        if self.centered:
            ga = self.state["grad_avg"][k]
            ga.lerp_(g, 1 - self.alpha)
            avg = sq.addcmul(ga, ga, value=-1).sqrt_().add_(self.eps)
        else:
            avg = sq.sqrt().add_(self.eps)
        if self.momentum:
            buf = self.state["momentum_buffer"][k]
            buf.mul_(self.momentum).addcdiv_(g, avg)
            p.sub_(lr * buf)
        else:
            p.sub_(lr * g / avg)


def slot_optimizer(optimizer_factory, params: Params, compile: bool = False) -> SlotOptimizer:
    """The per-slot twin of a configured torch.optim optimizer (a functools.partial from Hydra)."""
    func = optimizer_factory.func if isinstance(optimizer_factory, functools.partial) else optimizer_factory
    kw = dict(getattr(optimizer_factory, "keywords", {}) or {})
    for drop in ("foreach", "fused", "capturable", "differentiable", "maximize", "amsgrad", "lr"):
        if kw.pop(drop, False) and drop in ("maximize", "amsgrad"):
            raise FitnefError(f"continuous batching does not support optimizer option {drop}=true")
    if func is torch.optim.Adam:
        return SlotAdam(params, compile=compile, **kw)
    if func is torch.optim.AdamW:
        return SlotAdam(params, compile=compile, decoupled=True, **{"weight_decay": 1e-2, **kw})
    if func is torch.optim.SGD:
        return SlotSGD(params, compile=compile, **kw)
    if func is torch.optim.RMSprop:
        return SlotRMSprop(params, compile=compile, **kw)
    raise FitnefError(f"continuous batching supports optimizers adam, adamw, sgd, rmsprop, not {func.__name__}; "
                      f"set task.train.continuous=false")
