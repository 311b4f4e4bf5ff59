"""What one train step must compute and move: the roofline of the fused step.

FLOPs count the NeF's own arithmetic, not the kernel's: a multiply-add is 2, every matmul of the forward
pass appears three times (forward, weight gradient, input gradient; the first layer has no input
gradient), each hidden unit costs 2 elementwise ops forward (bias, activation) and 3 backward (activation
derivative, product, bias-gradient sum), each output 4 forward (bias, difference, square, sum) and 3
backward. The kernel also recomputes hidden inputs for the backward pass (nefs/fused/kernel.py); that is
overhead, left out so the figure is comparable across implementations.

Multiplicative filter networks (MFNSpec) by the same rules: each filter's A x is a first layer (forward and
weight gradient), the F - 1 linears and the output are hidden matmuls (three times). Per filter unit 2
elementwise ops forward (bias, sine) and 3 backward (cosine, product, bias-gradient sum); GaborNet's window
adds 3 forward (gamma scale, exp, product) and 4 backward (two products for its gradient, gamma's product
and sum), and its squared distance 3 per input and unit each way (difference, square, sum; mu's gradient:
product, scale, sum). Per linear unit 2 forward (bias, product with the filter) and 3 backward (the two
products, the bias-gradient sum). The kernel's filter recompute (nefs/fused/mfn_kernel.py) is left out too.

Bytes are the least HBM traffic of a step with activations on chip: coordinates (once if shared, else per
NeF), targets, parameters read, gradients written, the loss, and the optimizer's state (Adam: read
parameter, gradient, two moments; write parameter and moments: 7 floats per parameter).
"""
from dataclasses import dataclass

from .spec import FusedSpec, MFNSpec

FLOAT = 4
ADAM_FLOATS = 7

# One NVIDIA H200 SXM (datasheet): FP32 without tensor cores 67 TFLOP/s, HBM3e 4.8 TB/s.
# Other GPUs: scripts/step_bench.py --peak-tflops / --peak-tbs.
H200_FP32_TFLOPS = 67.0
H200_HBM_TBS = 4.8


@dataclass(frozen=True)
class StepCost:
    flops: float
    bytes: float

    def line(self, seconds: float, peak_tflops: float = H200_FP32_TFLOPS, peak_tbs: float = H200_HBM_TBS) -> str:
        """The roofline line of a step that took ``seconds``."""
        f, b = self.flops / seconds, self.bytes / seconds
        floor = max(self.flops / (peak_tflops * 1e12), self.bytes / (peak_tbs * 1e12))
        return (f"roofline: {self.flops / 1e9:.3g} GFLOP, {self.bytes / 1e6:.3g} MB per step; "
                f"{f / 1e12:.3g} TFLOP/s = {100 * f / (peak_tflops * 1e12):.3g}% of {peak_tflops:g} FP32, "
                f"{b / 1e12:.3g} TB/s = {100 * b / (peak_tbs * 1e12):.3g}% of {peak_tbs:g} HBM; "
                f"floor {1e3 * floor:.3g} ms/step")


def num_params(spec: FusedSpec) -> int:
    if isinstance(spec, MFNSpec):
        d, h, c, f = spec.in_features, spec.width, spec.out_features, spec.filters
        return f * (h * d + h) * (2 if spec.gabor else 1) + (f - 1) * (h * h + h) + c * h + c
    d, h, c, k = spec.in_features, spec.width, spec.out_features, len(spec.hidden)
    first = (h // 2) * d if len(spec.first) == 1 else h * d + h
    return first + k * (h * h + h) + c * h + c


def step_cost(spec: FusedSpec, points: int, nefs: int, shared_coords: bool = True,
              optimizer_floats: int = ADAM_FLOATS) -> StepCost:
    if isinstance(spec, MFNSpec):
        flops = float(nefs) * points * _mfn_point_flops(spec)
    else:
        d, h, c, k = spec.in_features, spec.width, spec.out_features, len(spec.hidden)
        rff = len(spec.first) == 1
        first = 2 * d * (h // 2 if rff else h)               # the first matmul, per point
        middle = k * 2 * h * h + 2 * h * c                   # hidden and output matmuls, per point
        first_backward = first if (not rff or spec.learnable_first) else 0
        matmul = first + first_backward + 3 * middle         # forward + weight grads; input grads of all but the first
        units = h * (k + 1)
        elementwise = units * (2 + 3) + c * (4 + 3)
        flops = float(nefs) * points * (matmul + elementwise)
    d, c = spec.in_features, spec.out_features
    s = num_params(spec)
    coords = points * d * (1 if shared_coords else nefs)
    floats = coords + nefs * (points * c + 2 * s + 1 + optimizer_floats * s)
    return StepCost(flops, float(FLOAT * floats))


def _mfn_point_flops(spec: MFNSpec) -> int:
    d, h, c, f = spec.in_features, spec.width, spec.out_features, spec.filters
    matmul = f * 2 * (2 * d * h) + 3 * ((f - 1) * 2 * h * h + 2 * h * c)   # filters: forward + weight grads
    window = f * 2 * (3 * d * h) if spec.gabor else 0                        # GaborNet's squared distances
    elementwise = f * h * ((2 + 3) + ((3 + 4) if spec.gabor else 0)) + (f - 1) * h * (2 + 3) + c * (4 + 3)
    return matmul + window + elementwise
