"""Bring any Bayer mosaic to RGGB phase (a red site at the origin, even size), the frame every model
and the data loader work in. Cropping by the red site's offset is lossless: no resampling."""
from __future__ import annotations

import numpy as np

from rawedge.isp.ops import cfa_offsets

RGGB_ORDER = ("R", "G1", "G2", "B")


def rggb_offset(cfa: str) -> tuple[int, int]:
    """(dy, dx) of the first red site: cropping that many rows/columns gives an RGGB mosaic."""
    return cfa_offsets(cfa)["R"]


def rggb_crop_box(height: int, width: int, cfa: str) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the largest even-sized RGGB-phase window of a HxW mosaic."""
    dy, dx = rggb_offset(cfa)
    return dy, dx, (height - dy) // 2 * 2, (width - dx) // 2 * 2


def to_rggb(image: np.ndarray, cfa: str) -> np.ndarray:
    """Crop a mosaic (HxW) or an image aligned with it (HxWxC) to RGGB phase and even size."""
    top, left, h, w = rggb_crop_box(image.shape[0], image.shape[1], cfa)
    return image[top:top + h, left:left + w]


def rggb_black_levels(black_level, cfa: str) -> list[float]:
    """Per-position black levels (row-major 2x2 of ``cfa``) reordered for the RGGB-phase mosaic."""
    black = np.asarray(black_level, dtype=np.float64).reshape(2, 2)
    offsets = cfa_offsets(cfa)
    return [float(black[offsets[name]]) for name in RGGB_ORDER]


def normalize_levels(mosaic: np.ndarray, black_rggb, white: float) -> np.ndarray:
    """RGGB-phase mosaic at sensor levels -> float32 [0, 1] (``RawImage.normalized`` for stored data)."""
    h, w = mosaic.shape
    black = np.tile(np.asarray(black_rggb, np.float32).reshape(2, 2), ((h + 1) // 2, (w + 1) // 2))[:h, :w]
    return np.clip((mosaic.astype(np.float32) - black) / (np.float32(white) - black), 0.0, 1.0)


def quantize_levels(normalized: np.ndarray, black_rggb, white: float) -> np.ndarray:
    """Inverse of :func:`normalize_levels`: [0, 1] RGGB mosaic -> uint16 sensor levels."""
    h, w = normalized.shape
    black = np.tile(np.asarray(black_rggb, np.float64).reshape(2, 2), ((h + 1) // 2, (w + 1) // 2))[:h, :w]
    return np.round(black + np.clip(normalized, 0.0, 1.0) * (white - black)).astype(np.uint16)
