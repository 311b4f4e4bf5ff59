"""A fused CUDA train step (Triton): forward, loss, backward and parameter gradients of each NeF in one
kernel, activations on chip. Importing this package imports no Triton; the kernel loads on first use."""
from .select import CHOICES, fused_grad_fn, resolve_kernel, why_not

__all__ = ["CHOICES", "fused_grad_fn", "resolve_kernel", "why_not"]
