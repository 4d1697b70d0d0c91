"""Where a fisheye RAW has image: the GoPro FUSION's image circle, so training crops avoid the black outside.

Why: the FUSION's two lenses each project a circle onto the sensor; outside it the sensor records only
black (codec noise around 0). A crop there teaches a model that black sRGB comes from black RAW, which is
true but useless, and crops straddling the rim teach the lens's dark rim. HERO6/HERO7 (rectilinear-ish)
and ordinary cameras have image everywhere, and get an all-True mask.

Detection works on any Bayer mosaic without demosaicking: 2x2 block means, downsampled, are thresholded
halfway (geometric mean) between the corners' noise floor and the scene's median level, above the flare
halo some shots have outside the rim; the circle is fitted (least squares, Kasa) to the left and right
ends of the lit span of each row that does not touch the frame border, then shrunk by a margin that
drops the vignetted rim.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

DARK_CORNER_LEVEL = 0.005  # normalised: a corner this dark at its 99th percentile is outside the circle
CORNER_FRACTION = 0.04  # corner patch side, fraction of the short side
RIM_MARGIN = 0.03  # the circle is shrunk by this fraction of its radius (dark, soft rim)
WORK_SIDE = 512  # short side of the working image for the fit


def _block_mean(img: np.ndarray, factor: int) -> np.ndarray:
    h, w = img.shape[0] // factor * factor, img.shape[1] // factor * factor
    return img[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def fit_image_circle(mosaic_normalized: np.ndarray) -> tuple[float, float, float] | None:
    """(centre row, centre column, radius) in mosaic pixels of a fisheye image circle, or None when the
    frame has image in its corners (no circle to find) or the rim does not fit a circle."""
    mosaic = np.asarray(mosaic_normalized, dtype=np.float32)
    if mosaic.ndim != 2 or min(mosaic.shape) < 64:
        raise ValueError(f"expected an HxW normalised mosaic of at least 64x64, got shape {mosaic.shape}")
    factor = max(2, min(mosaic.shape) // WORK_SIDE // 2 * 2)  # even: each block covers whole 2x2 tiles
    small = _block_mean(mosaic, factor)
    h, w = small.shape
    c = max(2, int(CORNER_FRACTION * min(h, w)))
    corners = [small[:c, :c], small[:c, -c:], small[-c:, :c], small[-c:, -c:]]
    levels = [float(np.percentile(p, 99)) for p in corners]
    if sum(level < DARK_CORNER_LEVEL for level in levels) < 3:
        return None
    # halfway (geometrically) between the noise floor and the scene: above the flare halo outside the rim
    floor = max(float(np.median(levels)), 1e-5)
    lit = small > max(3.0 * floor, float(np.sqrt(floor * np.median(small))))
    labels, count = ndimage.label(lit)
    if count == 0:
        return None
    sizes = ndimage.sum_labels(lit, labels, index=np.arange(1, count + 1))
    lit = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    rows = np.nonzero(lit.any(axis=1))[0]
    ys, xs = [], []
    for y in rows:
        span = np.nonzero(lit[y])[0]
        for x in (span[0], span[-1]):
            if 0 < x < w - 1:
                ys.append(y)
                xs.append(x)
    if len(xs) < 20:
        return None
    ys, xs = np.asarray(ys, np.float64) + 0.5, np.asarray(xs, np.float64) + 0.5
    keep = np.ones(len(xs), bool)
    for _ in range(3):  # Kasa fit, then drop rows whose ends sit on a dark object rather than the rim
        a = np.stack([xs[keep], ys[keep], np.ones(keep.sum())], axis=1)
        sol = np.linalg.lstsq(a, xs[keep] ** 2 + ys[keep] ** 2, rcond=None)[0]
        cx, cy = sol[0] / 2, sol[1] / 2
        r = float(np.sqrt(sol[2] + cx * cx + cy * cy))
        resid = np.abs(np.hypot(xs - cx, ys - cy) - r)
        keep = resid < max(2.0, 3.0 * float(np.median(resid[keep])))
    if float(np.median(resid[keep])) > 0.02 * r:
        return None
    return float(cy * factor), float(cx * factor), float(r * factor)


def fisheye_valid_mask(mosaic_normalized: np.ndarray, margin: float = RIM_MARGIN) -> np.ndarray:
    """HxW bool: True inside the image circle (shrunk by ``margin`` of its radius); all True when the
    frame has no circle (HERO6/HERO7 and ordinary cameras)."""
    circle = fit_image_circle(mosaic_normalized)
    h, w = np.asarray(mosaic_normalized).shape
    if circle is None:
        return np.ones((h, w), dtype=bool)
    cy, cx, r = circle
    yy, xx = np.ogrid[:h, :w]
    return (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= (r * (1.0 - margin)) ** 2


def valid_crop_origins(mask: np.ndarray, size: int, step: int = 2) -> np.ndarray:
    """(N, 2) int array of (top, left) on a ``step`` grid (2 keeps the RGGB phase) whose size x size
    window lies wholly inside ``mask``; a summed-area table makes it one pass."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    if size < 1 or step < 1:
        raise ValueError("size and step must be >= 1")
    h, w = mask.shape
    if size > h or size > w:
        return np.zeros((0, 2), dtype=np.int64)
    sat = np.pad(np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1), ((1, 0), (1, 0)))
    tops, lefts = np.arange(0, h - size + 1, step), np.arange(0, w - size + 1, step)
    t, l = tops[:, None], lefts[None, :]
    inside = sat[t + size, l + size] - sat[t, l + size] - sat[t + size, l] + sat[t, l]
    ok = np.nonzero(inside == size * size)
    return np.stack([tops[ok[0]], lefts[ok[1]]], axis=1)


def random_valid_crop(rng: np.random.Generator, mask: np.ndarray, size: int, step: int = 2) -> tuple[int, int] | None:
    """One (top, left) drawn uniformly from :func:`valid_crop_origins`, or None when no crop fits."""
    origins = valid_crop_origins(mask, size, step)
    if len(origins) == 0:
        return None
    top, left = origins[int(rng.integers(len(origins)))]
    return int(top), int(left)
