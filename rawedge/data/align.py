"""Pair a camera's own JPEG preview with its RAW: find where the preview lies on the sensor, then bin
the RAW down to the preview's pixel grid.

Alignment. The preview is a resized (and often slightly cropped) view of the sensor, so its pixel grid
maps to sensor coordinates by ``X = offset_x + scale_x * u`` (u in preview pixels, X in sensor pixels,
both measured at pixel edges; same for y). We render the RAW analytically at half resolution (one RGB
pixel per 2x2 Bayer cell), search a uniform scale with normalised cross-correlation template matching
at 1/4 resolution, then refine (scale_x, scale_y, offset_x, offset_y) with Nelder-Mead on the NCC of
the luma images resampled by exact area weights. The residual reported is the shift left between the
preview and the aligned rendering, measured independently by sub-pixel phase correlation, and the NCC.

Binning. The target RAW at preview resolution is an RGGB mosaic with the preview's pixel grid: the site
at preview pixel (u, v) of colour c is the area average of colour plane c of the sensor over that preview
pixel's footprint on the sensor. Each plane is resampled with its own sub-pixel phase (a plane pixel j
sits at sensor column 2j + dx), so the colours stay registered; no demosaicking is involved.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rawedge.isp import ops

MIN_NCC = 0.8  # below this the preview is not the same view as the RAW (or is rotated): no pair
_BORDER = 8  # preview pixels ignored at the edges when scoring (JPEG edge blocks, vignetting)


@dataclass
class PreviewAlignment:
    scale_x: float  # sensor pixels per preview pixel
    scale_y: float
    offset_x: float  # sensor coordinate of the preview's left edge
    offset_y: float
    ncc: float  # normalised cross-correlation of the lumas after alignment
    residual_shift_px: float  # shift left after alignment (phase correlation), preview pixels

    def to_dict(self) -> dict:
        return {k: round(float(v), 5) for k, v in asdict(self).items()}


def area_weights(n_out: int, n_in: int, start: float, step: float):
    """Sparse [n_out, n_in] matrix: output pixel u averages input pixels over [start + u*step, +step),
    weighted by exact overlap; coverage outside the input is dropped (renormalised)."""
    from scipy import sparse

    a = start + step * np.arange(n_out, dtype=np.float64)
    b = a + step
    k = int(np.ceil(step)) + 2
    cols = np.floor(a)[:, None].astype(np.int64) + np.arange(k)[None, :]
    overlap = np.clip(np.minimum(b[:, None], cols + 1) - np.maximum(a[:, None], cols), 0.0, None)
    overlap[(cols < 0) | (cols >= n_in)] = 0.0
    sums = overlap.sum(axis=1, keepdims=True)
    empty = sums[:, 0] <= 0
    if np.any(empty):  # entirely outside the input: nearest edge pixel
        cols[empty, 0] = np.clip(np.floor((a[empty] + b[empty]) / 2), 0, n_in - 1)
        overlap[empty] = 0.0
        overlap[empty, 0] = 1.0
        sums = overlap.sum(axis=1, keepdims=True)
    weights = overlap / sums
    rows = np.repeat(np.arange(n_out), k)
    keep = weights.ravel() > 0
    return sparse.csr_matrix((weights.ravel()[keep], (rows[keep], np.clip(cols.ravel()[keep], 0, n_in - 1))),
                             shape=(n_out, n_in))


def resample_area(image: np.ndarray, out_hw: tuple[int, int], start_yx: tuple[float, float],
                  step_yx: tuple[float, float]) -> np.ndarray:
    """Area-average resampling of a 2-D image onto a grid: output pixel (i, j) covers the input region
    [start_y + i*step_y, +step_y) x [start_x + j*step_x, +step_x) (pixel-edge coordinates)."""
    wy = area_weights(out_hw[0], image.shape[0], start_yx[0], step_yx[0])
    wx = area_weights(out_hw[1], image.shape[1], start_yx[1], step_yx[1])
    return np.asarray((wy @ (wx @ image.astype(np.float64).T).T), dtype=np.float32)


def half_res_render(mosaic_rggb: np.ndarray, wb_gains, cam2rgb) -> np.ndarray:
    """Analytic sRGB rendering with one pixel per 2x2 Bayer cell (R, mean of the greens, B)."""
    p = ops.pack(mosaic_rggb, "RGGB")
    rgb = np.stack([p[0], (p[1] + p[2]) * 0.5, p[3]], axis=-1)
    rgb = np.clip(rgb * ops.libraw_gains(wb_gains).astype(np.float32), 0.0, 1.0)
    return ops.linear_to_srgb(ops.apply_ccm(rgb, cam2rgb))


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def _coarse_scale_search(render_luma: np.ndarray, preview_luma: np.ndarray) -> tuple[float, float, float]:
    """(scale, offset_x, offset_y) by NCC template matching over a grid of uniform scales at 1/4 res."""
    from PIL import Image
    from skimage.feature import match_template

    f = 4
    hp, wp = preview_luma.shape
    h2, w2 = render_luma.shape  # half-res: one pixel = 2 sensor pixels
    small = np.asarray(Image.fromarray(preview_luma, "F").resize((wp // f, hp // f), Image.BOX))
    mh, mw = max(1, small.shape[0] // 12), max(1, small.shape[1] // 12)
    template = small[mh:-mh, mw:-mw]
    src = Image.fromarray(render_luma, "F")
    fit_scale = min(2 * w2 / wp, 2 * h2 / hp)  # largest uniform scale at which the preview fits the sensor
    best = (-2.0, fit_scale, 0.0, 0.0)
    for s in np.linspace(0.5 * fit_scale, 1.05 * fit_scale, 45):
        size = (round(2 * w2 / (s * f)), round(2 * h2 / (s * f)))
        if size[0] < template.shape[1] or size[1] < template.shape[0]:
            continue
        score = match_template(np.asarray(src.resize(size, Image.BOX)), template)
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        if score[i, j] > best[0]:
            best = (float(score[i, j]), float(s), (j - mw) * s * f, (i - mh) * s * f)
    return best[1], best[2], best[3]


def align_preview(preview_srgb: np.ndarray, mosaic_rggb: np.ndarray, wb_gains, cam2rgb) -> PreviewAlignment:
    """Where the preview (HxWx3 float [0,1]) lies on the RGGB-phase sensor mosaic (float [0,1])."""
    from scipy import optimize
    from skimage.registration import phase_cross_correlation

    render_luma = ops.luma(half_res_render(mosaic_rggb, wb_gains, cam2rgb))
    preview_luma = ops.luma(preview_srgb.astype(np.float32))
    hp, wp = preview_luma.shape
    inner = (slice(_BORDER, hp - _BORDER), slice(_BORDER, wp - _BORDER))

    def warped(q):
        sx, sy, ox, oy = q  # sensor coordinates -> half-res render coordinates: divide by 2
        return resample_area(render_luma, (hp, wp), (oy / 2, ox / 2), (sy / 2, sx / 2))

    s, ox, oy = _coarse_scale_search(render_luma, preview_luma)
    x0 = np.array([s, s, ox, oy])
    simplex = np.array([x0, x0 + [0.02 * s, 0, 0, 0], x0 + [0, 0.02 * s, 0, 0], x0 + [0, 0, 2 * s, 0],
                        x0 + [0, 0, 0, 2 * s]])
    res = optimize.minimize(lambda q: -_ncc(warped(q)[inner], preview_luma[inner]), x0, method="Nelder-Mead",
                            options={"initial_simplex": simplex, "xatol": 1e-3, "fatol": 1e-7, "maxiter": 800})
    sx, sy, ox, oy = (float(v) for v in res.x)
    aligned = warped(res.x)
    shift, _, _ = phase_cross_correlation(preview_luma[inner], aligned[inner], upsample_factor=20,
                                          normalization=None)
    return PreviewAlignment(sx, sy, ox, oy, ncc=-float(res.fun), residual_shift_px=float(np.hypot(*shift)))


def valid_window(alignment: PreviewAlignment, sensor_hw: tuple[int, int], preview_hw: tuple[int, int]
                 ) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the even-aligned part of the preview that lies on the sensor."""
    def axis(offset, scale, n_sensor, n_preview):
        first = max(0, int(np.ceil(-offset / scale - 1e-9)))
        last = min(n_preview, int(np.floor((n_sensor - offset) / scale + 1e-9)))
        first += first % 2
        return first, max(0, (last - first) // 2 * 2)

    top, h = axis(alignment.offset_y, alignment.scale_y, sensor_hw[0], preview_hw[0])
    left, w = axis(alignment.offset_x, alignment.scale_x, sensor_hw[1], preview_hw[1])
    return top, left, h, w


def bin_to_preview(mosaic_rggb: np.ndarray, alignment: PreviewAlignment, window: tuple[int, int, int, int]
                   ) -> np.ndarray:
    """RGGB mosaic on the preview's pixel grid (``window`` = top, left, height, width in preview pixels,
    even top/left): each site is the area average of its colour plane over its footprint on the sensor."""
    top, left, h, w = window
    planes = ops.pack(mosaic_rggb, "RGGB")
    out = np.empty((4, h // 2, w // 2), dtype=np.float32)
    for ch, (dy, dx) in enumerate(ops.packing_order("RGGB")):
        # sensor edge coordinate X -> plane edge coordinate (X - dx + 0.5) / 2
        y0 = (alignment.offset_y + alignment.scale_y * top - dy + 0.5) / 2
        x0 = (alignment.offset_x + alignment.scale_x * left - dx + 0.5) / 2
        full = resample_area(planes[ch], (h, w), (y0, x0), (alignment.scale_y / 2, alignment.scale_x / 2))
        out[ch] = full[dy::2, dx::2]
    return ops.unpack(np.clip(out, 0.0, 1.0), "RGGB")
