"""task.train.kernel=auto chooses the step by measurement (nefs/step_choice.py): the fastest candidate whose
gradients agree with the torch step's wins; failing or disagreeing ones are dropped; the choice is cached per
device and shape, and a corrupt cache is ignored. Timings are injected: nothing here depends on the machine's
speed. The real fused kernel takes part in tests/interp_fused.py (Triton's interpreter)."""
import json
import logging

import numpy as np
import pytest
import torch

from nefs import SIREN
from nefs.errors import FitnefError
from nefs.precision import MatmulPrecision
from nefs.stack import init_stacked
from nefs.step_choice import (Candidate, ChosenStep, Kernel, StepSettings, candidates, gradient_gap,
                              torch_grad_fn)
from tasks.fitting import fit


class _Problem:
    fused_loss = "mse"

    @staticmethod
    def loss(pred, target):
        return ((pred - target) ** 2).mean()


def _args(n=3, p=40):
    torch.manual_seed(0)
    template = SIREN(2, 1, 8)
    params = init_stacked(template, [0] * n, list(range(n)), fixed_init=False)
    return template, (params, torch.rand(p, 2) * 2 - 1, torch.randn(n, p, 1))


def _torch(template):
    return torch_grad_fn(template, _Problem, False)


def _scaled(fn, factor):
    def step(*args):
        grads, loss = fn(*args)
        return {k: v * factor for k, v in grads.items()}, loss
    return step


def _raises(*args):
    raise RuntimeError("PTX compile failed: out of resources")


def _step(template, cands, cache=None, times=None, precision="highest"):
    """A ChosenStep over ``cands`` (name -> fn) with timer ``times`` (name -> seconds), recording its calls."""
    step = ChosenStep(template, _Problem(), False, StepSettings(kernel=Kernel.AUTO, cache=cache,
                                                                matmul_precision=MatmulPrecision(precision)),
                      timer=lambda name, fn, args: (timed.append(name), times[name])[1])
    step.cands = [Candidate(name, lambda fn=fn: fn, fused=name.startswith("fused")) for name, fn in cands.items()]
    timed = step.timed = []
    return step


def test_the_fastest_candidate_that_agrees_wins_and_computes_the_same_gradients(caplog):
    template, args = _args()
    ref = _torch(template)
    step = _step(template, {"fused a": _scaled(ref, 1 + 1e-5), "fused b": _scaled(ref, 1 - 1e-5), "torch": ref},
                 times={"fused a": 2e-3, "fused b": 1e-3, "torch": 3e-3})
    with caplog.at_level(logging.INFO, logger="nefs.step_choice"):
        grads, loss = step(*args)
    assert step.name == "fused b" and sorted(step.timed) == ["fused a", "fused b", "torch"]
    want, _ = ref(*args)
    assert gradient_gap(grads, want) < 2e-5
    assert "fused b step for SIREN" in caplog.text and "fused a 2.000 ms" in caplog.text
    step(*args)
    assert len(step.timed) == 3   # measured once, on the first call


def test_a_candidate_that_raises_or_disagrees_is_dropped_with_a_warning_and_the_fit_goes_on(caplog):
    template, args = _args()
    ref = _torch(template)
    step = _step(template, {"fused broken": _raises, "fused wrong": _scaled(ref, 1.5), "torch": ref},
                 times={"fused broken": 1e-4, "fused wrong": 1e-4, "torch": 5e-3})
    with caplog.at_level(logging.WARNING, logger="nefs.step_choice"):
        step(*args)
    assert step.name == "torch" and step.timed == ["torch"]
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("step candidate fused broken dropped: RuntimeError: PTX compile failed") for m in lines)
    assert any("step candidate fused wrong dropped: gradients 5.0e-01 from the torch step's" in m for m in lines)


def test_the_tolerance_follows_the_matmul_precision():
    template, args = _args()
    ref = _torch(template)
    off = {"fused": _scaled(ref, 1.01), "torch": ref}   # 1 % off: tf32-like rounding, not fp32's
    fast = {"fused": 1e-4, "torch": 1e-3}
    exact, tf32 = _step(template, off, times=fast), _step(template, off, times=fast, precision="high")
    exact(*args), tf32(*args)
    assert exact.name == "torch" and tf32.name == "fused"


def test_nothing_that_runs_is_one_line():
    template, args = _args()
    step = _step(template, {"fused": _raises}, times={})
    step.cands.append(Candidate("torch", lambda: _raises))
    with pytest.raises(FitnefError, match=r"^no training step could run here: fused: dropped \(RuntimeError"):
        step(*args)


def test_the_choice_is_cached_per_shape_and_the_next_run_starts_at_once(tmp_path):
    template, args = _args()
    ref, cache = _torch(template), tmp_path / "fitnef" / "step_choice.json"
    cands, times = {"fused": _scaled(ref, 1 + 1e-6), "torch": ref}, {"fused": 1e-4, "torch": 1e-3}
    first = _step(template, cands, cache, times)
    first(*args)
    entries = json.loads(cache.read_text())
    (key, entry), = entries.items()
    assert entry["chosen"] == "fused" and json.loads(key)["shapes"]["layers.0.weight"] == [3, 8, 2]
    again = _step(template, cands, cache, {"fused": 1.0, "torch": 1e-9})   # would now pick torch if measured
    again(*args)
    assert again.name == "fused" and again.timed == [] and again.choice.cached
    other_shape = _step(template, cands, cache, {"fused": 1.0, "torch": 1e-9})
    other_shape(*_args(n=5)[1])
    assert other_shape.name == "torch" and len(json.loads(cache.read_text())) == 2


def test_a_cached_winner_that_fails_now_is_measured_again(tmp_path):
    template, args = _args()
    ref, cache = _torch(template), tmp_path / "choice.json"
    _step(template, {"fused": ref, "torch": ref}, cache, {"fused": 1e-4, "torch": 1e-3})(*args)
    step = _step(template, {"fused": _raises, "torch": ref}, cache, {"fused": 1e-4, "torch": 1e-3})
    step(*args)
    assert step.name == "torch" and json.loads(cache.read_text()).popitem()[1]["chosen"] == "torch"


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", ""])
def test_a_corrupt_cache_is_ignored_and_replaced(tmp_path, caplog, content):
    template, args = _args()
    ref, cache = _torch(template), tmp_path / "choice.json"
    cache.write_text(content)
    step = _step(template, {"fused": ref, "torch": ref}, cache, {"fused": 1e-4, "torch": 1e-3})
    with caplog.at_level(logging.WARNING, logger="nefs.step_choice"):
        step(*args)
    assert step.name == "fused" and step.timed == ["fused", "torch"]
    assert "ignoring the step-choice cache" in caplog.text
    assert json.loads(cache.read_text()).popitem()[1]["chosen"] == "fused"


def test_on_a_cpu_auto_has_one_candidate_and_measures_nothing(compose, tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for compiled in (False, True):
        cands, why = candidates(SIREN(2, 1, 8), _Problem(), False, StepSettings(kernel=Kernel.AUTO, compile=compiled))
        assert [c.name for c in cands] == ["torch compiled" if compiled else "torch"] and "not CUDA" in why
    s = fit(compose("device=cpu", "task.train.end_idx=4", "task.train.num_steps=3", "task.train.compile=false"))
    assert s.fitted == 4 and not (tmp_path / "cache").exists()   # no probe, nothing cached


def test_forced_kernels_have_one_candidate(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")   # lets a CPU list the fused step (nothing is built here)
    template = SIREN(2, 1, 8)
    torch_only, _ = candidates(template, _Problem(), False, StepSettings(kernel=Kernel.TORCH, compile=True))
    assert [c.name for c in torch_only] == ["torch compiled"]
    fused, _ = candidates(template, _Problem(), False, StepSettings(kernel=Kernel.FUSED), interpreter_ok=True)
    assert len(fused) == 1 and fused[0].fused and fused[0].name == "fused 64x4x3"   # the table's tile only


def test_gradient_gap_is_relative_and_nan_is_infinitely_far():
    a = {"w": torch.tensor([3.0, 4.0])}
    assert gradient_gap({"w": torch.tensor([3.0, 4.5])}, a) == pytest.approx(0.1)
    assert gradient_gap({"w": torch.tensor([np.nan, 4.0])}, a) == float("inf")


def test_the_chunk_probe_measures_uncompiled_steps_and_the_run_keeps_compiling(compose, monkeypatch):
    """The probe times sizes the run never uses: a torch.compile there would be thrown away."""
    import tasks.plan as plan_module

    probed = []
    monkeypatch.setattr(plan_module, "choose_num_parallel",
                        lambda fitter, make, rows, device, micro_batch: probed.append(fitter) or 96)
    plan = plan_module.plan_run(compose("device=cpu", "task.train.end_idx=8", "task.train.compile=true",
                                        "task.train.num_parallel_nefs=auto"))
    assert len(probed) == 1 and probed[0].step_settings.compile is False
    assert plan.execution.compile is True and plan.execution.chunk == 96
    assert plan_module.build_engine(plan).step_settings.compile is True
