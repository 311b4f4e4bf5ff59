"""The fused train step of a multiplicative filter network (FourierNet, GaborNet; nefs/mfn.py) as one Triton
kernel: one program per NeF, the same contract as nefs/fused/kernel.py's ``fused_step_kernel``.

Layer structure, F filters g_i, width H, D inputs, C outputs:
  z_0 = g_0(x);   u_i = W_i z_{i-1} + b_i,   z_i = g_i(x) * u_i   (i = 1..F-1);   y = Wo z_{F-1} + bo
  FourierNet (GABOR=0):  g_i(x) = sin(A_i x + c_i)
  GaborNet   (GABOR=1):  g_i(x) = exp(-0.5 gamma_i ||x - mu_i||^2) * sin(A_i x + c_i)
The backward pass of layer i needs z_{i-1} (for W_i's gradient), g_i (du_i = dz_i * g_i) and u_i
(dg_i = dz_i * u_i). What the kernel keeps, per tile of BLOCK_P points:

* u_1..u_{F-1}, the linears' outputs, as a Triton tuple of F-1 register tiles (BLOCK_P x HP each), written
  once in the forward pass and read by constant index in the backward pass. z_{i-1} is then g_{i-1} * u_{i-1}
  (one elementwise product) and no matmul is repeated: recomputing z_{i-1} from z_0 per layer, as the SIREN
  kernel recomputes its hidden inputs, would cost F(F-1)/2 extra matmuls (45 at GaborNet's 10 filters,
  against 2(F-1) in the backward pass itself). A stacked (F, BLOCK_P, HP) tensor picked by one-hot masks
  would hold the same floats but pay F x BLOCK_P x HP selects per read and write; the tuple's constant
  indices cost nothing (its entries are separate SSA values: registers, never indexed memory).
* The filters g_i are recomputed from x in the backward pass (D = 2 or 3 products per unit, a sine, for
  GaborNet also a distance and an exp), each exactly once: the backward pass walks the layers top down and
  carries g_{i-1} (computed for z_{i-1}) into the next layer's step. The backward pass needs cos(A_i x + c_i)
  anyway, so storing g_i as well would double the tiles kept to save a sine (and an exp).

The gradient sums over the tiles stay in registers as tuples too (one (HP, HP) tile per linear, one HP vector
per filter and input), added to once per tile and written once at the end; the output layer's sums use
one-hot masks over the C <= 3 channels, as in kernel.py. HBM sees the coordinates, the targets, the
parameters (read) and the gradients and the loss (written). Per NeF, with N NeFs stacked: filters' A
(F, N, H, D) and c (F, N, H), GaborNet's mu (F, N, D, H) and gamma (F, N, H), linears (F-1, N, H, H) and
(F-1, N, H), output (N, C, H) and (N, C); gradients in the same shapes.

With TRITON_INTERPRET=1 set before triton is imported, the same code runs in Triton's CPU interpreter
(tests/interp_fused.py).
"""
import triton
import triton.language as tl

from .blocks import mm, output_loss


@triton.jit
def _filter(xs, i: tl.constexpr, n, N, fw_ptr, fb_ptr, mu_ptr, gm_ptr, offs_h, hmask,
            D: tl.constexpr, H: tl.constexpr, GABOR: tl.constexpr, dep):
    """Filter i on a tile of points xs (D columns of BLOCK_P): (g, sin, cos, window, squared distance);
    the last two are the sine's and 0 for FourierNet. Unused values are dead code after inlining.
    dep: a tile of the layer chain this filter is needed by; adding dep * 0 (not foldable in IEEE floats, and
    exact for finite dep) makes the filter wait for it, so the compiler does not compute all F filters up
    front and hold them in registers (measured with ptxas: spills otherwise)."""
    base = i * N + n
    for d in tl.static_range(D):
        wd = tl.load(fw_ptr + (base * H + offs_h) * D + d, mask=hmask, other=0.0)
        if d == 0:
            pre = xs[d][:, None] * wd[None, :]
        else:
            pre = pre + xs[d][:, None] * wd[None, :]
    pre = pre + tl.load(fb_ptr + base * H + offs_h, mask=hmask, other=0.0)[None, :] + dep * 0.0
    s = tl.sin(pre)
    co = tl.cos(pre)
    if GABOR:
        for d in tl.static_range(D):
            diff = xs[d][:, None] - tl.load(mu_ptr + (base * D + d) * H + offs_h, mask=hmask, other=0.0)[None, :]
            if d == 0:
                q = diff * diff
            else:
                q = q + diff * diff
        gam = tl.load(gm_ptr + base * H + offs_h, mask=hmask, other=0.0)
        e = tl.exp(-0.5 * q * gam[None, :])
        g = e * s
    else:
        e = s
        q = s * 0.0
        g = s
    return g, s, co, e, q


@triton.jit
def _filter_grads(dg, xs, s, co, e, q, gfw, gfb, gmu, ggm, sel, i: tl.constexpr, n, N, mu_ptr, gm_ptr, offs_h,
                  hmask, D: tl.constexpr, H: tl.constexpr, GABOR: tl.constexpr):
    """Filter i's parameter gradients on a tile, from dL/dg, added to row i (one-hot ``sel``) of the sums:
    A's columns gfw[d], c's gfb, and for GaborNet mu's rows gmu[d] and gamma's ggm."""
    if GABOR:
        dpre = dg * e * co
    else:
        dpre = dg * co
    nfw = ()
    for d in tl.static_range(D):
        nfw = nfw + (tl.where(sel[:, None], gfw[d] + tl.sum(dpre * xs[d][:, None], axis=0)[None, :], gfw[d]),)
    gfb = tl.where(sel[:, None], gfb + tl.sum(dpre, axis=0)[None, :], gfb)
    if GABOR:
        base = i * N + n
        t = dg * s * e                                  # dL/d(window) * window
        ggm = tl.where(sel[:, None], ggm - 0.5 * tl.sum(t * q, axis=0)[None, :], ggm)
        gam = tl.load(gm_ptr + base * H + offs_h, mask=hmask, other=0.0)
        dq = t * (-0.5 * gam[None, :])                  # dL/d(squared distance)
        nmu = ()
        for d in tl.static_range(D):
            mud = tl.load(mu_ptr + (base * D + d) * H + offs_h, mask=hmask, other=0.0)
            sm = tl.sum(dq * 2.0 * (mud[None, :] - xs[d][:, None]), axis=0)
            nmu = nmu + (tl.where(sel[:, None], gmu[d] + sm[None, :], gmu[d]),)
        gmu = nmu
    return nfw, gfb, gmu, ggm


@triton.jit
def _add_at(acc, j: tl.constexpr, v, L: tl.constexpr):
    """The tuple ``acc`` (length L) with v added to entry j (constant indices: no code, SSA renaming)."""
    out = ()
    for k in tl.static_range(L):
        if k == j:
            out = out + (acc[k] + v,)
        else:
            out = out + (acc[k],)
    return out


@triton.jit
def mfn_step_kernel(
        x_ptr, stride_xn, t_ptr,
        fw_ptr, fb_ptr, mu_ptr, gm_ptr, lw_ptr, lb_ptr, wo_ptr, bo_ptr,
        gfw_ptr, gfb_ptr, gmu_ptr, ggm_ptr, glw_ptr, glb_ptr, gwo_ptr, gbo_ptr, loss_ptr,
        N, P,
        D: tl.constexpr, H: tl.constexpr, HP: tl.constexpr, C: tl.constexpr, F: tl.constexpr,
        FP: tl.constexpr, CP: tl.constexpr, GABOR: tl.constexpr, LOSS: tl.constexpr, BLOCK_P: tl.constexpr,
        PREC: tl.constexpr):
    """One NeF's gradient and loss. x (N or 1, P, D) with stride_xn = P*D or 0 (shared coordinates);
    t (N, P, C); parameters and gradients as in the module docstring (mu, gamma ignored for GABOR=0;
    linears unused for F=1); loss (N,). LOSS: 0 mean squared error, 1 BCE with logits. FP, CP: F and C
    padded to powers of two."""
    n = tl.program_id(0).to(tl.int64)
    offs_h = tl.arange(0, HP)
    hmask = offs_h < H
    offs_c = tl.arange(0, CP)
    inv_count = 1.0 / (P * C)
    loss_acc = tl.zeros((BLOCK_P,), dtype=tl.float32)
    # gradient sums over the tiles: filter parameters as (FP, HP) rows picked by one-hot masks (gfw, gmu: one
    # per input d), the linears' as a tuple of (HP, HP) tiles
    offs_f = tl.arange(0, FP)
    zero_fh = tl.zeros((FP, HP), dtype=tl.float32)
    gfw = ()
    gmu = ()
    for d in tl.static_range(D):
        gfw = gfw + (zero_fh,)
        gmu = gmu + (zero_fh,)
    gfb = zero_fh
    ggm = zero_fh
    glw = ()
    glb = ()
    for j in tl.static_range(F - 1):
        glw = glw + (tl.zeros((HP, HP), dtype=tl.float32),)
        glb = glb + (tl.zeros((HP,), dtype=tl.float32),)
    gwo = tl.zeros((CP, HP), dtype=tl.float32)
    gbo = tl.zeros((CP,), dtype=tl.float32)
    hh = hmask[:, None] & hmask[None, :]
    for p0 in range(0, P, BLOCK_P):
        offs_p = p0 + tl.arange(0, BLOCK_P)
        pmask = offs_p < P
        xrow = x_ptr + n * stride_xn + offs_p * D
        # the weights are read per tile (L1 hits), not held across the tile loop: p0 // P is 0 but not provably
        # so, which keeps the compiler from hoisting every layer's weights (for the matmuls, in their operand
        # layouts) out of the loop into registers (measured: spills at the default sizes otherwise)
        k0 = p0 // P
        fwp, fbp, mup, gmp = fw_ptr + k0, fb_ptr + k0, mu_ptr + k0, gm_ptr + k0
        lwp, lbp, wop, bop = lw_ptr + k0, lb_ptr + k0, wo_ptr + k0, bo_ptr + k0
        xs = ()
        for d in tl.static_range(D):
            xs = xs + (tl.load(xrow + d, mask=pmask, other=0.0),)
        # ---- forward: keep u_1..u_{F-1}
        g, _s, _co, _e, _q = _filter(xs, 0, n, N, fwp, fbp, mup, gmp, offs_h, hmask, D, H, GABOR, 0.0)
        z = g
        us = ()
        for i in tl.static_range(1, F):
            lbase = (i - 1) * N + n
            wt = tl.load(lwp + lbase * H * H + offs_h[None, :] * H + offs_h[:, None], mask=hh, other=0.0)
            b = tl.load(lbp + lbase * H + offs_h, mask=hmask, other=0.0)
            u = mm(z, wt, PREC) + b[None, :]
            us = us + (u,)
            g, _s, _co, _e, _q = _filter(xs, i, n, N, fwp, fbp, mup, gmp, offs_h, hmask, D, H, GABOR, u)
            z = g * u
        # ---- output layer, loss, and its backward pass (blocks.py)
        dz, loss_acc, gwo, gbo = output_loss(z, wop, bop, t_ptr, n, P, offs_p, pmask, offs_h, hmask, offs_c,
                                             inv_count, loss_acc, gwo, gbo, H, HP, C, LOSS, BLOCK_P)
        # ---- backward, top down (rows of masked points carry dz = 0), each sum added to as soon as it is known
        g, s, co, e, q = _filter(xs, F - 1, n, N, fwp, fbp, mup, gmp, offs_h, hmask, D, H, GABOR, dz)
        for i in tl.static_range(F - 1, -1, -1):
            if i >= 1:
                u = us[i - 1]
                du = dz * g
                dg = dz * u
            else:
                dg = dz
            gfw, gfb, gmu, ggm = _filter_grads(dg, xs, s, co, e, q, gfw, gfb, gmu, ggm, offs_f == i, i, n, N,
                                               mup, gmp, offs_h, hmask, D, H, GABOR)
            if i >= 1:
                g, s, co, e, q = _filter(xs, i - 1, n, N, fwp, fbp, mup, gmp, offs_h, hmask, D, H,
                                         GABOR, dg)
                if i >= 2:
                    zin = g * us[i - 2]
                else:
                    zin = g
                if HP == 8:   # a broadcast product summed over the points: fewer registers than tl.dot's here
                    gw = tl.sum(du[:, :, None] * zin[:, None, :], axis=0)
                else:         # (ptxas, sm_90: FourierNet-8 spills with the dot, GaborNet-15 less with it)
                    gw = mm(tl.trans(du), zin, PREC)
                glw = _add_at(glw, i - 1, gw, F - 1)
                glb = _add_at(glb, i - 1, tl.sum(du, axis=0), F - 1)
                lbase = (i - 1) * N + n
                w = tl.load(lwp + lbase * H * H + offs_h[:, None] * H + offs_h[None, :], mask=hh, other=0.0)
                dz = mm(du, w, PREC)
    # ---- the NeF's gradients, written once
    fh = (offs_f < F)[:, None] & hmask[None, :]
    rows = offs_f[:, None] * N + n                      # (filter, NeF) rows of the (F, N, ...) gradients
    tl.store(gfb_ptr + rows * H + offs_h[None, :], gfb, mask=fh)
    for d in tl.static_range(D):
        tl.store(gfw_ptr + (rows * H + offs_h[None, :]) * D + d, gfw[d], mask=fh)
    if GABOR:
        tl.store(ggm_ptr + rows * H + offs_h[None, :], ggm, mask=fh)
        for d in tl.static_range(D):
            tl.store(gmu_ptr + (rows * D + d) * H + offs_h[None, :], gmu[d], mask=fh)
    for j in tl.static_range(F - 1):
        base = j * N + n
        tl.store(glw_ptr + base * H * H + offs_h[:, None] * H + offs_h[None, :], glw[j], mask=hh)
        tl.store(glb_ptr + base * H + offs_h, glb[j], mask=hmask)
    tl.store(gwo_ptr + (n * C + offs_c[:, None]) * H + offs_h[None, :], gwo,
             mask=(offs_c < C)[:, None] & hmask[None, :])
    tl.store(gbo_ptr + n * C + offs_c, gbo, mask=offs_c < C)
    tl.store(loss_ptr + n, tl.sum(loss_acc, axis=0))
