"""task.train.matmul_precision: the config option (one-line errors before any store), a store's identity
(stores recorded before the key resume under fp32, highest, and are refused under anything else, the default
high included), and what the torch step does with torch's own setting (nefs/precision.py). The fused kernel's
side: tests/interp_fused.py."""
import pytest
import torch
import zarr

from nefs import step_choice
from nefs.engine import ChunkFitter
from nefs.errors import FitnefError
from nefs.fused.emulate import RoundedMatmul, round_mantissa
from nefs.precision import torch_matmul_precision
from tasks.fitting import build_engine, fit
from tasks.identity import identity, upgrade_identity
from tasks.plan import plan_run

COMMON = ["device=cpu", "task.train.end_idx=4", "task.train.num_steps=3", "task.train.compile=false"]


def test_a_bad_value_is_one_line_before_any_store(compose, tmp_path):
    for bad in ("fp16", "ieee", "HIGH"):
        with pytest.raises(FitnefError) as e:
            fit(compose(*COMMON, f"task.train.matmul_precision={bad}"))
        assert str(e.value) == (f"task.train.matmul_precision={bad!r}: use highest (fp32 inputs), high (tf32) "
                                "or medium (bf16)")
    assert not (tmp_path / "store").exists()


def test_the_setting_reaches_the_engine_and_the_identity(compose):
    plan = plan_run(compose(*COMMON, "task.train.matmul_precision=medium"))
    assert plan.execution.matmul_precision == "medium" and build_engine(plan).matmul_precision == "medium"
    assert plan.identity["task"]["train"]["matmul_precision"] == "medium"
    assert build_engine(plan_run(compose(*COMMON))).matmul_precision == "high"   # the default: tf32
    assert ChunkFitter(None, None, None, 1).matmul_precision == "highest"         # the engine's own: fp32
    assert identity(compose(*COMMON)) != identity(compose(*COMMON, "task.train.matmul_precision=highest"))


def _forget_the_key(store):
    """Make ``store`` look like one written before the key existed."""
    group = zarr.open_group(str(store), mode="r+")
    config = group.attrs["config"]
    del config["task"]["train"]["matmul_precision"]
    group.attrs["config"] = config


def test_a_store_recorded_without_the_key_resumes_as_fp32_and_is_refused_otherwise(compose, tmp_path, monkeypatch):
    fp32 = [*COMMON, "task.train.matmul_precision=highest"]
    fit(compose(*fp32))
    _forget_the_key(tmp_path / "store")
    for other in ([], ["task.train.matmul_precision=medium"]):   # the default (high), and bf16
        with pytest.raises(FitnefError) as e:
            fit(compose(*COMMON, "task.train.end_idx=8", *other))
        now = "medium" if other else "high"
        assert "\n" not in str(e.value)
        assert f"(task.train.matmul_precision: 'highest' (store) != '{now}' (now))" in str(e.value)
    more = [*fp32, "task.train.end_idx=8"]
    with monkeypatch.context() as m:   # what the table is for: without it the old store is refused
        m.setattr("tasks.identity.IMPLICIT_KEYS", {})
        with pytest.raises(FitnefError, match=r"task.train.matmul_precision: '<missing>' \(store\) != 'highest'"):
            fit(compose(*more))
    s = fit(compose(*more))
    assert s.fitted == 4 and s.total_done == 8


def test_upgrade_fills_only_missing_keys_and_keeps_its_input():
    recorded = {"task": {"train": {"num_steps": 5}}, "nef": {}}
    filled = upgrade_identity(recorded)
    assert filled["task"]["train"] == {"num_steps": 5, "matmul_precision": "highest"}
    assert recorded == {"task": {"train": {"num_steps": 5}}, "nef": {}}
    assert upgrade_identity({"task": {"train": {"matmul_precision": "medium"}}})["task"]["train"] == {
        "matmul_precision": "medium"}
    assert upgrade_identity({"nef": {}}) == {"nef": {}}      # no parent: nothing invented


def test_an_identity_recorded_before_the_floor_plan_reads_as_todays(compose):
    """What the version before issue 12 recorded: target_psnr (now task.train.target), multi_gpu and task.wandb
    (gone, they computed nothing), no matmul_precision (fp32 then)."""
    today = identity(compose(*COMMON, "task.train.matmul_precision=highest", "task.train.target=25"))
    old = upgrade_identity(today)   # a deep copy to edit
    train = old["task"]["train"]
    train["target_psnr"] = train.pop("target")
    del train["matmul_precision"]
    train["multi_gpu"] = False
    old["task"]["wandb"] = {"project": "fitnef", "entity": None, "name": None}
    assert upgrade_identity(old) == today
    assert upgrade_identity(old) != identity(compose(*COMMON, "task.train.target=25"))   # the default: tf32


@pytest.fixture
def calls(monkeypatch):
    """torch.set_float32_matmul_precision's calls, still made."""
    seen, real = [], torch.set_float32_matmul_precision

    def spy(value):
        seen.append(value)
        real(value)

    monkeypatch.setattr(torch, "set_float32_matmul_precision", spy)
    before = torch.get_float32_matmul_precision()
    yield seen
    real(before)


def test_on_the_cpu_only_highest_touches_torchs_setting(calls):
    torch.set_float32_matmul_precision("medium")   # what a process may have set (oneDNN bf16 on the CPU)
    calls.clear()
    for setting in ("high", "medium"):
        with torch_matmul_precision(setting, "cpu"):
            assert torch.get_float32_matmul_precision() == "medium"
    assert calls == []
    with torch_matmul_precision("highest", "cpu"):
        assert torch.get_float32_matmul_precision() == "highest"
    assert torch.get_float32_matmul_precision() == "medium" and calls == ["highest", "medium"]


def test_on_cuda_the_setting_is_torchs_for_the_call_and_restored(calls):
    torch.set_float32_matmul_precision("highest")
    calls.clear()
    with torch_matmul_precision("high", "cuda"):      # sets a flag only: no GPU needed
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == "highest" and calls == ["high", "highest"]
    with pytest.raises(RuntimeError), torch_matmul_precision("medium", "cuda"):
        raise RuntimeError("a failing step")
    assert torch.get_float32_matmul_precision() == "highest"


def test_the_fits_torch_step_runs_at_the_setting_and_the_process_keeps_its_own(compose, calls, monkeypatch,
                                                                               tmp_path):
    """The fit's torch step on the CPU with highest while the process is at medium: each gradient call at
    highest, the process after the fit at medium again; with high, torch's setting is left alone."""
    seen = []
    torch_grad_fn = step_choice.torch_grad_fn

    def watched(template, problem_type, batched=False):
        fn = torch_grad_fn(template, problem_type, batched)

        def step(*args):
            seen.append(torch.get_float32_matmul_precision())
            return fn(*args)
        return step

    monkeypatch.setattr(step_choice, "torch_grad_fn", watched)
    torch.set_float32_matmul_precision("medium")
    fit(compose(*COMMON, "task.train.matmul_precision=highest"))
    assert seen and set(seen) == {"highest"}
    assert torch.get_float32_matmul_precision() == "medium"
    seen.clear()
    fit(compose(*COMMON, nef_dir=tmp_path / "high"))   # the default, high
    assert seen and set(seen) == {"medium"}    # on the CPU high leaves torch's setting alone


def test_the_emulations_rounding_is_round_to_nearest_even_or_toward_zero():
    """nefs/fused/emulate.py: bf16 as torch converts (RNE), tf32 against a float64 reference, ties to even,
    carries into the exponent; rz drops the bits."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100000, generator=g) * torch.exp(3 * torch.randn(100000, generator=g))
    assert torch.equal(round_mantissa(x, 7), x.to(torch.bfloat16).float())
    m, e = torch.frexp(x.double())
    for bits in (7, 10):
        assert torch.equal(round_mantissa(x, bits), torch.ldexp(torch.round(m * 2.0 ** (bits + 1)) / 2.0 ** (bits + 1), e).float())
        assert torch.equal(round_mantissa(x, bits, "rz"), torch.ldexp(torch.trunc(m * 2.0 ** (bits + 1)) / 2.0 ** (bits + 1), e).float())
    ties = torch.tensor([1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 - 2 ** -12, -(1 + 2 ** -11)])
    assert round_mantissa(ties, 10).tolist() == [1.0, 1 + 2 * 2 ** -10, 2.0, -1.0]


def test_rounded_matmul_rounds_inputs_forward_and_backward_under_vmap():
    from torch.func import grad, vmap

    g = torch.Generator().manual_seed(1)
    w, h, t = torch.randn(3, 5, 4, generator=g), torch.randn(3, 4, 6, generator=g), torch.randn(3, 5, 6, generator=g)

    def loss(w, h, t):
        return ((RoundedMatmul.apply(w, h, 7, "rne") - t) ** 2).sum()

    gw, gh = vmap(grad(loss, argnums=(0, 1)))(w, h, t)
    r = lambda v: round_mantissa(v, 7)  # noqa: E731
    dz = 2 * (r(w) @ r(h) - t)
    torch.testing.assert_close(gw, r(dz) @ r(h).transpose(1, 2), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gh, r(w).transpose(1, 2) @ r(dz), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(gw, dz @ h.transpose(1, 2), rtol=1e-4, atol=1e-4)   # bf16 rounding shows
