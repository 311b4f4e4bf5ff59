"""A fused CUDA train step (Triton): forward, loss, backward and parameter gradients of each NeF in one
kernel, activations on chip. Importing this package imports no Triton; the kernel loads on first use."""
from .select import why_not

__all__ = ["why_not"]
