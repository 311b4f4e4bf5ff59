"""Every optimizer of the training loop against its torch.optim twin, step for step, and per-slot resets."""
import functools

import pytest
import torch

from nefs.slot_optim import StackedOptimizer, adam_direction, adam_moments, slot_optimizer

CASES = [
    (torch.optim.Adam, {}),
    (torch.optim.Adam, {"betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.01}),
    (torch.optim.AdamW, {"weight_decay": 0.1}),
    (torch.optim.SGD, {"momentum": 0.9}),
    (torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    (torch.optim.SGD, {"momentum": 0.9, "dampening": 0.1}),
    (torch.optim.SGD, {}),
    (torch.optim.RMSprop, {}),
    (torch.optim.RMSprop, {"momentum": 0.9, "centered": True, "weight_decay": 1e-3, "alpha": 0.9}),
]


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(5, 4, 3, generator=g), "b": torch.randn(5, 4, generator=g)}


def _grads(step, like):
    g = torch.Generator().manual_seed(100 + step)
    return {k: torch.randn(v.shape, generator=g) for k, v in like.items()}


@pytest.mark.parametrize("factory, kw", CASES, ids=lambda c: getattr(c, "__name__", str(c)))
def test_slot_optimizer_equals_torch_optim_step_for_step(factory, kw):
    lrs = [1e-2, 5e-3, 2e-2, 1e-3, 1e-2, 7e-3]
    ref = {k: v.clone() for k, v in _params().items()}
    torch_opt = factory(list(ref.values()), lr=lrs[0], **kw)
    mine = {k: v.clone() for k, v in _params().items()}
    slot = slot_optimizer(functools.partial(factory, **kw), mine)
    for step, lr in enumerate(lrs):
        grads = _grads(step, ref)
        for g in torch_opt.param_groups:
            g["lr"] = lr
        for k, p in ref.items():
            p.grad = grads[k].clone()
        torch_opt.step()
        slot.step(grads, torch.full((5,), lr))
        for k in ref:
            assert torch.allclose(mine[k], ref[k], rtol=1e-5, atol=1e-6), (factory.__name__, kw, step, k)


@pytest.mark.parametrize("factory, kw", CASES[:1] + CASES[3:4] + CASES[8:], ids=lambda c: getattr(c, "__name__", str(c)))
def test_a_reset_slot_restarts_as_a_fresh_optimizer(factory, kw):
    """Slot 2 reset after 3 steps follows a fresh torch.optim from there; the other slots go on undisturbed."""
    params = _params()
    slot = slot_optimizer(functools.partial(factory, **kw), params)
    for step in range(3):
        slot.step(_grads(step, params), torch.full((5,), 1e-2))
    fresh = {k: v[2:3].clone() for k, v in params.items()}
    torch_opt = factory(list(fresh.values()), lr=1e-2, **kw)
    slot.reset(torch.tensor([2]))
    for step in range(3, 6):
        grads = _grads(step, params)
        slot.step(grads, torch.full((5,), 1e-2))
        for k, p in fresh.items():
            p.grad = grads[k][2:3].clone()
        torch_opt.step()
    for k in fresh:
        assert torch.allclose(params[k][2:3], fresh[k], rtol=1e-5, atol=1e-6), k


def test_stacked_optimizer_is_torch_optim_and_refuses_refills():
    params = _params()
    opt = StackedOptimizer(torch.optim.Adam, params, lr=1e-2)
    before = {k: v.clone() for k, v in params.items()}
    opt.step(_grads(0, params), 1e-2)
    assert all(not torch.equal(before[k], params[k]) for k in params)
    opt.release()
    assert all(p.grad is None for p in params.values())
    with pytest.raises(Exception, match="per-slot optimizer"):
        opt.reset(torch.tensor([0]))


def test_adam_maths_matches_the_textbook():
    g = torch.tensor([0.5, -2.0])
    m, v = adam_moments(torch.zeros(2), torch.zeros(2), g, 0.9, 0.999)
    assert torch.allclose(m, 0.1 * g) and torch.allclose(v, 0.001 * g * g)
    # first step: m_hat = g, v_hat = g^2, so the direction is sign(g) (up to eps)
    assert torch.allclose(adam_direction(m, v, 1, 0.9, 0.999, 1e-8), torch.sign(g), atol=1e-6)
    per_slot = adam_direction(m, v, torch.tensor([1, 1]), 0.9, 0.999, 1e-8)
    assert torch.allclose(per_slot, torch.sign(g), atol=1e-6)
