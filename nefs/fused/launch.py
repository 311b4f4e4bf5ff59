"""Host side shared by the fused steps (nefs/fused/step.py for SIREN, MLP and RFFNet; nefs/fused/mfn_step.py
for FourierNet and GaborNet): checked settings, the tile, the kernel's compile without a GPU, and the
gradient buffer. A kernel's own launcher (a ``KernelGrad``) only says which kernel, its tile table, its
constexpr arguments and how parameters map to its pointers."""
import math
from typing import Optional

import torch

LOSSES = {"mse": 0, "bce_logits": 1}       # a Problem's ``fused_loss`` -> the kernels' LOSS
PRECISIONS = ("ieee", "tf32", "bf16")      # matmul inputs; accumulation is fp32 in all three
DEFAULT_STAGES = 3                         # Triton's own default on CUDA: a tile given as (points, warps) gets it
MIN_POINTS = 16                            # tl.dot needs 16 rows


def pow2(v: int) -> int:
    """The smallest power of two >= v (1 for v <= 1)."""
    return 1 << max(v - 1, 0).bit_length()


def kernel_width(spec, precision: str) -> int:
    """The width the kernel computes at: the spec's padded width, at least 16 for bf16 (its dots' inner size)."""
    return max(spec.padded_width, 16 if precision == "bf16" else 8)


def check_tile(tile, default: tuple) -> tuple:
    """``tile`` as (points per tile, warps, pipeline stages): None is ``default``; a (points, warps) pair takes
    the default's stages. Points and warps are powers of two (points at least 16, warps 1 to 16)."""
    if tile is None:
        return tuple(default)
    values = tuple(tile)
    ok = len(values) in (2, 3) and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    if ok:
        points, warps = values[:2]
        ok = points >= MIN_POINTS and points == pow2(points) and warps <= 16 and warps == pow2(warps)
    if not ok:
        raise ValueError(f"tile={tile!r}: use (points, warps[, stages]), points a power of two >= {MIN_POINTS}, "
                         "warps a power of two up to 16, stages >= 1")
    return values + (default[2],) * (3 - len(values))


def parse_tile(text: str) -> Optional[tuple]:
    """A tile written on a command line, "points,warps[,stages]" ("" is None: the table's)."""
    if not text:
        return None
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"tile {text!r}: write points,warps[,stages], e.g. 64,4 or 32,8,3") from None


def neighbours(tile: tuple) -> list:
    """The tiles one step from ``tile``: half and twice the points, half and twice the warps (same stages)."""
    points, warps, stages = tile
    out = [(p, w, stages) for p, w in ((points // 2, warps), (points * 2, warps), (points, warps // 2),
                                       (points, warps * 2))]
    return [t for t in out if t[0] >= MIN_POINTS and 1 <= t[1] <= 16]


class KernelGrad:
    """f(params, coords, targets) -> (grads, loss (N,)) through one fused kernel, for one NeF spec, loss,
    matmul precision and tile. A subclass names its kernel (``load_kernel``), its tile table (``TILES``,
    padded width -> (points, warps, stages); ``WIDEST`` past it), its constexpr arguments (``constants``)
    and its launch (``__call__``)."""

    TILES: dict = {}
    WIDEST: Optional[tuple] = None
    FLOAT_ARGS: tuple = ()                 # the kernel's fp32 scalar arguments (the others are i32 or pointers)
    INT_ARGS = ("stride_xn", "N", "P")

    def __init__(self, spec, loss: str, precision: str = "ieee", tile=None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        if loss not in LOSSES:
            raise ValueError(f"loss={loss!r}: use one of {', '.join(LOSSES)}")
        self.spec, self.loss, self.precision = spec, loss, precision
        self.tile = check_tile(tile, self.default_tile(spec, precision))
        points, warps, stages = self.tile
        self.const = self.constants(spec, LOSSES[loss], precision, points)
        self.options = dict(num_warps=warps, num_stages=stages)
        self.kernel = self.load_kernel()

    @classmethod
    def default_tile(cls, spec, precision: str = "ieee") -> tuple:
        """The table's tile for this spec at this precision."""
        return cls.TILES.get(kernel_width(spec, precision), cls.WIDEST)

    @staticmethod
    def load_kernel():
        raise NotImplementedError

    def constants(self, spec, loss: int, precision: str, points: int) -> dict:
        raise NotImplementedError

    def compile(self, arch: int = 90):
        """The kernel compiled for CUDA compute capability ``arch`` without a GPU (Triton's ahead-of-time path,
        ptxas included): fails where the GPU compile would; ``.metadata.shared`` is its shared memory."""
        # triton loads here, not at import: importing nefs.fused works without it
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource

        sig = {a: "constexpr" if a in self.const else "fp32" if a in self.FLOAT_ARGS
               else "i32" if a in self.INT_ARGS else "*fp32" for a in self.kernel.arg_names}
        return triton.compile(ASTSource(self.kernel, sig, constexprs=self.const), target=GPUTarget("cuda", arch, 32),
                              options=self.options)


def as_f32(t: torch.Tensor) -> torch.Tensor:
    """A kernel operand: fp32, contiguous, outside autograd."""
    return t.detach().to(torch.float32).contiguous()


def grad_buffers(shapes, device, zeroed: bool = False) -> list:
    """One fp32 buffer cut into views of ``shapes`` (the kernel writes each entry once; ``zeroed`` where it adds)."""
    sizes = [math.prod(s) for s in shapes]
    flat = (torch.zeros if zeroed else torch.empty)(sum(sizes), dtype=torch.float32, device=device)
    views, at = [], 0
    for shape, size in zip(shapes, sizes):
        views.append(flat[at: at + size].view(shape))
        at += size
    return views
