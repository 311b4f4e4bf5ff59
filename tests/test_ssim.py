"""tasks.inspect's SSIM is Wang et al.'s (the number papers report), not scikit-image's default window."""
import math

import numpy as np
import pytest

skimage = pytest.importorskip("skimage")

from tasks.image.inspect import _ssim  # noqa: E402


def _wang_ssim(x, y, sigma=1.5, radius=5, c1=0.01 ** 2, c2=0.03 ** 2):
    """Wang et al. 2004 written out: Gaussian-weighted local means, variances and covariance (population),
    over the positions where the 11x11 window fits, averaged."""
    g = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    h, wd = x.shape
    vals = []
    for i in range(radius, h - radius):
        for j in range(radius, wd - radius):
            a = x[i - radius:i + radius + 1, j - radius:j + radius + 1]
            b = y[i - radius:i + radius + 1, j - radius:j + radius + 1]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cov = (w * (a - ma) * (b - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_is_wang_et_al_gaussian_window():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(24, 24))
    y = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1)
    want = _wang_ssim(x, y)
    assert _ssim(x[None], y[None]) == pytest.approx(want, abs=1e-6)
    from skimage.metrics import structural_similarity

    assert abs(structural_similarity(x, y, data_range=1.0) - want) > 1e-3   # the default differs
    rgb = np.stack([x, y, x])
    assert _ssim(rgb, rgb) == pytest.approx(1.0)
    assert math.isnan(_ssim(x[None, :8, :8], y[None, :8, :8]))            # smaller than the window
