"""The fused Triton step (nefs/fused): kernel == torch step (in Triton's interpreter), config, roofline."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nefs import GaborNet, FourierNet, MLP, RFFNet, SIREN
from nefs.errors import FitnefError
from nefs.fused import why_not
from nefs.step_choice import resolve_kernel
from nefs.fused.roofline import num_params, step_cost
from nefs.fused.launch import check_tile, parse_tile
from nefs.fused.spec import MFNSpec, describe
from nefs.fused.step import default_tile, neighbour_tiles
from tasks.fitting import fit
from tasks.identity import identity

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
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
         (MLP(2, 3, 15), "mse", "ieee"), (MLP(2, 3, 15), "mse", "tf32"), (RFFNet(2, 1, 32), "mse", "ieee"),
         (FourierNet(), "mse", "ieee"), (GaborNet(), "mse", "ieee")]
# wide ones, which only task.train.kernel=fused runs on a GPU: gradient sums in memory (padded 128, two hidden
# layers) and half-width blocks (padded 256)
WIDE = [(MLP(2, 1, 100), "mse", "ieee"), (SIREN(2, 1, 256), "mse", "ieee")]


@pytest.mark.slow
def test_fused_kernel_compiles_for_an_h200_without_a_gpu():
    """Triton's ahead-of-time compile for sm_90 (ptxas included): what the interpreter cannot check, the GPU
    code generator's limits (constexpr loops, dot shapes, shared memory <= 227 KB per block), and that the
    table's tile for each default-size NeF keeps every activation in registers: no spills."""
    pytest.importorskip("triton")
    from nefs.fused.resources import resources

    for template, loss, precision in AHEAD + WIDE:
        spec, _ = describe(template)
        r = resources(spec, loss, precision)
        assert 0 < r.shared_bytes <= 227 * 1024 and r.registers <= 255, (spec, precision, r)
        assert why_not(template, "cuda") == "", spec
        if (template, loss, precision) in AHEAD and spec.kind != "GaborNet":   # GaborNet-15 spills 416 B at its best tile (docs/performance.md)
            assert r.spill_bytes == 0, (spec, precision, r)


class _SubclassedSIREN(SIREN):
    """Another forward pass, maybe: types are matched exactly."""


def test_supported_nefs_are_described_and_others_say_why_not():
    for template in (SIREN(), SIREN(3, 1, 64, omega_0=30.0), MLP(), RFFNet(), FourierNet(), GaborNet(),
                     FourierNet(3, 3, 12, num_filters=1), GaborNet(3, 2, 9, num_filters=3)):
        spec, reason = describe(template)
        assert reason == "" and num_params(spec) == sum(p.numel() for p in template.parameters())
    assert describe(SIREN())[0].hidden == ("layers.1.weight",) and describe(MLP())[0].padded_width == 16
    assert describe(FourierNet())[0] == MFNSpec("FourierNet", 2, 8, 1, 8, False)
    assert describe(GaborNet())[0] == MFNSpec("GaborNet", 2, 15, 1, 10, True)
    assert describe(GaborNet())[0].padded_width == 16
    supported = "(supported: SIREN, MLP, RFFNet, FourierNet, GaborNet)"
    assert describe(_SubclassedSIREN())[1] == f"nef _SubclassedSIREN has no fused step {supported}"
    assert "wider than the fused step's 256" in describe(GaborNet(hidden_dim=300))[1]
    assert "wider than the fused MFN step's 64 on a GPU" in why_not(FourierNet(hidden_dim=65), "cuda")
    assert "hidden_dim=300 is wider than the fused step's 256" in describe(MLP(hidden_dim=300))[1]
    assert "is not CUDA" in why_not(SIREN(), "cpu", interpreter_ok=False)
    # on a GPU the fused step runs any width up to 256 (auto measures it against torch there: nefs/step_choice.py)
    assert why_not(SIREN(hidden_dim=65), "cuda") == "" and why_not(SIREN(hidden_dim=256), "cuda") == ""


def test_kernel_setting_errors_are_one_line(compose, tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(FitnefError, match=r"task.train.kernel='fast': use auto, fused or torch"):
        resolve_kernel("fast", SIREN(), "cpu")
    with pytest.raises(FitnefError, match=r"kernel=fused: device cpu is not CUDA .*use task.train.kernel=auto or torch"):
        fit(compose("device=cpu", "task.train.kernel=fused", "task.train.end_idx=4"))
    with pytest.raises(FitnefError, match=r"kernel=fused: nef MLP hidden_dim=300 is wider than the fused step's 256; "
                                          r"use task.train.kernel=auto or torch"):
        fit(compose("nef=mlp", "nef.hidden_dim=300", "task.train.kernel=fused", "task.train.end_idx=4"))
    assert not (tmp_path / "store").exists()    # refused before the store is created
    assert resolve_kernel("auto", MLP(hidden_dim=300), "cpu") == "auto"


def test_kernel_is_run_only_and_auto_is_torch_on_cpu(compose, tmp_path, caplog):
    common = ["device=cpu", "task.train.end_idx=4", "task.train.num_steps=3", "task.train.compile=false"]
    assert identity(compose(*common, "task.train.kernel=torch")) == identity(compose(*common))
    fit(compose(*common, "task.train.kernel=torch"))
    with caplog.at_level("INFO", logger="nefs.step_choice"):
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


def test_roofline_counts_hand_computed_mfn_steps():
    spec, _ = describe(FourierNet(2, 1, 8, num_filters=2))   # filters 2 x (16 + 8), a linear 64 + 8, output 9
    assert num_params(spec) == 129
    # per point: filters 2 x (2*2*8 forward + the same for weight grads) = 128, linear and output matmuls
    # 3 x 2*(8*8 + 8*1) = 432; 16 filter units x 5 = 80, 8 linear units x 5 = 40, 1 output x 7: 687 FLOPs
    assert step_cost(spec, points=100, nefs=3).flops == 687 * 100 * 3
    assert step_cost(spec, 100, 3).bytes == 4 * (100 * 2 + 3 * (100 + 2 * 129 + 1 + 7 * 129))
    spec, _ = describe(GaborNet(2, 1, 4, num_filters=2))    # filters 2 x (mu 8 + gamma 4 + 8 + 4), 16 + 4, 5
    assert num_params(spec) == 73
    # filters 2 x 2 x (2*2*4) = 64, distances 2 x 2 x (3*2*4) = 96, matmuls 3 x 2*(4*4 + 4) = 120; 8 filter
    # units x (5 + 7) = 96, 4 linear units x 5 = 20, output 7: 403
    assert step_cost(spec, points=10, nefs=1, shared_coords=False).flops == 403 * 10


def test_the_tile_is_an_argument_with_the_tables_default():
    """FusedGrad(..., tile=) (nefs/fused/step.py): the table's tile by padded width unless given; its
    neighbours for a search; a bad tile is one line naming what is allowed."""
    siren8, _ = describe(SIREN(2, 1, 8))
    gabor, _ = describe(GaborNet())
    assert default_tile(siren8) == (64, 4, 3) and default_tile(siren8, "bf16") == (32, 4, 3)   # bf16 pads 8 -> 16
    assert default_tile(gabor) == (16, 8, 3)
    assert neighbour_tiles(siren8) == [(32, 4, 3), (128, 4, 3), (64, 2, 3), (64, 8, 3)]
    assert neighbour_tiles(gabor) == [(32, 8, 3), (16, 4, 3), (16, 16, 3)]   # no tile under 16 points
    assert check_tile((32, 2), (64, 4, 3)) == (32, 2, 3) and check_tile(None, (64, 4, 3)) == (64, 4, 3)
    for bad in [(12, 4), (32, 3), (32,), (32, 4, 0), (32, 32), ("32", 4)]:
        with pytest.raises(ValueError, match=r"tile=.*points a power of two >= 16"):
            check_tile(bad, (64, 4, 3))
    assert parse_tile("64,4") == (64, 4) and parse_tile("32,8,1") == (32, 8, 1) and parse_tile("") is None
    with pytest.raises(ValueError, match="points,warps"):
        parse_tile("64x4")

