"""Overexposure mask and fusion (numpy): computed once on the full image, feathered, then
``M * U_oe + (1 - M) * U_noe``. The PyTorch models call the torch twin in rawedge.models.oefusion,
tested against this one, so training and deployment fuse the same way."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.isp.ops import luma
from rawedge.metadata.schema import ModelMeta

DEFAULT_THRESHOLD = 0.978


@dataclass(frozen=True)
class FusionSettings:
    """Overexposure fusion from the model metadata's ``fusion`` object (written by models such as
    rawedge.models.oefusion): mask ``threshold`` and ``mode`` (:func:`overexposure_mask`),
    ``feather_radius`` in photo pixels, and ``outputs`` {"oe": name, "noe": name} of the two branches
    (default raw_oe and raw_noe)."""

    threshold: float = DEFAULT_THRESHOLD
    mode: str = "luma"
    feather_radius: int = 4
    oe_output: str = "raw_oe"
    noe_output: str = "raw_noe"

    @classmethod
    def from_meta(cls, meta: ModelMeta, outputs: list[str]) -> FusionSettings | None:
        """Settings when the model asks for fusion and has both branch outputs, else None."""
        f = meta.fusion
        if f is None:
            return None

        def given(value, default):  # None: not in the metadata, the default applies
            return default if value is None else value

        names = f.outputs or {}
        try:
            settings = cls(threshold=float(given(f.threshold, cls.threshold)), mode=str(given(f.mode, cls.mode)),
                           feather_radius=int(given(f.feather_radius, cls.feather_radius)),
                           oe_output=names.get("oe", cls.oe_output), noe_output=names.get("noe", cls.noe_output))
        except (TypeError, ValueError, AttributeError) as exc:
            raise RawedgeError(None, f"bad 'fusion' settings in the model metadata ({exc})") from None
        if settings.mode not in ("luma", "max"):
            raise RawedgeError(None, f"bad fusion mask mode {settings.mode!r} in the model metadata (luma or max)")
        if settings.oe_output in outputs and settings.noe_output in outputs:
            return settings
        return None


def overexposure_mask(srgb: np.ndarray, threshold: float = DEFAULT_THRESHOLD, mode: str = "luma") -> np.ndarray:
    """HxWx3 sRGB in [0,1] -> HxW float32 {0,1}: luma >= threshold (or max(R,G,B) with mode='max')."""
    if mode == "luma":
        v = luma(srgb)
    elif mode == "max":
        v = srgb.max(axis=-1)
    else:
        raise ValueError(f"unknown mask mode {mode!r} (luma or max)")
    return (v >= threshold).astype(np.float32)


def box_blur(x: np.ndarray, radius: int) -> np.ndarray:
    """Separable box blur with edge replication (cumulative sums: O(1) per pixel for any radius)."""
    if radius <= 0:
        return x.astype(np.float32)
    out = x.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius + 1, radius)
        p = np.pad(out, pad, mode="edge")
        c = np.cumsum(p, axis=axis)
        n = out.shape[axis]
        hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        out = (hi - lo) / (2 * radius + 1)
    return out.astype(np.float32)


def feather(mask: np.ndarray, radius: int = 4) -> np.ndarray:
    """Soft mask: two box-blur passes (close to a Gaussian) so the fusion seam is invisible."""
    return np.clip(box_blur(box_blur(mask, radius), radius), 0.0, 1.0)


def fuse(raw_oe: np.ndarray, raw_noe: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """M * U_oe + (1 - M) * U_noe; mask broadcasts over leading channel axes."""
    return (mask * raw_oe + (1.0 - mask) * raw_noe).astype(np.float32)


def packed_mask(mask: np.ndarray) -> np.ndarray:
    """HxW mask (H, W even) -> (H/2)x(W/2), averaging each 2x2 block (matches the packed RAW grid)."""
    h, w = mask.shape
    return mask.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).astype(np.float32)


def packed_mask_by_strips(read_rows, height: int, width: int, threshold: float = DEFAULT_THRESHOLD,
                          mode: str = "luma", radius: int = 4, strip: int = 512) -> np.ndarray:
    """``packed_mask(feather(overexposure_mask(image), radius))`` of a height x width image (both even)
    whose rows come from ``read_rows(r0, r1) -> (r1-r0)xWx3`` float in [0,1], computed strip by strip
    with a halo of 2*radius rows (the reach of the two blur passes): the same mask, without ever
    holding the whole image in float."""
    out = np.empty((height // 2, width // 2), dtype=np.float32)
    halo = 2 * max(int(radius), 0)
    strip = max(2, strip - strip % 2)
    for r0 in range(0, height, strip):
        r1 = min(height, r0 + strip)
        lo, hi = max(0, r0 - halo), min(height, r1 + halo)
        soft = feather(overexposure_mask(read_rows(lo, hi), threshold, mode), radius)
        out[r0 // 2:r1 // 2] = packed_mask(soft[r0 - lo:r1 - lo])
    return out
