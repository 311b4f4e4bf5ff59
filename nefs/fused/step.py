"""The fused step behind the engine's grad-fn signature: f(params, coords, targets) -> (grads, loss (N,)).

Same contract as ``vmap(grad_and_value(loss))`` of the torch path (nefs/engine.py): params are the stacked
tensors (N, ...), coords (P, D) shared or (N, P, D) per NeF, targets (N, P, C); grads a dict with one
stacked tensor per parameter, loss each NeF's own mean loss.
"""
import math

import torch

from .spec import FusedSpec

LOSSES = {"mse": 0, "bce_logits": 1}       # a Problem's ``fused_loss`` -> the kernel's LOSS
PRECISIONS = ("ieee", "tf32", "bf16")      # matmul inputs; accumulation is fp32 in all three


def load_kernel():
    from .kernel import fused_step_kernel

    return fused_step_kernel


class FusedGrad:
    def __init__(self, spec: FusedSpec, loss: str, precision: str = "ieee"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
        self.spec, self.loss, self.precision = spec, LOSSES[loss], precision
        # bf16 dots need an inner size of 16 (fp32 and tf32: 8)
        self.padded_width = max(spec.padded_width, 16 if precision == "bf16" else 8)
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
        # every gradient is a view of one zeroed buffer: one memset per step, not one per tensor
        shapes = [(n, h, d), (n, h), (kk, n, h, h), (kk, n, h), tuple(wo.shape), tuple(bo.shape)]
        flat = torch.zeros(sum(math.prod(sh) for sh in shapes), **f32)
        views, at = [], 0
        for sh in shapes:
            views.append(flat[at: at + math.prod(sh)].view(sh))
            at += math.prod(sh)
        gw1, gb1, gwh, gbh, gwo, gbo = views   # gw1 for RFFNet: the sin and cos halves apart, added below
        loss = torch.empty(n, **f32)
        self.kernel[(n,)](
            x, p * d if batched else 0, t, w1, b1, wh, bh, wo, bo, gw1, gb1, gwh, gbh, gwo, gbo, loss,
            n, p, float(s.omega), float(s.enc_scale),
            D=d, H=h, HP=self.padded_width, C=s.out_features, K=k, ACT=s.act, ENC=int(len(s.first) == 1),
            LOSS=self.loss, BLOCK_P=s.block_points, PREC=self.precision,
            num_warps=4 if self.padded_width <= 32 else 8)
        grads = {"output.weight": gwo, "output.bias": gbo}
        for i, (wn, bn) in enumerate(zip(s.hidden, hidden_b)):
            grads[wn], grads[bn] = gwh[i], gbh[i]
        if len(s.first) == 1:  # RFFNet coefficients: row j of the encoding is sin (j < H/2) or cos of row j % (H/2)
            g = gw1[:, : h // 2] + gw1[:, h // 2:]
            grads[s.first[0]] = g if s.learnable_first else torch.zeros_like(g)
        else:
            grads[s.first[0]], grads[s.first[1]] = gw1, gb1
        return {name: grads[name].to(params[name].dtype) for name in params}, loss
