"""The fused step of FourierNet and GaborNet (nefs/fused/mfn_kernel.py) behind the engine's grad-fn
signature, f(params, coords, targets) -> (grads, loss (N,)); ``nefs.fused.step.FusedGrad`` builds it for an
MFNSpec."""
import torch

from .launch import KernelGrad, as_f32, grad_buffers, kernel_width, pow2
from .spec import MFNSpec


def mfn_param_names(spec: MFNSpec):
    """(per-filter names, per-linear (weight, bias) names) of the NeF's parameters, in kernel order."""
    f = spec.filters
    if spec.gabor:
        filters = [(f"filters.{i}.linear.weight", f"filters.{i}.linear.bias", f"filters.{i}.mu",
                    f"filters.{i}.gamma") for i in range(f)]
    else:
        filters = [(f"filters.{i}.weight", f"filters.{i}.bias") for i in range(f)]
    return filters, [(f"linears.{j}.weight", f"linears.{j}.bias") for j in range(f - 1)]


class MFNFusedGrad(KernelGrad):
    # (points per tile, warps, stages) by padded width, from sm_90 compiles (ptxas, no GPU) at the default sizes:
    # FourierNet-8 (8 filters) at 32 points, 4 warps: 168 registers, no spills (64 points spill); GaborNet-15
    # (10 filters) at 16 points, 8 warps: 255 registers, 416 bytes of spill stores, the fewest measured, not
    # none (docs/performance.md). The kernel keeps F - 1 tiles of BLOCK_P x width, so more filters than the
    # defaults may spill more. Widths 32 and 64 are not tuned. Speed is not measured; ``tile=`` overrides.
    TILES = {8: (32, 4, 3), 16: (16, 8, 3), 32: (16, 8, 3), 64: (16, 8, 3)}
    WIDEST = (16, 8, 3)

    @staticmethod
    def load_kernel():
        from .mfn_kernel import mfn_step_kernel   # imports triton: on first use, not with nefs.fused

        return mfn_step_kernel

    def constants(self, spec: MFNSpec, loss: int, precision: str, points: int) -> dict:
        return dict(D=spec.in_features, H=spec.width, HP=kernel_width(spec, precision),
                    C=spec.out_features, F=spec.filters, FP=pow2(spec.filters), CP=pow2(spec.out_features),
                    GABOR=int(spec.gabor), LOSS=loss, BLOCK_P=points, PREC=precision)

    def __call__(self, params, coords, targets):
        s = self.spec
        filters, linears = mfn_param_names(s)
        first = params[filters[0][0]]
        n, dev = first.shape[0], first.device
        stack = lambda names: torch.stack([as_f32(params[k]) for k in names])  # noqa: E731
        batched = coords.dim() == 3
        x = as_f32(coords)
        p = x.shape[-2]
        f, h, d, co = s.filters, s.width, s.in_features, s.out_features
        t = as_f32(targets).reshape(n, p, co)
        fw, fb = stack([k[0] for k in filters]), stack([k[1] for k in filters])
        dummy = torch.zeros(1, dtype=torch.float32, device=dev)
        mu, gamma = (stack([k[2] for k in filters]), stack([k[3] for k in filters])) if s.gabor else (dummy, dummy)
        lw, lb = (stack([k[0] for k in linears]), stack([k[1] for k in linears])) if linears else (dummy, dummy)
        wo, bo = as_f32(params["output.weight"]), as_f32(params["output.bias"])
        gfw, gfb, gmu, ggm, glw, glb, gwo, gbo = grad_buffers(
            [(f, n, h, d), (f, n, h), (f, n, d, h) if s.gabor else (0,), (f, n, h) if s.gabor else (0,),
             (f - 1, n, h, h), (f - 1, n, h), tuple(wo.shape), tuple(bo.shape)], dev)
        loss = torch.empty(n, dtype=torch.float32, device=dev)
        self.kernel[(n,)](
            x, p * d if batched else 0, t, fw, fb, mu, gamma, lw, lb, wo, bo,
            gfw, gfb, gmu if s.gabor else dummy, ggm if s.gabor else dummy,
            glw if linears else dummy, glb if linears else dummy, gwo, gbo, loss,
            n, p, **self.const, **self.options)
        grads = {"output.weight": gwo, "output.bias": gbo}
        for i, names in enumerate(filters):
            grads[names[0]], grads[names[1]] = gfw[i], gfb[i]
            if s.gabor:
                grads[names[2]], grads[names[3]] = gmu[i], ggm[i]
        for j, (wn, bn) in enumerate(linears):
            grads[wn], grads[bn] = glw[j], glb[j]
        return {name: grads[name].to(params[name].dtype) for name in params}, loss
