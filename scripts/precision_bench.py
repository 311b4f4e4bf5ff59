"""The PSNR cost of TF32 / bf16 matmul inputs (``task.train.matmul_precision``), measured without a GPU.

    python -m scripts.precision_bench                       # 256 digits, SIREN-8, SIREN-32, MLP-15, 500 steps
    python -m scripts.precision_bench --nefs siren --n 64 --steps 100          # quicker

The fused step (nefs/fused/kernel.py) rounds the inputs of its hidden x hidden matmuls, and of those only:
forward z = h W^T, backward dW = dz^T h and dh = dz W, to tf32 (10 explicit mantissa bits) or bf16 (7),
and accumulates their products in fp32; the first layer, the output layer, the loss, the bias gradients and
the activations stay fp32. This script fits the bundled digits with the torch step on the CPU (through
``tasks.fitting.fit``: the project's defaults, same NeFs, same store layout) once per precision, with those
same matmuls computed as the kernel computes them: inputs rounded to nearest even, exact products (11 x 11 or
8 x 8 significant bits fit fp32's 24) summed in fp32 (``RoundedMatmul``). PSNRs are measured in fp32, as the
fit measures them with either step. tests/interp_fused.py checks this emulation against the kernel itself
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

ROOT = Path(__file__).resolve().parents[1]
# torch's matmul precision vocabulary -> (mantissa bits the kernel keeps, rounding): fp32 keeps all 23. "high-rz":
# tf32 by dropping the low 13 bits (round toward zero), which is what tensor cores do with fp32 operands fed to a
# tf32 mma unrounded (Triton's tf32 tl.dot, triton-lang/triton#4574; cuBLAS rounds first), so likely the kernel's
# arithmetic on the GPU; bf16 casts round to nearest even on the GPU (cvt.rn.bf16.f32).
# "high-all": tf32 (rounded) in every layer's matmuls, first and output layers too: the torch step on CUDA at
# high or medium (cuBLAS TF32), not the fused kernel.
BITS = {"highest": (23, "rne"), "high": (10, "rne"), "high-rz": (10, "rz"), "medium": (7, "rne"),
        "high-all": (10, "rne")}
NAMES = {"highest": "fp32", "high": "tf32", "high-rz": "tf32rz", "medium": "bf16", "high-all": "tf32all"}
# name -> (label, overrides); the default set: the fused step's test NeFs (docs/performance.md)
NEFS = {"siren": ("SIREN-8", ["nef=siren"]), "siren32": ("SIREN-32", ["nef=siren", "nef.hidden_dim=32"]),
        "mlp": ("MLP-15", ["nef=mlp"]), "siren_scaled": ("SIREN-32s", ["nef=siren_scaled"])}
DEFAULT_NEFS = ("siren", "siren32", "mlp")


def round_mantissa(x: torch.Tensor, bits: int, mode: str = "rne") -> torch.Tensor:
    """float32 ``x`` rounded to ``bits`` explicit mantissa bits: "rne" to nearest, ties to even (what cvt.rn
    does; bf16: the same as ``x.to(torch.bfloat16)``), "rz" toward zero (the low bits dropped). Finite values
    only (a NeF's activations and weights)."""
    if bits >= 23:
        return x
    drop = 23 - bits
    i = x.contiguous().view(torch.int32)
    if mode == "rne":
        i = i + ((1 << (drop - 1)) - 1) + ((i >> drop) & 1)      # carries into the exponent where it must
    return (i & ~((1 << drop) - 1)).view(torch.float32)


class RoundedMatmul(torch.autograd.Function):
    """w @ h with both inputs rounded to ``bits`` mantissa bits (``mode``), products summed in fp32; its backward
    rounds the inputs of its two matmuls the same way (dw = round(g) @ round(h)^T, dh = round(w)^T @ round(g)).
    Feature-major, as the NeFs compute (nefs/base.py fm_linear): w (out, in), h (in, P) -> (out, P)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(w, h, bits, mode):
        return round_mantissa(w, bits, mode) @ round_mantissa(h, bits, mode)

    @staticmethod
    def setup_context(ctx, inputs, output):
        w, h, bits, mode = inputs
        ctx.save_for_backward(round_mantissa(w, bits, mode), round_mantissa(h, bits, mode))
        ctx.bits, ctx.mode = bits, mode

    @staticmethod
    def backward(ctx, g):
        w, h = ctx.saved_tensors
        g = round_mantissa(g, ctx.bits, ctx.mode)
        return g @ h.transpose(-1, -2), w.transpose(-1, -2) @ g, None, None


def _rounded_fm_linear(layer, h):
    rounding = getattr(layer, "_rounding", None)
    if rounding is None or not _ACTIVE[0]:
        return torch.addmm(layer.bias[:, None], layer.weight, h)
    return RoundedMatmul.apply(layer.weight, h, *rounding) + layer.bias[:, None]


_ACTIVE = [False]


@contextlib.contextmanager
def hidden_matmuls_rounded(template, precision: str):
    """While inside, ``template``'s hidden x hidden layers (exactly those the fused kernel rounds: nefs.fused.spec
    ``describe(template).hidden``) compute with rounded inputs, in the forward and the backward pass. The
    library is unchanged outside: this swaps the ``fm_linear`` the NeF modules call for the time being."""
    import nefs.mlp
    import nefs.rffnet
    import nefs.siren
    from nefs.fused.spec import describe

    spec, reason = describe(template)
    if spec is None:
        raise ValueError(reason)
    layers = [template.get_submodule(name.rsplit(".", 1)[0]) for name in spec.hidden]
    if precision == "high-all":   # every linear layer (RFFNet's projection stays fp32)
        layers = [m for m in template.modules() if isinstance(m, torch.nn.Linear)]
    modules = (nefs.siren, nefs.mlp, nefs.rffnet)
    saved = [m.fm_linear for m in modules]
    for layer in layers:
        layer._rounding = BITS[precision]
    for m in modules:
        m.fm_linear = _rounded_fm_linear
    _ACTIVE[0] = True
    try:
        yield
    finally:
        _ACTIVE[0] = False
        for m, f in zip(modules, saved):
            m.fm_linear = f
        for layer in layers:
            del layer._rounding


@contextlib.contextmanager
def train_step_rounded(precision: str):
    """Every ChunkFitter's torch train step (the gradient, not the metric's forward pass) with its hidden
    matmuls rounded as the fused kernel rounds them at ``precision``."""
    from nefs import step_choice

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
    from hydra import compose, initialize_config_dir

    from nefs import open_store
    from tasks.fitting import fit

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

    from tasks.resolvers import register

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
