"""The ``@triton.jit`` pieces both fused kernels use (nefs/fused/kernel.py, nefs/fused/mfn_kernel.py): the
matmul at a chosen input precision, and the output layer with the loss and its backward pass. Triton inlines
them into each kernel, so sharing them costs no call and leaves the compiled kernels as they were."""
import triton
import triton.language as tl


@triton.jit
def mm(a, b, PREC: tl.constexpr):
    """a @ b accumulated in fp32; PREC says what the inputs are rounded to: "ieee" (fp32, the default),
    "tf32" (tensor cores), "bf16"."""
    if PREC == "bf16":
        return tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), out_dtype=tl.float32)
    else:
        return tl.dot(a, b, input_precision=PREC, out_dtype=tl.float32)


@triton.jit
def output_loss(h, wo_ptr, bo_ptr, t_ptr, n, P, offs_p, pmask, offs_h, hmask, offs_c, inv_count,
                loss_acc, gwo, gbo, H: tl.constexpr, HP: tl.constexpr, C: tl.constexpr, LOSS: tl.constexpr,
                BLOCK_P: tl.constexpr):
    """The output layer y = Wo h + bo on a tile h (BLOCK_P, HP), the loss against the targets and its backward
    pass, one channel at a time: returns dL/dh and the running sums (loss per point, Wo's and bo's gradients,
    a channel's row picked by a one-hot mask over offs_c) with the tile's share added. Points outside P
    (pmask) add nothing. LOSS: 0 mean squared error, 1 BCE with logits; inv_count = 1 / (P * C)."""
    dh = tl.zeros((BLOCK_P, HP), dtype=tl.float32)
    for c in tl.static_range(C):
        woc = tl.load(wo_ptr + (n * C + c) * H + offs_h, mask=hmask, other=0.0)
        y = tl.sum(h * woc[None, :], axis=1) + tl.load(bo_ptr + n * C + c)
        t = tl.load(t_ptr + (n * P + offs_p) * C + c, mask=pmask, other=0.0)
        if LOSS == 0:
            diff = tl.where(pmask, y - t, 0.0)
            loss_acc += diff * diff * inv_count
            dy = 2.0 * diff * inv_count
        else:
            e = tl.exp(-tl.abs(y))
            loss_acc += tl.where(pmask, (tl.maximum(y, 0.0) - y * t + tl.log(1.0 + e)) * inv_count, 0.0)
            sig = tl.where(y >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            dy = tl.where(pmask, (sig - t) * inv_count, 0.0)
        dh += dy[:, None] * woc[None, :]
        gwo += tl.where((offs_c == c)[:, None], tl.sum(dy[:, None] * h, axis=0)[None, :], 0.0)
        gbo += tl.where(offs_c == c, tl.sum(dy, axis=0), 0.0)
    return dh, loss_acc, gwo, gbo
