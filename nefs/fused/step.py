"""The fused step behind the engine's grad-fn signature: f(params, coords, targets) -> (grads, loss (N,)).

Same contract as ``vmap(grad_and_value(loss))`` of the torch path (nefs/engine.py): params are the stacked
tensors (N, ...), coords (P, D) shared or (N, P, D) per NeF, targets (N, P, C); grads a dict with one
stacked tensor per parameter, loss each NeF's own mean loss. ``FusedGrad`` builds it for a FusedSpec (SIREN,
MLP, RFFNet: nefs/fused/kernel.py, launched here) or an MFNSpec (FourierNet, GaborNet: nefs/fused/mfn_step.py);
``default_tile`` and ``neighbour_tiles`` say which tiles it takes, ``compile_for`` compiles it without a GPU.
"""
from typing import Optional

import torch

from .launch import LOSSES, PRECISIONS, KernelGrad, as_f32, grad_buffers, kernel_width, neighbours, pow2
from .mfn_step import MFNFusedGrad
from .spec import FusedSpec, MFNSpec

__all__ = ["FusedGrad", "LOSSES", "PRECISIONS", "compile_for", "default_tile", "neighbour_tiles"]

# from this padded width on, the hidden weights' gradient sums live in memory (L2), not registers; from twice it,
# every width x width matmul runs as four blocks of half the width (kernel.py _mm_w, _add_outer)
WIDE = 128


class LayerFusedGrad(KernelGrad):
    """SIREN, MLP and RFFNet (nefs/fused/kernel.py)."""

    # (points per tile, warps, pipeline stages) by padded width, from compiling for sm_90 without a GPU (ptxas;
    # `python -m scripts.fused_resources` prints registers, spills and shared memory): up to 64 tiles whose
    # registers do not spill at fit-a-nef's default sizes (16 bytes at most elsewhere up to 64); at 128 and 256
    # the tiles that spill least (no tile is spill-free there: an fp32 dot keeps a whole operand row per
    # thread), unpipelined, as the pipeliner would multi-buffer the width x width weights in shared memory.
    # Which tile is fastest is not measured: ``tile=`` overrides the table (scripts/step_bench.py --tile).
    TILES = {8: (64, 4, 3), 16: (32, 4, 3), 32: (32, 8, 3), 64: (16, 8, 3), 128: (16, 16, 1), 256: (16, 16, 1)}
    FLOAT_ARGS = ("omega", "enc_scale")

    @staticmethod
    def load_kernel():
        from .kernel import fused_step_kernel   # imports triton: on first use, not with nefs.fused

        return fused_step_kernel

    def constants(self, spec: FusedSpec, loss: int, precision: str, points: int) -> dict:
        hp = kernel_width(spec, precision)
        d, c, k = spec.in_features, spec.out_features, len(spec.hidden)
        return dict(D=d, H=spec.width, HP=hp, C=c, K=k, DP=pow2(d), CP=pow2(c), KP=pow2(max(k, 1)), ACT=spec.act,
                    ENC=int(len(spec.first) == 1), LOSS=loss, BLOCK_P=points, PREC=precision,
                    GACC=int(hp >= WIDE), SPLIT=2 if hp >= 2 * WIDE else 1)

    def __call__(self, params, coords, targets):
        s = self.spec
        first = params[s.first[0]]
        n, dev = first.shape[0], first.device
        batched = coords.dim() == 3
        x = as_f32(coords)
        p = x.shape[-2]
        t = as_f32(targets).reshape(n, p, s.out_features)
        k = len(s.hidden)
        hidden_b = [h[: -len("weight")] + "bias" for h in s.hidden]
        dummy = torch.zeros(1, dtype=torch.float32, device=dev)
        if k:
            wh = torch.stack([as_f32(params[h]) for h in s.hidden])
            bh = torch.stack([as_f32(params[b]) for b in hidden_b])
        else:
            wh = bh = dummy
        w1 = as_f32(first)
        b1 = as_f32(params[s.first[1]]) if len(s.first) > 1 else dummy
        wo, bo = as_f32(params["output.weight"]), as_f32(params["output.bias"])
        h, d, kk = s.width, s.in_features, max(k, 1)
        # gw1 for RFFNet: the sin and cos halves apart, added below; wide: the kernel adds to the hidden grads
        gw1, gb1, gwh, gbh, gwo, gbo = grad_buffers(
            [(n, h, d), (n, h), (kk, n, h, h), (kk, n, h), tuple(wo.shape), tuple(bo.shape)], dev,
            zeroed=bool(self.const["GACC"]))
        loss = torch.empty(n, dtype=torch.float32, device=dev)
        self.kernel[(n,)](
            x, p * d if batched else 0, t, w1, b1, wh, bh, wo, bo, gw1, gb1, gwh, gbh, gwo, gbo, loss,
            n, p, float(s.omega), float(s.enc_scale),
            **self.const, **self.options)
        grads = {"output.weight": gwo, "output.bias": gbo}
        for i, (wn, bn) in enumerate(zip(s.hidden, hidden_b)):
            grads[wn], grads[bn] = gwh[i], gbh[i]
        if len(s.first) == 1:  # RFFNet coefficients: row j of the encoding is sin (j < H/2) or cos of row j % (H/2)
            g = gw1[:, : h // 2] + gw1[:, h // 2:]
            grads[s.first[0]] = g if s.learnable_first else torch.zeros_like(g)
        else:
            grads[s.first[0]], grads[s.first[1]] = gw1, gb1
        return {name: grads[name].to(params[name].dtype) for name in params}, loss


def _launcher(spec) -> type:
    return MFNFusedGrad if isinstance(spec, MFNSpec) else LayerFusedGrad


def FusedGrad(spec, loss: str, precision: str = "ieee", tile: Optional[tuple] = None) -> KernelGrad:  # noqa: N802
    """The fused step of this NeF: ``spec`` (nefs.fused.spec.describe), ``loss`` (a Problem's ``fused_loss``),
    ``precision`` of the matmul inputs (ieee, tf32, bf16) and ``tile`` (points, warps[, stages]; default: the
    kernel's table, ``default_tile``). Called like a class: it builds the launcher of the spec's kernel."""
    return _launcher(spec)(spec, loss, precision, tile)


def default_tile(spec, precision: str = "ieee") -> tuple:
    """(points, warps, stages) the spec's kernel runs at unless told otherwise."""
    return _launcher(spec).default_tile(spec, precision)


def neighbour_tiles(spec, precision: str = "ieee") -> list:
    """The tiles one step from the default (half or twice the points or the warps): what to time against it."""
    return neighbours(default_tile(spec, precision))


def compile_for(spec, loss: str, precision: str = "ieee", arch: int = 90, tile: Optional[tuple] = None):
    """The spec's kernel compiled for CUDA compute capability ``arch`` without a GPU (``KernelGrad.compile``)."""
    return FusedGrad(spec, loss, precision, tile).compile(arch)
