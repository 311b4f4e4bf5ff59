"""The engine's invariants: a NeF does not know it has neighbours."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nefs import MLP, SIREN
from nefs.engine import ChunkFitter
from nefs.schedules import Constant, WarmupCosine
from nefs.stack import init_stacked
from tasks.image.modality import ImageModality


@pytest.fixture(scope="module")
def modality():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:12, 0:12]
    imgs = [(127 + 120 * np.sin(xx * (0.2 + 0.1 * k) + yy * 0.3 * k)) for k in range(8)]
    return ImageModality(np.stack(imgs)[..., None].astype(np.uint8) + rng.integers(0, 5, (8, 12, 12, 1)).astype(np.uint8))


def _fit(modality, idx, steps=40, compile=False, target=None, masked=1.0, template=None, lr=1e-2):
    template = template or SIREN(hidden_dim=16)
    idx = np.asarray(idx)
    seeds = np.zeros_like(idx)
    fitter = ChunkFitter(template, torch.optim.Adam, Constant(lr), steps, check_every=5, target=target,
                         compile=compile)
    p0 = init_stacked(template, seeds, idx, fixed_init=False)
    return fitter.fit(p0, modality.problem(idx % len(modality), seeds, idx, SimpleNamespace(masked_portion=masked)))


@pytest.mark.parametrize("masked", [1.0, 0.5])
def test_nef_alone_equals_nef_in_chunk(modality, masked):
    alone = _fit(modality, [3], masked=masked)
    chunk = _fit(modality, [0, 1, 2, 3, 4, 5, 6, 7], masked=masked)
    for k in alone.params:
        assert torch.allclose(alone.params[k][0], chunk.params[k][3], atol=1e-5), k
    assert torch.allclose(alone.metric[0], chunk.metric[3], atol=1e-4)


@pytest.mark.slow
def test_fitting_improves_psnr(modality):
    short = _fit(modality, range(8), steps=2)
    long = _fit(modality, range(8), steps=120)
    assert (long.metric > short.metric + 3).all()


@pytest.mark.slow
def test_compiled_step_matches_eager(modality):
    eager = _fit(modality, range(4), steps=10, compile=False, template=MLP())
    comp = _fit(modality, range(4), steps=10, compile=True, template=MLP())
    for k in eager.params:
        assert torch.allclose(eager.params[k], comp.params[k], atol=1e-4), k


@pytest.mark.slow
def test_early_stop_freezes_each_nef_at_its_own_step(modality):
    free = _fit(modality, range(8), steps=150)
    target = float(free.metric.median())
    res = _fit(modality, range(8), steps=150, target=target)
    reached = res.metric >= target
    assert reached.any() and (res.steps[reached] < 150).any()
    # a NeF that stopped at step s holds exactly the params of a plain s-step fit
    i = int(torch.nonzero(res.steps < 150)[0])
    s = int(res.steps[i])
    plain = _fit(modality, [i], steps=s)
    for k in plain.params:
        assert torch.allclose(plain.params[k][0], res.params[k][i], atol=1e-5), k


def test_warmup_cosine_schedule_shape():
    s = WarmupCosine(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=110, end_value=0.1)
    assert s(0) == 0.0 and s(5) == pytest.approx(0.5) and s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.55) and s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    assert Constant(3e-4)(123) == 3e-4


@pytest.mark.slow
@pytest.mark.parametrize("steps,check", [(120, 5), (63, 10)])
def test_continuous_batching_equals_stopping_per_chunk(modality, steps, check):
    """Slots refilled mid-run (per-slot Adam state) give each NeF exactly its solo result."""
    template = SIREN(hidden_dim=16)
    rows = np.arange(8)
    seeds = np.zeros(8, dtype=np.int64)
    cfg = SimpleNamespace(masked_portion=0.5)
    free = _fit(modality, rows, steps=steps, masked=0.5, template=template)
    target = float(free.metric.median())

    def make(r):
        return (init_stacked(template, seeds[r], r, fixed_init=False),
                modality.problem(r % len(modality), seeds[r], r, cfg))

    fitter = ChunkFitter(template, torch.optim.Adam, WarmupCosine(1e-3, 1e-2, 10, 120, 1e-3), steps,
                         check_every=check, target=target, compile=False)
    got = {}
    fitter.fit_stream(rows, make, slots=3, emit=lambda r, res: got.update(
        {int(i): (res.params, j, res.steps[j]) for j, i in enumerate(r)}))
    assert sorted(got) == list(range(8))
    ref = ChunkFitter(template, torch.optim.Adam, WarmupCosine(1e-3, 1e-2, 10, 120, 1e-3), steps,
                      check_every=check, target=target, compile=False).fit(*make(rows))
    for i, (params, j, steps) in got.items():
        assert int(steps) == int(ref.steps[i])
        for k in params:
            assert torch.allclose(params[k][j], ref.params[k][i], atol=1e-5), (i, k)
    assert len(set(int(s) for s in ref.steps)) > 1   # NeFs really needed different step counts
