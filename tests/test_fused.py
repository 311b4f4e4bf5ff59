"""The fused Triton step (nefs/fused): kernel == torch step (in Triton's interpreter), config, roofline."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nefs import GaborNet, FourierNet, MLP, RFFNet, SIREN
from nefs.errors import FitnefError
from nefs.fused import resolve_kernel, why_not
from nefs.fused.roofline import num_params, step_cost
from nefs.fused.spec import describe
from tasks.fitting import fit
from tasks.identity import identity

ROOT = Path(__file__).resolve().parents[1]


def test_fused_kernel_equals_the_torch_step_in_the_triton_interpreter():
    """tests/interp_fused.py, in a process of its own: TRITON_INTERPRET=1 must precede triton's import."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/interp_fused.py"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


# fit-a-nef's default sizes as the fit would launch them (auto picks the fused step for these on a GPU;
# task.train.matmul_precision=high, the default: tf32; highest: ieee)
AHEAD = [(SIREN(2, 1, 8), "mse", "ieee"), (SIREN(2, 1, 8), "mse", "tf32"), (SIREN(2, 1, 32), "mse", "tf32"),
         (SIREN(2, 1, 32), "mse", "bf16"), (SIREN(3, 1, 64, omega_0=30.0), "bce_logits", "ieee"),
         (MLP(2, 3, 15), "mse", "ieee"), (MLP(2, 3, 15), "mse", "tf32"), (RFFNet(2, 1, 32), "mse", "ieee")]
# wide ones, which only task.train.kernel=fused runs on a GPU: gradient sums in memory (padded 128, two hidden
# layers) and half-width blocks (padded 256)
WIDE = [(MLP(2, 1, 100), "mse", "ieee"), (SIREN(2, 1, 256), "mse", "ieee")]


def test_fused_kernel_compiles_for_an_h200_without_a_gpu():
    """Triton's ahead-of-time compile for sm_90 (ptxas included): what the interpreter cannot check, the GPU
    code generator's limits (constexpr loops, dot shapes, shared memory <= 227 KB per block), and that the
    NeFs auto gives the fused step keep every activation in registers: no spills."""
    pytest.importorskip("triton")
    from nefs.fused.resources import resources

    for template, loss, precision in AHEAD + WIDE:
        spec, _ = describe(template)
        r = resources(spec, loss, precision)
        assert 0 < r.shared_bytes <= 227 * 1024 and r.registers <= 255, (spec, precision, r)
        auto = why_not(template, "cuda", auto=True) == ""
        assert auto == ((template, loss, precision) in AHEAD), spec
        if auto:
            assert r.spill_bytes == 0, (spec, precision, r)


def test_supported_nefs_are_described_and_others_say_why_not():
    for template in (SIREN(), SIREN(3, 1, 64, omega_0=30.0), MLP(), RFFNet()):
        spec, reason = describe(template)
        assert reason == "" and num_params(spec) == sum(p.numel() for p in template.parameters())
    assert describe(SIREN())[0].hidden == ("layers.1.weight",) and describe(MLP())[0].padded_width == 16
    for template in (FourierNet(), GaborNet()):
        assert "has no fused step (supported: SIREN, MLP, RFFNet)" in describe(template)[1]
    assert "hidden_dim=300 is wider than the fused step's 256" in describe(MLP(hidden_dim=300))[1]
    assert "is not CUDA" in why_not(SIREN(), "cpu", interpreter_ok=False)
    # on a GPU: fused runs any width up to 256, auto picks it up to 64 (where it compiles without spills)
    assert why_not(SIREN(hidden_dim=65), "cuda") == "" and why_not(SIREN(hidden_dim=64), "cuda", auto=True) == ""
    assert "hidden_dim=65: auto takes the fused step up to 64 on a GPU" in why_not(SIREN(hidden_dim=65), "cuda", auto=True)


def test_kernel_setting_errors_are_one_line(compose, tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(FitnefError, match=r"task.train.kernel='fast': use auto, fused or torch"):
        resolve_kernel("fast", SIREN(), "cpu")
    with pytest.raises(FitnefError, match=r"kernel=fused: device cpu is not CUDA .*use task.train.kernel=auto or torch"):
        fit(compose("device=cpu", "task.train.kernel=fused", "task.train.end_idx=4"))
    with pytest.raises(FitnefError, match=r"kernel=fused: nef FourierNet has no fused step"):
        fit(compose("nef=fouriernet", "task.train.kernel=fused", "task.train.end_idx=4"))
    assert not (tmp_path / "store").exists()    # refused before the store is created
    assert resolve_kernel("auto", FourierNet(), "cpu") == "auto"


def test_kernel_is_run_only_and_auto_is_torch_on_cpu(compose, tmp_path, caplog):
    common = ["device=cpu", "task.train.end_idx=4", "task.train.num_steps=3", "task.train.compile=false"]
    assert identity(compose(*common, "task.train.kernel=torch")) == identity(compose(*common))
    fit(compose(*common, "task.train.kernel=torch"))
    with caplog.at_level("INFO", logger="nefs.fused.select"):
        s = fit(compose(*common, "task.train.kernel=auto", "task.train.end_idx=8"))   # same store: not refused
    assert s.fitted == 4 and s.total_done == 8
    assert "task.train.kernel=auto: torch step for SIREN, shared coordinates (device cpu is not CUDA" in caplog.text


def test_roofline_counts_a_hand_computed_siren_step():
    spec, _ = describe(SIREN(2, 1, 8))   # 2 -> 8 sine -> 8 sine -> 1: 105 parameters
    # per point: matmuls forward 2*(2*8 + 8*8 + 8*1) = 176, weight grads 176, input grads 2*(8*8 + 8*1) = 144;
    # 16 hidden units x (2 + 3) = 80 elementwise, 1 output x (4 + 3) = 7: 583 FLOPs; x 784 points x 2 NeFs
    cost = step_cost(spec, points=784, nefs=2)
    assert cost.flops == 583 * 784 * 2
    # floats: shared coords 784*2, per NeF targets 784 + params and grads 2*105 + loss 1 + Adam 7*105
    assert cost.bytes == 4 * (784 * 2 + 2 * (784 + 210 + 1 + 735))
    assert step_cost(spec, 784, 2, shared_coords=False).bytes == cost.bytes + 4 * 784 * 2
    line = cost.line(1e-6, peak_tflops=1.0, peak_tbs=1.0)
    assert "0.914 TFLOP/s = 91.4% of 1 FP32" in line and "= 2.01% of 1 HBM" in line and "floor 0.000914 ms" in line
