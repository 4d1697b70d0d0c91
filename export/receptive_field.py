"""How far a change in the input reaches into the output, measured on the exported weights, and the tile
overlap that follows from it.

The probe perturbs one 2x2 block at the centre of a mid-grey tile (float64, so the smallest influence is
not lost in rounding) and looks at where the packed output changed. That is exactly the question tiling
asks: the zero padding past a tile's edge is such a change, and it reaches ``margin`` pixels inwards.
``support`` is where the output changed at all (the structural receptive field for these weights);
``margin`` is the radius holding 99.9% of the change, the part that matters after blending.

Recommended overlap = 2 x margin (rounded up to ``align``): two tiles then share enough pixels that every
output pixel lies at least ``margin`` inside one of them.
"""
from __future__ import annotations

import math

import numpy as np

from rawedge.contract import THUMB_SIZE

DEFAULT_TILE = 512
MASS_FRACTION = 0.999
PROBE_SIZES = (128, 256, 512)  # bounded: a float64 probe of a large model at 1024 px costs GBs
DELTA = 1e-3


def round_up(value: float, align: int) -> int:
    return int(math.ceil(value / align) * align)


def _probe_inputs(model, size: int, dtype):
    import torch

    g = torch.Generator().manual_seed(0)
    srgb = 0.45 + 0.1 * torch.rand(1, 3, size, size, generator=g, dtype=torch.float64)
    thumb = torch.full((1, 3, THUMB_SIZE, THUMB_SIZE), 0.5, dtype=torch.float64)
    exif = torch.tensor([[1 / 60, 100.0, 4.0, 7.0]], dtype=torch.float64)
    wb = torch.tensor([[2.0, 1.0, 1.6]], dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)[None]
    return [t.to(dtype) for t in (srgb, thumb, exif, wb, eye, eye)]


def impulse_response(model, size: int) -> tuple[np.ndarray, float]:
    """|change| of the packed output (summed over channels) when the centre 2x2 block of the input
    changes by DELTA, and the smallest change that counts as non-zero for the precision used."""
    import copy

    import torch

    probe, dtype, floor = model, torch.float64, 1e-12
    try:
        probe = copy.deepcopy(model).double()
        inputs = _probe_inputs(probe, size, dtype)
        with torch.no_grad():
            base = probe(*inputs)["raw"]
    except (RuntimeError, TypeError):  # a model that cannot run in float64
        probe, dtype, floor = model, torch.float32, 1e-6
        inputs = _probe_inputs(probe, size, dtype)
        with torch.no_grad():
            base = probe(*inputs)["raw"]
    bumped = inputs[0].clone()
    c = size // 2
    bumped[:, :, c:c + 2, c:c + 2] += DELTA
    with torch.no_grad():
        changed = probe(bumped, *inputs[1:])["raw"]
    response = (changed - base).abs().sum(dim=(0, 1)).to(torch.float64).numpy()
    return response, floor * DELTA * 1e3


def measure(model) -> dict:
    """{"support_px", "margin_px", "probe_px", "reaches_border"} in input (sRGB) pixels."""
    align = int(model.align)
    result = {}
    for size in PROBE_SIZES:
        size = round_up(size, 2 * align)
        response, floor = impulse_response(model, size)
        h, w = response.shape
        ys, xs = np.nonzero(response > floor)
        # Chebyshev distance (in input pixels) of each packed output pixel from the perturbed block.
        centre = size // 4
        yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        dist = np.maximum(np.abs(yy - centre), np.abs(xx - centre)) * 2
        support = int(dist[ys, xs].max()) if len(ys) else 0
        total = response.sum()
        if total > 0:
            order = np.argsort(dist, axis=None, kind="stable")
            cum = np.cumsum(response.ravel()[order]) / total
            margin = int(dist.ravel()[order][np.searchsorted(cum, MASS_FRACTION)])
        else:
            margin = 0
        touches = bool(len(ys)) and bool(ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1)
        result = {"support_px": support, "margin_px": min(margin, support), "probe_px": size,
                  "reaches_border": touches, "mass_fraction": MASS_FRACTION,
                  "method": "impulse at the centre of a mid-grey tile, float64"}
        if not touches:
            break
    return result


def recommend(align: int, rf: dict, static_tile: int | None = None) -> tuple[int, int]:
    """(tile, overlap) in input pixels, both multiples of ``align``; overlap at most half the tile."""
    overlap = max(align, round_up(2 * rf.get("margin_px", 0), align))
    if static_tile is not None:
        tile = static_tile
        overlap = min(overlap, max(align, (tile // 2) // align * align))
    else:
        tile = max(round_up(DEFAULT_TILE, align), round_up(2 * overlap, align))
    return tile, overlap
