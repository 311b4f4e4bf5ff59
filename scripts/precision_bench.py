"""The PSNR cost of TF32 / bf16 matmul inputs (``task.train.matmul_precision``), measured without a GPU.

    python -m scripts.precision_bench                       # 256 digits, SIREN-8, SIREN-32, MLP-15, 500 steps
    python -m scripts.precision_bench --nefs siren --n 64 --steps 100          # quicker

The fused step (nefs/fused/kernel.py) rounds the inputs of its hidden x hidden matmuls, and of those only:
forward z = h W^T, backward dW = dz^T h and dh = dz W, to tf32 (10 explicit mantissa bits) or bf16 (7),
and accumulates their products in fp32; the first layer, the output layer, the loss, the bias gradients and
the activations stay fp32. This script fits the bundled digits with the torch step on the CPU (through
``tasks.fitting.fit``: the project's defaults, same NeFs, same store layout) once per precision, with those
same matmuls computed as the kernel computes them: inputs rounded to nearest even, exact products (11 x 11 or
8 x 8 significant bits fit fp32's 24) summed in fp32 (``RoundedMatmul``,
nefs/fused/emulate.py). PSNRs are measured in fp32, as the fit measures them with either step. tests/interp_fused.py checks this emulation against the kernel itself
(bf16, Triton's interpreter): equal gradients to float32 rounding.

Reports per NeF kind and precision the mean PSNR over the NeFs and the paired difference to fp32 (same NeFs,
same init): mean, its standard error, and the worst NeF. Speed is not measured here (a GPU question).
"""
import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from nefs import open_store, step_choice
from nefs.fused.emulate import hidden_matmuls_rounded
from tasks.fitting import fit
from tasks.resolvers import register

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"highest": "fp32", "high": "tf32", "high-rz": "tf32rz", "medium": "bf16", "high-all": "tf32all"}
# name -> (label, overrides); the default set: the fused step's test NeFs (docs/performance.md)
NEFS = {"siren": ("SIREN-8", ["nef=siren"]), "siren32": ("SIREN-32", ["nef=siren", "nef.hidden_dim=32"]),
        "mlp": ("MLP-15", ["nef=mlp"]), "siren_scaled": ("SIREN-32s", ["nef=siren_scaled"])}
DEFAULT_NEFS = ("siren", "siren32", "mlp")


@contextlib.contextmanager
def train_step_rounded(precision: str):
    """Every ChunkFitter's torch train step (the gradient, not the metric's forward pass) with its hidden
    matmuls rounded as the fused kernel rounds them at ``precision``."""
    if precision == "highest":
        yield
        return
    original = step_choice.torch_grad_fn

    def torch_grad_fn(template, problem_type, batched=False):
        fn = original(template, problem_type, batched)

        def step(*args):
            with hidden_matmuls_rounded(template, precision):
                return fn(*args)

        return step

    step_choice.torch_grad_fn = torch_grad_fn
    try:
        yield
    finally:
        step_choice.torch_grad_fn = original


def fit_psnrs(nef_overrides, precision: str, n: int, steps: int, lr: float, extra=()) -> np.ndarray:
    """Per-NeF PSNRs of one CPU fit of the first ``n`` digits with the torch step at ``precision``."""
    with tempfile.TemporaryDirectory() as tmp, initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            *nef_overrides, "dataset=digits", "device=cpu", f"task.train.end_idx={n}", f"task.train.num_steps={steps}",
            f"scheduler.value={lr}", "task.train.kernel=torch", "task.train.compile=false", "task.log.progress=false",
            f"task.nef_dir={tmp}/store", *extra])
        with train_step_rounded(precision):
            fit(cfg)
        return np.asarray(open_store(f"{tmp}/store")["psnr"][:n], dtype=np.float64)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nefs", nargs="+", default=list(DEFAULT_NEFS), choices=list(NEFS))
    p.add_argument("--precisions", nargs="+", default=["high", "medium"], choices=["high", "high-rz", "medium", "high-all"],
                   help="compared with highest (fp32), which always runs; high-rz: tf32 by truncation; high-all: "
                        "tf32 in every layer (the torch step on CUDA)")
    p.add_argument("--n", type=int, default=256, help="NeFs (the first n digits)")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)

    register()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision("highest")   # on CPU "medium" would send every matmul through oneDNN bf16
    print(f"{args.n} digits (28x28), {args.steps} steps, Adam lr {args.lr:g}, torch step on CPU, hidden matmuls "
          "emulated as the fused kernel computes them")
    print(f"{'nef':9s} {'inputs':7s} {'psnr dB':>8s} {'- fp32 dB':>10s} {'± s.e.':>7s} {'worst NeF':>9s} {'s':>6s}",
          flush=True)
    for nef in args.nefs:
        label, overrides = NEFS[nef]
        base = None
        for precision in ["highest", *args.precisions]:
            t = time.perf_counter()
            psnr = fit_psnrs(overrides, precision, args.n, args.steps, args.lr)
            took = time.perf_counter() - t
            if base is None:
                base = psnr
                print(f"{label:9s} {NAMES[precision]:7s} {psnr.mean():8.3f} {'':>10s} {'':>7s} {'':>9s} {took:6.0f}",
                      flush=True)
                continue
            d = psnr - base
            print(f"{label:9s} {NAMES[precision]:7s} {psnr.mean():8.3f} {d.mean():+10.4f} "
                  f"{d.std(ddof=1) / np.sqrt(len(d)):7.4f} {d.min():+9.3f} {took:6.0f}", flush=True)


if __name__ == "__main__":
    main()
