"""Where an image's pixels are for its NeF: fit-a-nef's convention, coordinates on linspace(-1, 1) with
[..., 0] the column (x) and [..., 1] the row (y), row-major over the image."""
import torch


def make_grid(height: int, width: int, device=None) -> torch.Tensor:
    """(H*W, 2) coordinates in [-1, 1], row-major over the image."""
    ys = torch.linspace(-1, 1, height, device=device)
    xs = torch.linspace(-1, 1, width, device=device)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y], dim=-1).reshape(-1, 2)
