"""The CUDA paths: same NeFs as on the CPU, the auto chunk probe, continuous batching, the store.

Skipped where no GPU is visible (CI); run on a GPU machine with ``python -m pytest tests/test_cuda.py``.
"""
import numpy as np
import pytest
import torch

from nefs import open_store
from tasks.fitting import fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# fp32 matmuls (not the default tf32): these compare devices and steps to float32 rounding
COMMON = ["task.train.num_steps=60", "scheduler.value=5e-3", "task.train.end_idx=96",
          "task.train.matmul_precision=highest"]
EAGER = [*COMMON, "task.train.compile=false"]   # compiling is tested once, in the first test


def _store(path):
    s = open_store(path)
    return s, np.asarray(s.params[:])


@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_fits_the_same_nefs_as_cpu(compose, tmp_path, compiled):
    common = [*COMMON, f"task.train.compile={compiled}", "task.train.masked_portion=0.5"]
    cpu = fit(compose(*common, "device=cpu", nef_dir=tmp_path / "cpu"))
    gpu = fit(compose(*common, "device=cuda", "task.train.num_parallel_nefs=32", nef_dir=tmp_path / "gpu"))
    assert gpu.device.startswith("cuda") and cpu.device == "cpu"
    (s_cpu, p_cpu), (s_gpu, p_gpu) = _store(tmp_path / "cpu"), _store(tmp_path / "gpu")
    assert s_gpu.done[:96].all()
    # float32 on two devices: rounding differs, the fit must not
    assert np.abs(p_cpu[:96] - p_gpu[:96]).max() < 2e-2
    assert np.abs(s_cpu["psnr"][:96] - s_gpu["psnr"][:96]).max() < 0.1
    assert gpu.metric_mean == pytest.approx(cpu.metric_mean, abs=0.02)


def test_auto_chunk_probe_on_cuda(compose, tmp_path):
    summary = fit(compose(*EAGER, "device=cuda", "task.train.num_parallel_nefs=auto"))
    assert summary.num_parallel_nefs >= 96      # the probe doubles while the GPU is not saturated
    s, _ = _store(tmp_path / "store")
    assert s.done[:96].all() and not s.done[96:].any()


def test_continuous_batching_on_cuda_matches_fixed_chunks(compose, tmp_path):
    target = ["task.train.target=22", "task.train.num_steps=400", "scheduler.value=2e-3",
              "task.train.end_idx=64", "device=cuda", "task.train.compile=false"]
    fit(compose(*target, "task.train.continuous=true", "task.train.num_parallel_nefs=16", nef_dir=tmp_path / "s"))
    fit(compose(*target, "task.train.continuous=false", "task.train.num_parallel_nefs=64", nef_dir=tmp_path / "c"))
    (s_s, p_s), (s_c, p_c) = _store(tmp_path / "s"), _store(tmp_path / "c")
    assert s_s.steps[:64].tolist() == s_c.steps[:64].tolist()
    assert np.abs(p_s[:64] - p_c[:64]).max() < 1e-3


def test_cuda_store_reconstructs_on_cpu(compose, tmp_path):
    fit(compose(*EAGER, "device=cuda"))
    s = open_store(tmp_path / "store")
    rec = s.reconstruct(np.arange(4))
    assert rec.device.type == "cpu" and rec.shape == (4, 1, 28, 28)
    assert torch.isfinite(rec).all()


FUSED_500 = ["task.train.num_steps=500", "scheduler.value=1e-3", "task.train.end_idx=96", "device=cuda",
             "task.train.compile=false", "task.train.matmul_precision=highest"]


def test_fused_step_fits_the_torch_nefs_on_cuda(compose, tmp_path):
    """The fused Triton step (task.train.kernel=fused) against the torch step, 500 steps of SIREN-8."""
    torch_run = fit(compose(*FUSED_500, "task.train.kernel=torch", nef_dir=tmp_path / "torch"))
    fused_run = fit(compose(*FUSED_500, "task.train.kernel=fused", nef_dir=tmp_path / "fused"))
    (_, p_t), (_, p_f) = _store(tmp_path / "torch"), _store(tmp_path / "fused")
    assert fused_run.metric_mean == pytest.approx(torch_run.metric_mean, abs=0.01)
    assert np.abs(p_t[:96] - p_f[:96]).max() < 1e-4


@pytest.mark.parametrize("overrides", [["task.train.masked_portion=0.5"], ["nef=mlp"], ["nef=rffnet"],
                                       ["task=shape", "task.train.end_idx=8", "task.train.num_points=256"]])
def test_fused_step_on_cuda_matches_torch_for_each_batch_kind(compose, tmp_path, overrides):
    common = [*EAGER, "device=cuda", *overrides]
    fit(compose(*common, "task.train.kernel=torch", nef_dir=tmp_path / "torch"))
    fit(compose(*common, "task.train.kernel=fused", nef_dir=tmp_path / "fused"))
    (s_t, p_t), (s_f, p_f) = _store(tmp_path / "torch"), _store(tmp_path / "fused")
    rows = s_t.done.nonzero()[0]
    assert len(rows) and (s_f.done[rows]).all()
    assert np.abs(p_t[rows] - p_f[rows]).max() < 1e-3


@pytest.mark.parametrize("precision", ["high", "medium"])
def test_fused_low_precision_inputs_stay_close_on_cuda(precision):
    """task.train.matmul_precision through the engine: the fused step's matmul inputs rounded (tf32, bf16),
    accumulation fp32."""
    from nefs import SIREN
    from nefs.engine import ChunkFitter
    from nefs.stack import init_stacked

    class Problem:
        fused_loss = "mse"
        loss = staticmethod(lambda pred, target: ((pred - target) ** 2).mean())

    template = SIREN(2, 1, 32).cuda()
    params = init_stacked(SIREN(2, 1, 32), [0] * 64, list(range(64)), fixed_init=False, device="cuda")
    x = torch.rand(784, 2, device="cuda") * 2 - 1
    y = torch.randn(64, 784, 1, device="cuda")

    def grad_fn(setting):
        fitter = ChunkFitter(template, torch.optim.Adam, lambda s: 1e-3, 1, compile=False, kernel="fused",
                             matmul_precision=setting)
        fn = fitter.grad_fn(Problem(), False)
        assert fn.cands[0].build().const["PREC"] == {"highest": "ieee", "high": "tf32", "medium": "bf16"}[setting]
        return fn

    g32, l32 = grad_fn("highest")(params, x, y)
    glo, llo = grad_fn(precision)(params, x, y)
    assert torch.allclose(llo, l32, rtol=2e-2)
    assert any(not torch.equal(glo[k], g32[k]) for k in g32)   # the inputs were rounded
    for k in g32:
        assert (glo[k] - g32[k]).norm() <= 0.05 * g32[k].norm() + 1e-6, k


@pytest.mark.parametrize("kernel", ["torch", "fused"])
def test_matmul_precision_high_fits_close_to_fp32_on_cuda(compose, tmp_path, kernel):
    """A fit with task.train.matmul_precision=high (tf32): the torch step under torch's setting (restored after
    the fit), the fused step with tf32 inputs; PSNR within 0.1 dB of fp32's, the NeFs not identical."""
    before = torch.get_float32_matmul_precision()
    common = [*EAGER, "device=cuda", f"task.train.kernel={kernel}"]
    fp32 = fit(compose(*common, nef_dir=tmp_path / "fp32"))     # EAGER: highest
    tf32 = fit(compose(*common, "task.train.matmul_precision=high", nef_dir=tmp_path / "tf32"))
    assert torch.get_float32_matmul_precision() == before
    (_, p32), (_, plo) = _store(tmp_path / "fp32"), _store(tmp_path / "tf32")
    assert tf32.metric_mean == pytest.approx(fp32.metric_mean, abs=0.1)
    assert not np.array_equal(p32[:96], plo[:96])
