"""The fused step behind the engine's grad-fn signature: f(params, coords, targets) -> (grads, loss (N,)).

Same contract as ``vmap(grad_and_value(loss))`` of the torch path (nefs/engine.py): params are the stacked
tensors (N, ...), coords (P, D) shared or (N, P, D) per NeF, targets (N, P, C); grads a dict with one
stacked tensor per parameter, loss each NeF's own mean loss. FusedGrad and compile_for take a FusedSpec
(SIREN, MLP, RFFNet: nefs/fused/kernel.py) or an MFNSpec (FourierNet, GaborNet: nefs/fused/mfn_step.py).
"""
import math
import os

import torch

from .spec import FusedSpec, MFNSpec

LOSSES = {"mse": 0, "bce_logits": 1}       # a Problem's ``fused_loss`` -> the kernel's LOSS
PRECISIONS = ("ieee", "tf32", "bf16")      # matmul inputs; accumulation is fp32 in all three


# (points per tile, warps, pipeline stages) by padded width, from compiling for sm_90 without a GPU (ptxas;
# `python -m scripts.fused_resources` prints registers, spills and shared memory): up to 64 tiles whose
# registers do not spill at fit-a-nef's default sizes (16 bytes at most elsewhere up to 64); at 128 and 256 the tiles that spill least (no tile is spill-free there: an fp32
# dot keeps a whole operand row per thread), unpipelined, as the pipeliner would multi-buffer the width x
# width weights in shared memory. Which tile is fastest is not measured: FITNEF_FUSED_TILE=64,4[,3] (points,warps[,stages])
# overrides the table, for scripts/step_bench.py --tile.
TILES = {8: (64, 4, 3), 16: (32, 4, 3), 32: (32, 8, 3), 64: (16, 8, 3), 128: (16, 16, 1), 256: (16, 16, 1)}
# from this padded width on, the hidden weights' gradient sums live in memory (L2), not registers; from twice it,
# every width x width matmul runs as four blocks of half the width (kernel.py _mm_w, _add_outer)
WIDE = 128


def kernel_width(spec, precision: str = "ieee") -> int:
    """The kernel's padded width: the spec's, at least 16 for bf16 dots (their smallest inner size)."""
    return max(spec.padded_width, 16 if precision == "bf16" else 8)


def default_tile(spec, precision: str = "ieee") -> tuple:
    """The tile table's choice for ``spec``: (points, warps, stages), or (points, warps) for an MFNSpec."""
    if isinstance(spec, MFNSpec):
        from .mfn_step import mfn_tile_for

        return mfn_tile_for(kernel_width(spec, precision))
    return tile_for(kernel_width(spec, precision))


def tile_options(spec, precision: str = "ieee") -> list:
    """The table's tile for ``spec`` first, then its neighbours (half and twice the points per tile, at least 16
    for tl.dot): the candidates ``task.train.kernel=auto`` measures (nefs/step_choice.py)."""
    base = default_tile(spec, precision)
    out = [base]
    for points in (base[0] // 2, base[0] * 2):
        if 16 <= points <= 128:
            out.append((points,) + tuple(base[1:]))
    return out


def tile_for(padded_width: int) -> tuple:
    override = os.environ.get("FITNEF_FUSED_TILE")
    if override:
        values = [int(v) for v in override.split(",")]
        return tuple(values + [TILES[padded_width][2]] * (3 - len(values)))
    return TILES[padded_width]


def load_kernel():
    from .kernel import fused_step_kernel

    return fused_step_kernel


def launch_config(spec: FusedSpec, loss: str, precision: str = "ieee", tile=None):
    """(constexpr arguments, launch options) of the kernel for this NeF, loss and matmul precision; ``tile``
    (points, warps[, stages]) in place of the table's."""
    hp = kernel_width(spec, precision)
    table = tile_for(hp)
    block, warps, stages = tuple(tile) + table[len(tile):] if tile else table
    pow2 = lambda v: 1 << max(v - 1, 0).bit_length()  # noqa: E731
    d, c, k = spec.in_features, spec.out_features, len(spec.hidden)
    return dict(D=d, H=spec.width, HP=hp, C=c, K=k, DP=pow2(d), CP=pow2(c), KP=pow2(max(k, 1)), ACT=spec.act,
                ENC=int(len(spec.first) == 1), LOSS=LOSSES[loss], BLOCK_P=block, PREC=precision,
                GACC=int(hp >= WIDE), SPLIT=2 if hp >= 2 * WIDE else 1), dict(num_warps=warps, num_stages=stages)


def compile_for(spec: FusedSpec, loss: str, precision: str = "ieee", arch: int = 90):
    """The kernel compiled for CUDA compute capability ``arch`` without a GPU (Triton's ahead-of-time path,
    ptxas included): fails where the GPU compile would; ``.metadata.shared`` is its shared memory."""
    if isinstance(spec, MFNSpec):
        from .mfn_step import mfn_compile_for

        return mfn_compile_for(spec, loss, precision, arch)
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = load_kernel()
    const, options = launch_config(spec, loss, precision)
    floats = {"omega", "enc_scale"}
    ints = {"stride_xn", "N", "P"}
    sig = {a: "constexpr" if a in const else "fp32" if a in floats else "i32" if a in ints else "*fp32"
           for a in kernel.arg_names}
    return triton.compile(ASTSource(kernel, sig, constexprs=const), target=GPUTarget("cuda", arch, 32),
                          options=options)


class FusedGrad:
    def __new__(cls, spec, *args, **kwargs):
        """FusedGrad(MFNSpec, ...) is an MFNFusedGrad (nefs/fused/mfn_step.py), its own kernel."""
        if cls is FusedGrad and isinstance(spec, MFNSpec):
            from .mfn_step import MFNFusedGrad

            cls = MFNFusedGrad
        return super().__new__(cls)

    def __init__(self, spec: FusedSpec, loss: str, precision: str = "ieee", tile=None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        self.spec = spec
        self.const, self.options = launch_config(spec, loss, precision, tile)
        self.kernel = load_kernel()

    def __call__(self, params, coords, targets):
        s = self.spec
        first = params[s.first[0]]
        n, dev = first.shape[0], first.device
        f32 = dict(dtype=torch.float32, device=dev)
        c = lambda t: t.detach().to(torch.float32).contiguous()  # noqa: E731
        batched = coords.dim() == 3
        x = c(coords)
        p = x.shape[-2]
        t = c(targets).reshape(n, p, s.out_features)
        k = len(s.hidden)
        hidden_b = [h[: -len("weight")] + "bias" for h in s.hidden]
        if k:
            wh = torch.stack([c(params[h]) for h in s.hidden])
            bh = torch.stack([c(params[b]) for b in hidden_b])
        else:
            wh = bh = torch.zeros(1, **f32)
        w1 = c(first)
        b1 = c(params[s.first[1]]) if len(s.first) > 1 else torch.zeros(1, **f32)
        wo, bo = c(params["output.weight"]), c(params["output.bias"])
        h, d, kk = s.width, s.in_features, max(k, 1)
        # every gradient is a view of one buffer (the kernel writes each entry once)
        shapes = [(n, h, d), (n, h), (kk, n, h, h), (kk, n, h), tuple(wo.shape), tuple(bo.shape)]
        alloc = torch.zeros if self.const["GACC"] else torch.empty   # wide: the kernel adds to the hidden grads
        flat = alloc(sum(math.prod(sh) for sh in shapes), **f32)
        views, at = [], 0
        for sh in shapes:
            views.append(flat[at: at + math.prod(sh)].view(sh))
            at += math.prod(sh)
        gw1, gb1, gwh, gbh, gwo, gbo = views   # gw1 for RFFNet: the sin and cos halves apart, added below
        loss = torch.empty(n, **f32)
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
