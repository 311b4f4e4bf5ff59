"""The fused kernel against the torch step, run in Triton's interpreter on the CPU.

Not collected on its own (the name does not match test_*.py): tests/test_fused.py runs this file in a
subprocess with TRITON_INTERPRET=1, which must be set before triton is first imported and would turn
every other Triton kernel of the process into interpreted code. Shapes are tiny (the interpreter runs
each program in Python) but cross tile boundaries: point counts and widths are not multiples of a tile.
"""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value

from nefs import MLP, FourierNet, GaborNet, RFFNet, SIREN
from nefs.engine import ChunkFitter
from nefs.fused.emulate import hidden_matmuls_rounded
from nefs.step_choice import Kernel, StepSettings, candidates
from nefs.fused.spec import describe
from nefs.fused.step import FusedGrad
from nefs.stack import init_stacked

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="run by tests/test_fused.py")


def mse(pred, target):
    return ((pred - target) ** 2).mean()


def bce(pred, target):
    return F.binary_cross_entropy_with_logits(pred, target)


def torch_step(template, loss, batched):
    def nef_loss(p, x, y):
        return loss(functional_call(template, p, (x,)), y)

    return torch.vmap(grad_and_value(nef_loss), in_dims=(0, 0 if batched else None, 0))


# (template, loss, per-NeF coords, N, points); widths pad to 8, 16, 32, 64, 128, 256 (tiles of 64..16 points)
CASES = {
    "siren8-shared": (lambda: SIREN(2, 1, 8), "mse", False, 3, 150),
    "siren20-4layers-scaled-batched": (lambda: SIREN(2, 1, 20, num_layers=4, weight_scale=2.5), "mse", True, 2, 70),
    "siren2layers-rgb": (lambda: SIREN(2, 3, 12, num_layers=2), "mse", False, 3, 33),
    "siren-shape-bce": (lambda: SIREN(3, 1, 64, omega_0=30.0), "bce", True, 2, 45),
    "siren256": (lambda: SIREN(2, 1, 256), "mse", False, 2, 20),
    # wide: gradient sums in memory (padded 128), and matmuls in four half-width blocks (padded 256), with
    # several hidden layers (the loop that recomputes a layer's input) and widths that are not a power of two
    "siren100-3hidden-batched": (lambda: SIREN(2, 1, 100, num_layers=5), "mse", True, 3, 37),
    "mlp120-rgb": (lambda: MLP(2, 3, 120), "mse", False, 2, 21),
    "rff128-shape-bce-batched": (lambda: RFFNet(3, 1, 128), "bce", True, 2, 19),
    "mlp200-2hidden-batched": (lambda: MLP(2, 1, 200), "mse", True, 2, 18),
    "mlp15-rgb-batched": (lambda: MLP(2, 3, 15), "mse", True, 3, 140),
    "mlp1layer": (lambda: MLP(2, 1, 9, num_layers=1), "mse", False, 2, 17),
    "rff32": (lambda: RFFNet(2, 1, 32), "mse", False, 3, 70),
    "rff-frozen-rgb-batched": (lambda: RFFNet(2, 3, 10, num_layers=2, learnable_coefficients=False), "mse", True, 2, 40),
    # multiplicative filter networks (nefs/fused/mfn_kernel.py): the defaults, 1 to 10 filters, widths 9-40
    "fourier8-shared": (lambda: FourierNet(), "mse", False, 3, 150),
    "fourier12-3filters-rgb-batched": (lambda: FourierNet(2, 3, 12, num_filters=3), "mse", True, 2, 70),
    "fourier-1filter-3d-bce-batched": (lambda: FourierNet(3, 1, 10, num_filters=1), "bce", True, 2, 45),
    "fourier40-rgb-bce": (lambda: FourierNet(2, 3, 40, num_filters=3), "bce", False, 2, 40),
    "gabor15-shared": (lambda: GaborNet(), "mse", False, 3, 100),
    "gabor15-batched": (lambda: GaborNet(), "mse", True, 2, 37),
    "gabor20-3d-rgb-bce-batched": (lambda: GaborNet(3, 3, 20, num_filters=4), "bce", True, 2, 50),
    "gabor9-2filters-bce-shared": (lambda: GaborNet(2, 1, 9, num_filters=2, input_scale=32.0), "bce", False, 2, 37),
}


def _inputs(template, loss, batched, n, p, seed=0):
    g = torch.Generator().manual_seed(seed)
    d, c = template.in_features, template.out_features
    x = torch.rand((n, p, d) if batched else (p, d), generator=g) * 2 - 1
    y = torch.randn(n, p, c, generator=g) if loss == "mse" else (torch.rand(n, p, c, generator=g) > 0.5).float()
    return x, y


@pytest.mark.parametrize("case", list(CASES))
def test_fused_gradients_equal_torch(case):
    make, loss, batched, n, p = CASES[case]
    template = make()
    params = init_stacked(template, [0] * n, list(range(n)), fixed_init=False)
    x, y = _inputs(template, loss, batched, n, p)
    spec, reason = describe(template)
    assert spec is not None, reason
    g_fused, l_fused = FusedGrad(spec, "mse" if loss == "mse" else "bce_logits")(params, x, y)
    g_ref, l_ref = torch_step(template, mse if loss == "mse" else bce, batched)(params, x, y)
    assert l_fused.shape == (n,)
    torch.testing.assert_close(l_fused, l_ref, rtol=1e-5, atol=1e-6)
    assert set(g_fused) == set(g_ref)
    for name in g_ref:
        assert g_fused[name].shape == g_ref[name].shape, name
        scale = g_ref[name].abs().max().item() + 1e-6
        assert (g_fused[name] - g_ref[name]).abs().max().item() <= 1e-5 * scale + 1e-7, name


@pytest.mark.parametrize("case,tile", [("siren8-shared", (16, 2)), ("mlp15-rgb-batched", (16, 8, 1)),
                                       ("fourier8-shared", (64, 2)), ("gabor15-batched", (32, 4))])
def test_a_tile_other_than_the_tables_computes_the_same_step(case, tile):
    """``tile=`` changes how the points are cut, not what is computed (point counts not a multiple of it)."""
    make, loss, batched, n, p = CASES[case]
    template = make()
    params = init_stacked(template, [0] * n, list(range(n)), fixed_init=False)
    x, y = _inputs(template, loss, batched, n, p)
    spec, _ = describe(template)
    table, other = FusedGrad(spec, "mse"), FusedGrad(spec, "mse", tile=tile)
    assert other.const["BLOCK_P"] == tile[0] != table.const["BLOCK_P"] and other.options["num_warps"] == tile[1]
    assert other.options["num_stages"] == (tile + table.tile[2:])[2]
    (g_table, l_table), (g_other, l_other) = table(params, x, y), other(params, x, y)
    torch.testing.assert_close(l_other, l_table, rtol=1e-5, atol=1e-6)
    for name in g_table:
        torch.testing.assert_close(g_other[name], g_table[name], rtol=1e-4, atol=1e-6)


class _Problem:
    """The smallest engine Problem: fixed targets, all points shared, or a keyed subset per NeF."""

    per_nef_fields = ("targets",)
    fused_loss = "mse"

    def __init__(self, coords, targets, subset=None):
        self.coords, self.targets, self.subset = coords, targets, subset

    def train_batch(self, step):
        if self.subset is None:
            return self.coords, self.targets, False
        n, p = self.targets.shape[:2]
        g = torch.Generator().manual_seed(int(step) if not torch.is_tensor(step) else 0)
        idx = torch.stack([torch.randperm(p, generator=g)[: self.subset] for _ in range(n)])
        return self.coords[idx], torch.gather(self.targets, 1, idx[..., None].expand(-1, -1, 1)), True

    loss = staticmethod(mse)

    def metric(self, forward, params):
        with torch.no_grad():
            err = ((forward(params, self.coords) - self.targets) ** 2).flatten(1).mean(1)
        return -10 * torch.log10(err)


def _short_fits_agree(template, n, p, seed, subset, trained):
    """8 Adam steps through ChunkFitter with the fused and the torch step: the same parameters and metric."""
    x, y = _inputs(template, "mse", False, n, p, seed=seed)
    params = init_stacked(template, [0] * n, list(range(n)), fixed_init=False)
    out = {}
    for kernel in ("torch", "fused"):
        fitter = ChunkFitter(template, torch.optim.Adam, lambda s: 1e-2, num_steps=8, compile=False, kernel=kernel)
        out[kernel] = fitter.fit(params, _Problem(x, y, subset))
    for name in params:
        assert (out["fused"].params[name] - out["torch"].params[name]).abs().max() < 1e-4, name
    torch.testing.assert_close(out["fused"].metric, out["torch"].metric, atol=1e-3, rtol=0)
    assert not torch.equal(out["fused"].params[trained], params[trained])  # it did train


@pytest.mark.parametrize("subset", [None, 23])
def test_short_fit_with_the_fused_step_equals_the_torch_fit(subset):
    _short_fits_agree(SIREN(2, 1, 8), 4, 49, 1, subset, "output.weight")


@pytest.mark.parametrize("make", [FourierNet, GaborNet], ids=["fouriernet", "gabornet"])
def test_short_mfn_fit_with_the_fused_step_equals_the_torch_fit(make):
    _short_fits_agree(make(), 3, 40, 3, 17, "linears.0.weight")


def test_a_problem_without_a_fused_loss_is_refused_or_left_to_torch():
    class Other(_Problem):
        fused_loss = None

    template = SIREN(2, 1, 8)
    cands, why = candidates(template, Other(None, None), False, StepSettings(kernel=Kernel.AUTO), interpreter_ok=True)
    assert [c.name for c in cands] == ["torch"] and why == "Other names no fused_loss"
    with pytest.raises(Exception, match="task.train.kernel=fused: Other names no fused_loss"):
        candidates(template, Other(None, None), False, StepSettings(kernel=Kernel.FUSED))


def test_shape_fit_with_the_fused_step_equals_the_torch_fit():
    """Per-NeF 3-D points and the BCE loss, through the real ShapeProblem."""
    import numpy as np

    from tasks.shape.modality import ShapeProblem

    rng = np.random.default_rng(0)
    signals = []
    for m in (30, 41, 25):
        pts = rng.uniform(-0.5, 0.5, (m, 3)).astype(np.float32)
        signals.append((pts, np.linalg.norm(pts, axis=1) < 0.4))
    template = SIREN(3, 1, 16, omega_0=30.0)
    params = init_stacked(template, [0] * 3, [0, 1, 2], fixed_init=False)
    out = {}
    for kernel in ("torch", "fused"):
        problem = ShapeProblem.of(signals, torch.zeros(3, dtype=torch.long), torch.arange(3), (9, 8))
        fitter = ChunkFitter(template, torch.optim.Adam, lambda s: 1e-2, num_steps=8, compile=False, kernel=kernel)
        out[kernel] = fitter.fit(params, problem)
    for name in params:
        assert (out["fused"].params[name] - out["torch"].params[name]).abs().max() < 1e-4, name


def test_continuous_batching_with_the_fused_step_equals_torch():
    """fit_stream: per-slot steps, slots refilled as NeFs reach the target."""
    import numpy as np

    template = SIREN(2, 1, 8)
    x, y = _inputs(template, "mse", False, 6, 30, seed=2)
    start = init_stacked(template, [0] * 6, list(range(6)), fixed_init=False)

    def make(rows):
        idx = torch.as_tensor(rows)
        return {k: v[idx] for k, v in start.items()}, _Problem(x, y[idx])

    out = {}
    for kernel in ("torch", "fused"):
        fitter = ChunkFitter(template, torch.optim.Adam, lambda s: 2e-2, num_steps=12, check_every=3,
                             target=1.0, compile=False, kernel=kernel)
        got = {}
        fitter.fit_stream(np.arange(6), make, 4, lambda rows, res: got.update(
            {int(r): (res.params["output.weight"][i], int(res.steps[i])) for i, r in enumerate(rows)}))
        out[kernel] = got
    assert sorted(out["fused"]) == list(range(6))
    for r in range(6):
        assert out["fused"][r][1] == out["torch"][r][1]
        assert (out["fused"][r][0] - out["torch"][r][0]).abs().max() < 1e-4


# -- task.train.matmul_precision -------------------------------------------------------------------------
@pytest.fixture
def bf16_as_on_gpu(monkeypatch):
    """Two things Triton 3.8's interpreter gets wrong about bf16, set as the GPU does them: its fp32 -> bf16
    cast truncates (the GPU's cvt.rn.bf16.f32 rounds to nearest even: torch's conversion), and its tl.dot
    multiplies bf16 operands' bit patterns as integers (it stores bf16 as uint16); here they are widened to
    the fp32 values they stand for (exact), multiplied and summed in fp32."""
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter as ti

    cast, builder = ti.InterpreterBuilder.cast_impl, ti.InterpreterBuilder

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            data = torch.from_numpy(np.ascontiguousarray(src.data)).to(torch.bfloat16).view(torch.int16)
            return ti.TensorHandle(data.numpy().view(np.uint16), dst_type.scalar)
        return cast(self, src, dst_type)

    def widened(h):
        return (h.data.astype(np.uint32) << 16).view(np.float32) if h.dtype.scalar == tl.bfloat16 else h.data

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        out = np.matmul(widened(a), widened(b), dtype=d.data.dtype) + d.data
        return ti.TensorHandle(out, d.dtype.scalar)

    monkeypatch.setattr(builder, "cast_impl", cast_impl)
    monkeypatch.setattr(builder, "create_dot", create_dot)


@pytest.mark.parametrize("case", ["siren8-shared", "siren20-4layers-scaled-batched", "mlp15-rgb-batched", "rff32"])
def test_bf16_fused_gradients_equal_the_emulated_torch_step(case, bf16_as_on_gpu):
    """nefs/fused/emulate.py's emulation, which scripts/precision_bench.py fits with (the torch step with exactly
    the hidden matmuls' inputs rounded to bf16, forward and backward, fp32 sums) computes the kernel's bf16 arithmetic: same gradients to float32
    rounding, where they differ from the fp32 step's by far more (so a wrong emulation, e.g. rounding the output
    layer too or the backward pass not at all, fails)."""
    make, loss, batched, n, p = CASES[case]
    template = make()
    params = init_stacked(template, [0] * n, list(range(n)), fixed_init=False)
    x, y = _inputs(template, loss, batched, n, p)
    spec, _ = describe(template)
    g_fused, l_fused = FusedGrad(spec, "mse", "bf16")(params, x, y)
    step = torch_step(template, mse, batched)
    g32, l32 = step(params, x, y)
    with hidden_matmuls_rounded(template, "medium"):
        g_emul, l_emul = step(params, x, y)
    torch.testing.assert_close(l_fused, l_emul, rtol=1e-5, atol=1e-6)
    gap = 0.0
    for name in g_emul:
        scale = g_emul[name].abs().max().item() + 1e-6
        assert (g_fused[name] - g_emul[name]).abs().max().item() <= 2e-5 * scale + 1e-7, name
        gap = max(gap, (g32[name] - g_emul[name]).abs().max().item() / scale)
    assert gap > 1e-3, gap    # bf16 moved the gradients: the comparison above could tell


@pytest.mark.parametrize("setting,prec", [("highest", "ieee"), ("high", "tf32"), ("medium", "bf16")])
def test_matmul_precision_reaches_the_fused_kernel(setting, prec, compose, tmp_path):
    """task.train.matmul_precision -> plan -> build_engine -> ChunkFitter -> its step -> the kernel's PREC."""
    from tasks.fitting import build_engine
    from tasks.plan import plan_run

    plan = plan_run(compose("device=cpu", "task.train.kernel=fused", f"task.train.matmul_precision={setting}",
                            "task.train.end_idx=4", "task.train.compile=false"))
    assert plan.execution.matmul_precision == setting
    fitter = build_engine(plan)
    _, problem = plan.make(np.arange(4))
    grad = fitter.grad_fn(problem, False)
    assert len(grad.cands) == 1 and grad.cands[0].fused   # forced: one candidate, nothing measured
    assert grad.cands[0].build().const["PREC"] == prec
    assert not (tmp_path / "store").exists()


def test_auto_measures_the_fused_tiles_and_torch_and_keeps_the_fastest(tmp_path):
    """kernel=auto over the real kernel: the table's tile, its neighbours and torch are checked against the torch
    step and timed (timer injected); the winner's gradients are the torch step's."""
    from nefs.step_choice import ChosenStep, gradient_gap

    template = SIREN(2, 1, 8)
    x, y = _inputs(template, "mse", False, 3, 70, seed=2)
    params = init_stacked(template, [0] * 3, [0, 1, 2], fixed_init=False)
    times = {"fused 64x4x3": 3.0, "fused 32x4x3": 1.0, "fused 128x4x3": 2.0, "fused 64x2x3": 5.0, "fused 64x8x3": 6.0,
             "torch": 4.0}
    seen = []
    step = ChosenStep(template, _Problem(x, y), False, StepSettings(kernel=Kernel.AUTO, cache=tmp_path / "c.json"),
                      interpreter_ok=True, timer=lambda name, fn, args: (seen.append(name), times[name])[1])
    grads, loss = step(params, x, y)
    assert sorted(seen) == sorted(times) and step.name == "fused 32x4x3"
    assert step.fn.const["BLOCK_P"] == 32
    want, want_loss = torch_step(template, mse, False)(params, x, y)
    assert gradient_gap(grads, want) < 1e-5
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-7)
