"""The round trip: a reconstructed RAW rendered back to sRGB by rawedge's analytic ISP and compared with
the photo it came from. A low figure says the model is out of its depth on that photo."""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROUND_TRIP_PIXELS = 1 << 20  # per strip (rows even: a strip keeps the CFA phase): memory independent of size


def round_trip(raw, srgb: np.ndarray, step: int = 0, rows: int | None = None, workers: int | None = None):
    """(PSNR in dB, the rendered-back image subsampled by ``step`` or None): the result rendered back to
    sRGB by rawedge's analytic ISP (rawedge.isp.pipeline.process: bilinear demosaic, the RawImage's white
    balance and camera->sRGB matrix) against the input photo. In strips of rows with a 2-row margin, so
    memory stays near a strip per worker; strips run on ``workers`` threads (default: every core; numpy
    releases the GIL) and their sums are added in row order, so the figure, rawedge.metrics.psnr of the
    whole images, does not depend on the number of threads. ``rows``: per strip (default: about
    ROUND_TRIP_PIXELS pixels a strip, so memory does not grow with the photo's width)."""
    from rawedge.isp.pipeline import process
    from rawedge.metrics import psnr_from_mse

    h, w = raw.bayer.shape
    rows = rows or max(16, ROUND_TRIP_PIXELS // max(w, 1) // 2 * 2)
    scale = np.float32(255.0 if srgb.dtype == np.uint8 else 65535.0)
    gains, cam2rgb = raw.wb_gains(), raw.profile.cam2rgb()

    def strip(r0: int):
        r1 = min(h, r0 + rows)
        lo, hi = max(0, r0 - 2), min(h, r1 + 2)
        part = dataclasses.replace(raw, bayer=raw.bayer[lo:hi], sigma=None)
        rgb = process(part.normalized(), raw.cfa, gains, cam2rgb)[r0 - lo:r1 - lo]
        diff = (rgb - srgb[r0:r1].astype(np.float32) / scale).reshape(-1)
        sse = float(np.einsum("i,i->", diff, diff, dtype=np.float64))
        return sse, diff.size, (rgb[(-r0) % step::step, ::step] if step else None)

    workers = workers or min(os.cpu_count() or 1, 4)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(strip, range(0, h, rows)))
    figure = psnr_from_mse(sum(p[0] for p in parts) / max(sum(p[1] for p in parts), 1))
    return figure, (np.concatenate([p[2] for p in parts], axis=0) if step else None)


def preview_step(shape, max_side: int = 1024) -> int:
    """Subsampling of each preview panel: at most ``max_side`` pixels on its longer side."""
    return max(1, -(-max(shape[:2]) // max_side))
