"""The fused train step as one Triton kernel: one program per NeF.

A program walks its NeF's points in tiles of BLOCK_P (nefs/fused/step.py TILES). Per tile it runs the
forward pass, the loss and the backward pass with every activation held in registers (a tile is
BLOCK_P x width floats), and adds the tile's parameter gradients to sums that stay in registers too (one
accumulator per kind of weight; the layer, channel or input is picked by a one-hot mask). Nothing per point
is written to memory: HBM sees the coordinates, the targets, the parameters (read) and, once at the end,
the gradients and the loss (written).

Layer structure, the one all supported NeFs share (``nefs.fused.spec``):
  h0 = act(W1 x + b1)                          ENC=0 (SIREN, MLP)
  h0 = [sin(s B x), cos(s B x)]                ENC=1 (RFFNet, s = std * 2 pi)
  h_k = act(W_k h_{k-1} + b_k), k = 1..K       K hidden width x width layers
  y = Wo h_K + bo                              C outputs
act is sin(omega z) (ACT=0) or relu (ACT=1). The backward pass of hidden layer k needs that layer's
input, which is recomputed from h0 (K is 0-4 for the configs in conf/nef/, so the recompute is a few
extra small matmuls and keeps the register footprint to a handful of tiles at any depth).

Wide NeFs (padded width 128 and 256, GACC=1): the hidden weights' gradient sums (K x width^2 floats) would
not fit in registers, so each tile adds its share to the gradient buffer in memory (atomic adds to
addresses only this program writes: no read-back, no barrier; L2 absorbs them), and the hidden layers run
in loops rather than unrolled. At 256 (SPLIT=2) every width x width matmul runs as four blocks of even and
odd rows and columns (``_mm_w``, ``_add_outer``): a whole 256 x 256 operand is 256 KB, more shared memory
than a block has.

With TRITON_INTERPRET=1 set before triton is imported, the same code runs in Triton's interpreter on the
CPU (how tests/interp_fused.py checks it).
"""
import triton
import triton.language as tl

from .blocks import mm, output_loss


@triton.jit
def _act(z, omega, ACT: tl.constexpr):
    if ACT == 0:
        return tl.sin(omega * z)
    else:
        return tl.maximum(z, 0.0)


@triton.jit
def _act_grad(z, omega, ACT: tl.constexpr):
    if ACT == 0:
        return omega * tl.cos(omega * z)
    else:
        return tl.where(z > 0.0, 1.0, 0.0)


@triton.jit
def _mm_w(h, w_ptr, si, sj, offs_h, hmask, H: tl.constexpr, HP: tl.constexpr, SPLIT: tl.constexpr,
          PREC: tl.constexpr):
    """h @ M for a tile h (BLOCK_P, HP) and a width x width matrix M[i, j] at w_ptr + i*si + j*sj (W^T:
    si=1, sj=H; W: si=H, sj=1), padded with zeros. SPLIT=2 (width 256): M as four (HP/2)^2 blocks of even
    and odd rows and columns, h split into its even and odd columns and the result joined back, so no
    operand is larger than a 128 x 128 block (a whole 256 x 256 one is 256 KB, more than a block's shared
    memory)."""
    if SPLIT == 1:
        m = tl.load(w_ptr + offs_h[:, None] * si + offs_h[None, :] * sj,
                    mask=hmask[:, None] & hmask[None, :], other=0.0)
        return mm(h, m, PREC)
    else:
        HB: tl.constexpr = HP // 2
        r = tl.arange(0, HB)
        h_even, h_odd = tl.split(tl.reshape(h, (h.shape[0], HB, 2)))
        m00 = tl.load(w_ptr + (2 * r[:, None]) * si + (2 * r[None, :]) * sj,
                      mask=(2 * r[:, None] < H) & (2 * r[None, :] < H), other=0.0)
        m10 = tl.load(w_ptr + (2 * r[:, None] + 1) * si + (2 * r[None, :]) * sj,
                      mask=(2 * r[:, None] + 1 < H) & (2 * r[None, :] < H), other=0.0)
        z_even = mm(h_even, m00, PREC) + mm(h_odd, m10, PREC)
        m01 = tl.load(w_ptr + (2 * r[:, None]) * si + (2 * r[None, :] + 1) * sj,
                      mask=(2 * r[:, None] < H) & (2 * r[None, :] + 1 < H), other=0.0)
        m11 = tl.load(w_ptr + (2 * r[:, None] + 1) * si + (2 * r[None, :] + 1) * sj,
                      mask=(2 * r[:, None] + 1 < H) & (2 * r[None, :] + 1 < H), other=0.0)
        z_odd = mm(h_even, m01, PREC) + mm(h_odd, m11, PREC)
        return tl.reshape(tl.join(z_even, z_odd), (h.shape[0], HP))


@triton.jit
def _add_outer(g_ptr, dz, hin, H: tl.constexpr, HP: tl.constexpr, SPLIT: tl.constexpr, PREC: tl.constexpr):
    """Adds dz^T @ hin (a weight gradient, [out, in]) to the width x width matrix at g_ptr, in memory: for
    wide NeFs, whose gradient sums would not fit in registers. The program owns its NeF's gradients, so
    the read-add-write needs no atomics (and a barrier per tile, in the caller, for the next tile's reads)."""
    if SPLIT == 1:
        offs = tl.arange(0, HP)
        mask = (offs[:, None] < H) & (offs[None, :] < H)
        ptrs = g_ptr + offs[:, None] * H + offs[None, :]
        tl.atomic_add(ptrs, mm(tl.trans(dz), hin, PREC), mask=mask, sem="relaxed")
    else:
        HB: tl.constexpr = HP // 2
        r = tl.arange(0, HB)
        dz_even, dz_odd = tl.split(tl.reshape(dz, (dz.shape[0], HB, 2)))
        h_even, h_odd = tl.split(tl.reshape(hin, (hin.shape[0], HB, 2)))
        for b in tl.static_range(2):            # output (row) parity
            dzb = dz_even if b == 0 else dz_odd
            for a in tl.static_range(2):        # input (column) parity
                hb = h_even if a == 0 else h_odd
                rows, cols = 2 * r[:, None] + b, 2 * r[None, :] + a
                mask = (rows < H) & (cols < H)
                ptrs = g_ptr + rows * H + cols
                tl.atomic_add(ptrs, mm(tl.trans(dzb), hb, PREC), mask=mask, sem="relaxed")


@triton.jit
def _hidden(h, wh_ptr, bh_ptr, k, n, N, offs_h, hmask, omega,
            H: tl.constexpr, HP: tl.constexpr, ACT: tl.constexpr, SPLIT: tl.constexpr, PREC: tl.constexpr):
    """Hidden layer k on a tile: act(h @ W_k^T + b_k); also returns the pre-activation."""
    base = (k * N + n) * H * H
    b = tl.load(bh_ptr + (k * N + n) * H + offs_h, mask=hmask, other=0.0)
    z = _mm_w(h, wh_ptr + base, 1, H, offs_h, hmask, H, HP, SPLIT, PREC) + b[None, :]
    return _act(z, omega, ACT), z


@triton.jit
def fused_step_kernel(
        x_ptr, stride_xn, t_ptr,
        w1_ptr, b1_ptr, wh_ptr, bh_ptr, wo_ptr, bo_ptr,
        gw1_ptr, gb1_ptr, gwh_ptr, gbh_ptr, gwo_ptr, gbo_ptr, loss_ptr,
        N, P, omega, enc_scale,
        D: tl.constexpr, H: tl.constexpr, HP: tl.constexpr, C: tl.constexpr, K: tl.constexpr,
        DP: tl.constexpr, CP: tl.constexpr, KP: tl.constexpr,
        ACT: tl.constexpr, ENC: tl.constexpr, LOSS: tl.constexpr, BLOCK_P: tl.constexpr,
        PREC: tl.constexpr, GACC: tl.constexpr, SPLIT: tl.constexpr):
    """One NeF's gradient and loss. Shapes (row-major, contiguous):
    x (N or 1, P, D) with stride_xn = P*D or 0 (shared coordinates); t (N, P, C);
    w1 (N, H, D) [ENC=0] or coefficients (N, H/2, D) [ENC=1], b1 (N, H); wh (K, N, H, H), bh (K, N, H);
    wo (N, C, H), bo (N, C). Gradients have the same shapes, except gw1 (N, H, D) for ENC=1 (the sin and
    cos halves apart; the caller adds them). loss (N,). LOSS: 0 mean squared error, 1 BCE with logits.
    DP, CP, KP: D, C and K (at least 1) padded to powers of two, the shapes of the gradient accumulators."""
    n = tl.program_id(0).to(tl.int64)   # offsets of wide, stacked weights pass 2**31
    offs_h = tl.arange(0, HP)
    hmask = offs_h < H
    H2: tl.constexpr = H // 2
    inv_count = 1.0 / (P * C)
    loss_acc = tl.zeros((BLOCK_P,), dtype=tl.float32)
    # gradient sums over the tiles, in registers; a layer, channel or input adds its slice through a one-hot
    # mask (a few adds of a weight's size per tile, against a matmul of BLOCK_P times that)
    offs_k, offs_c, offs_d = tl.arange(0, KP), tl.arange(0, CP), tl.arange(0, DP)
    GW: tl.constexpr = 1 if GACC == 1 else HP     # GACC: the hidden weight gradients are summed in memory
    gwh = tl.zeros((KP, GW, GW), dtype=tl.float32)
    gbh = tl.zeros((KP, GW), dtype=tl.float32)
    gwo = tl.zeros((CP, HP), dtype=tl.float32)
    gbo = tl.zeros((CP,), dtype=tl.float32)
    gw1 = tl.zeros((HP, DP), dtype=tl.float32)
    gb1 = tl.zeros((HP,), dtype=tl.float32)
    if ENC == 0:
        b1 = tl.load(b1_ptr + n * H + offs_h, mask=hmask, other=0.0)
    for p0 in range(0, P, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        pmask = offs_p < P
        xrow = x_ptr + n * stride_xn + offs_p * D
        # ---- first layer / encoding
        z0 = tl.zeros((BLOCK_P, HP), dtype=tl.float32)
        for d in tl.static_range(D):
            xd = tl.load(xrow + d, mask=pmask, other=0.0)
            if ENC == 0:
                wd = tl.load(w1_ptr + (n * H + offs_h) * D + d, mask=hmask, other=0.0)
            else:
                wd = tl.load(w1_ptr + (n * H2 + offs_h % H2) * D + d, mask=hmask, other=0.0)
            z0 += xd[:, None] * wd[None, :]
        if ENC == 0:
            z0 += b1[None, :]
            h0 = _act(z0, omega, ACT)
        else:
            z0 = z0 * enc_scale
            h0 = tl.where((offs_h < H2)[None, :], tl.sin(z0), tl.where(hmask[None, :], tl.cos(z0), 0.0))
        # ---- hidden layers
        h = h0
        if GACC == 0:
            for k in tl.static_range(K):
                h, _z = _hidden(h, wh_ptr, bh_ptr, k, n, N, offs_h, hmask, omega, H, HP, ACT, SPLIT, PREC)
        else:   # wide: loops, not unrolled (an unrolled recompute chain of wide layers is more than ptxas allocates well)
            for k in range(K):
                h, _z = _hidden(h, wh_ptr, bh_ptr, k, n, N, offs_h, hmask, omega, H, HP, ACT, SPLIT, PREC)
        # ---- output layer, loss, and its backward pass (blocks.py)
        dh, loss_acc, gwo, gbo = output_loss(h, wo_ptr, bo_ptr, t_ptr, n, P, offs_p, pmask, offs_h, hmask, offs_c,
                                             inv_count, loss_acc, gwo, gbo, H, HP, C, LOSS, BLOCK_P)
        # ---- hidden layers backward, top down; each layer's input recomputed from h0
        if GACC == 0:
            for k in tl.static_range(K - 1, -1, -1):
                hin = h0
                for j in tl.static_range(k):
                    hin, _z = _hidden(hin, wh_ptr, bh_ptr, j, n, N, offs_h, hmask, omega, H, HP, ACT, SPLIT, PREC)
                _h, z = _hidden(hin, wh_ptr, bh_ptr, k, n, N, offs_h, hmask, omega, H, HP, ACT, SPLIT, PREC)
                dz = tl.where(pmask[:, None], dh * _act_grad(z, omega, ACT), 0.0)
                gwh += tl.where((offs_k == k)[:, None, None], mm(tl.trans(dz), hin, PREC)[None, :, :], 0.0)
                gbh += tl.where((offs_k == k)[:, None], tl.sum(dz, axis=0)[None, :], 0.0)
                dh = _mm_w(dz, wh_ptr + (k * N + n) * H * H, H, 1, offs_h, hmask, H, HP, SPLIT, PREC)  # dz @ W
        else:   # wide: the same in loops, the gradient sums added in memory
            for kk in range(K):
                k = K - 1 - kk
                hin = h0
                for j in range(k):
                    hin, _z = _hidden(hin, wh_ptr, bh_ptr, j, n, N, offs_h, hmask, omega, H, HP, ACT, SPLIT, PREC)
                _h, z = _hidden(hin, wh_ptr, bh_ptr, k, n, N, offs_h, hmask, omega, H, HP, ACT, SPLIT, PREC)
                dz = tl.where(pmask[:, None], dh * _act_grad(z, omega, ACT), 0.0)
                base = (k * N + n) * H * H
                _add_outer(gwh_ptr + base, dz, hin, H, HP, SPLIT, PREC)
                tl.atomic_add(gbh_ptr + (k * N + n) * H + offs_h, tl.sum(dz, axis=0), mask=hmask, sem="relaxed")
                dh = _mm_w(dz, wh_ptr + base, H, 1, offs_h, hmask, H, HP, SPLIT, PREC)   # dz @ W, W: [out, in]
        # ---- first layer / encoding backward
        if ENC == 0:
            dz0 = dh * _act_grad(z0, omega, ACT)
        else:
            dz0 = dh * tl.where((offs_h < H2)[None, :], tl.cos(z0), -tl.sin(z0)) * enc_scale
        dz0 = tl.where(pmask[:, None] & hmask[None, :], dz0, 0.0)
        for d in tl.static_range(D):
            xd = tl.load(xrow + d, mask=pmask, other=0.0)
            gw1 += tl.where((offs_d == d)[None, :], tl.sum(dz0 * xd[:, None], axis=0)[:, None], 0.0)
        gb1 += tl.sum(dz0, axis=0)
    # ---- the NeF's gradients, written once (the wide hidden weights' already are, by _add_outer)
    if GACC == 0:
        hh = hmask[:, None] & hmask[None, :]
        tl.store(gwh_ptr + ((offs_k[:, None, None] * N + n) * H + offs_h[None, :, None]) * H + offs_h[None, None, :],
                 gwh, mask=(offs_k < K)[:, None, None] & hh[None, :, :])
        tl.store(gbh_ptr + (offs_k[:, None] * N + n) * H + offs_h[None, :], gbh,
                 mask=(offs_k < K)[:, None] & hmask[None, :])
    tl.store(gwo_ptr + (n * C + offs_c[:, None]) * H + offs_h[None, :], gwo,
             mask=(offs_c < C)[:, None] & hmask[None, :])
    tl.store(gbo_ptr + n * C + offs_c, gbo, mask=offs_c < C)
    tl.store(gw1_ptr + (n * H + offs_h[:, None]) * D + offs_d[None, :], gw1,
             mask=hmask[:, None] & (offs_d < D)[None, :])
    if ENC == 0:
        tl.store(gb1_ptr + n * H + offs_h, gb1, mask=hmask)
    tl.store(loss_ptr + n, tl.sum(loss_acc, axis=0))
