"""The fused step of FourierNet and GaborNet (nefs/fused/mfn_kernel.py) behind the engine's grad-fn
signature, f(params, coords, targets) -> (grads, loss (N,)), like nefs/fused/step.py's FusedGrad (which
hands an MFNSpec to MFNFusedGrad)."""
import math
import os

import torch

from .spec import MFNSpec
from .step import LOSSES, PRECISIONS, FusedGrad

# (points per tile, warps) by padded width, from sm_90 compiles (ptxas, no GPU) at the default sizes:
# FourierNet-8 (8 filters) at 32 points, 4 warps: 168 registers, no spills (64 points spill); GaborNet-15
# (10 filters) at 16 points, 8 warps: 255 registers, 416 bytes of spill stores, the fewest measured, not none
# (docs/performance.md). The kernel keeps F - 1 tiles
# of BLOCK_P x width, so more filters than the defaults may spill more. Widths 32 and 64 are not tuned.
# Speed is not measured. FITNEF_FUSED_TILE=points,warps overrides the table, as for the other NeFs.
MFN_TILES = {8: (32, 4), 16: (16, 8), 32: (16, 8), 64: (16, 8)}
MFN_WIDEST_TILE = (16, 8)


def mfn_tile_for(padded_width: int) -> tuple:
    override = os.environ.get("FITNEF_FUSED_TILE")
    if override:
        block, warps = (int(v) for v in override.split(","))
        return block, warps
    return MFN_TILES.get(padded_width, MFN_WIDEST_TILE)


def load_mfn_kernel():
    from .mfn_kernel import mfn_step_kernel

    return mfn_step_kernel


def mfn_launch_config(spec: MFNSpec, loss: str, precision: str = "ieee", tile=None):
    """(constexpr arguments, num_warps) of the MFN kernel for this NeF, loss and matmul precision; ``tile``
    (points, warps) in place of the table's."""
    hp = max(spec.padded_width, 16 if precision == "bf16" else 8)   # bf16 dots need an inner size of 16
    block, warps = tuple(tile)[:2] if tile else mfn_tile_for(hp)
    pow2 = lambda v: 1 << max(v - 1, 0).bit_length()  # noqa: E731
    return dict(D=spec.in_features, H=spec.width, HP=hp, C=spec.out_features, F=spec.filters,
                FP=pow2(spec.filters), CP=pow2(spec.out_features),
                GABOR=int(spec.gabor), LOSS=LOSSES[loss], BLOCK_P=block, PREC=precision), warps


def mfn_compile_for(spec: MFNSpec, loss: str, precision: str = "ieee", arch: int = 90):
    """The MFN kernel compiled for compute capability ``arch`` without a GPU (as step.compile_for)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = load_mfn_kernel()
    const, warps = mfn_launch_config(spec, loss, precision)
    sig = {a: "constexpr" if a in const else "i32" if a in ("stride_xn", "N", "P") else "*fp32"
           for a in kernel.arg_names}
    return triton.compile(ASTSource(kernel, sig, constexprs=const), target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": warps})


def mfn_param_names(spec: MFNSpec):
    """(per-filter names, per-linear (weight, bias) names) of the NeF's parameters, in kernel order."""
    f = spec.filters
    if spec.gabor:
        filters = [(f"filters.{i}.linear.weight", f"filters.{i}.linear.bias", f"filters.{i}.mu",
                    f"filters.{i}.gamma") for i in range(f)]
    else:
        filters = [(f"filters.{i}.weight", f"filters.{i}.bias") for i in range(f)]
    return filters, [(f"linears.{j}.weight", f"linears.{j}.bias") for j in range(f - 1)]


class MFNFusedGrad(FusedGrad):
    def __init__(self, spec: MFNSpec, loss: str, precision: str = "ieee", tile=None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        self.spec = spec
        self.const, self.num_warps = mfn_launch_config(spec, loss, precision, tile)
        self.kernel = load_mfn_kernel()

    def __call__(self, params, coords, targets):
        s = self.spec
        filters, linears = mfn_param_names(s)
        first = params[filters[0][0]]
        n, dev = first.shape[0], first.device
        f32 = dict(dtype=torch.float32, device=dev)
        c = lambda t: t.detach().to(torch.float32).contiguous()  # noqa: E731
        stack = lambda names: torch.stack([c(params[k]) for k in names])  # noqa: E731
        batched = coords.dim() == 3
        x = c(coords)
        p = x.shape[-2]
        f, h, d, co = s.filters, s.width, s.in_features, s.out_features
        t = c(targets).reshape(n, p, co)
        fw, fb = stack([k[0] for k in filters]), stack([k[1] for k in filters])
        dummy = torch.zeros(1, **f32)
        mu, gamma = (stack([k[2] for k in filters]), stack([k[3] for k in filters])) if s.gabor else (dummy, dummy)
        lw, lb = (stack([k[0] for k in linears]), stack([k[1] for k in linears])) if linears else (dummy, dummy)
        wo, bo = c(params["output.weight"]), c(params["output.bias"])
        # every gradient is a view of one buffer (the kernel writes each entry it owns once)
        shapes = [(f, n, h, d), (f, n, h), (f, n, d, h) if s.gabor else (0,), (f, n, h) if s.gabor else (0,),
                  (f - 1, n, h, h), (f - 1, n, h), tuple(wo.shape), tuple(bo.shape)]
        flat = torch.empty(sum(math.prod(sh) for sh in shapes), **f32)
        views, at = [], 0
        for sh in shapes:
            views.append(flat[at: at + math.prod(sh)].view(sh))
            at += math.prod(sh)
        gfw, gfb, gmu, ggm, glw, glb, gwo, gbo = views
        loss = torch.empty(n, **f32)
        self.kernel[(n,)](
            x, p * d if batched else 0, t, fw, fb, mu, gamma, lw, lb, wo, bo,
            gfw, gfb, gmu if s.gabor else dummy, ggm if s.gabor else dummy,
            glw if linears else dummy, glb if linears else dummy, gwo, gbo, loss,
            n, p, **self.const, num_warps=self.num_warps)
        grads = {"output.weight": gwo, "output.bias": gbo}
        for i, names in enumerate(filters):
            grads[names[0]], grads[names[1]] = gfw[i], gfb[i]
            if s.gabor:
                grads[names[2]], grads[names[3]] = gmu[i], ggm[i]
        for j, (wn, bn) in enumerate(linears):
            grads[wn], grads[bn] = glw[j], glb[j]
        return {name: grads[name].to(params[name].dtype) for name in params}, loss
