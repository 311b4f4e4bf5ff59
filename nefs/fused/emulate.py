"""The fused kernel's reduced-precision matmuls (tf32, bf16 inputs; fp32 sums) emulated by the torch step,
on any device: what scripts/precision_bench.py measures the PSNR cost of without a GPU, and what
tests/interp_fused.py checks against the kernel itself.

The kernel rounds the inputs of its hidden x hidden matmuls, and of those only: forward z = h W^T, backward
dW = dz^T h and dh = dz W; the first layer, the output layer, the loss, the bias gradients and the
activations stay fp32. Here those same matmuls take inputs rounded to nearest even (or toward zero), exact
products (11 x 11 or 8 x 8 significant bits fit fp32's 24) summed in fp32 (``RoundedMatmul``).
"""
import contextlib

import torch

import nefs.mlp
import nefs.rffnet
import nefs.siren

from .spec import describe

# torch's matmul precision vocabulary -> (mantissa bits the kernel keeps, rounding): fp32 keeps all 23. "high-rz":
# tf32 by dropping the low 13 bits (round toward zero), which is what tensor cores do with fp32 operands fed to a
# tf32 mma unrounded (Triton's tf32 tl.dot, triton-lang/triton#4574; cuBLAS rounds first), so likely the kernel's
# arithmetic on the GPU; bf16 casts round to nearest even on the GPU (cvt.rn.bf16.f32).
# "high-all": tf32 (rounded) in every layer's matmuls, first and output layers too: the torch step on CUDA at
# high or medium (cuBLAS TF32), not the fused kernel.
BITS = {"highest": (23, "rne"), "high": (10, "rne"), "high-rz": (10, "rz"), "medium": (7, "rne"),
        "high-all": (10, "rne")}

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
