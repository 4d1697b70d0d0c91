"""The analytic ISP and its inverse (Brooks et al. 2019, "Unprocessing images for learned raw denoising").

Forward: mosaic -> demosaic -> WB -> camera->sRGB matrix -> clip -> sRGB curve (what LibRaw does with
``no_auto_bright`` and an sRGB gamma). Reverse: exactly the inverse steps, then mosaic.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rawedge.isp import ops
from rawedge.types import CameraProfile, Exif, Photo, RawImage

UNPROCESS_STRIP_ROWS = 256  # even: every strip starts on the same CFA phase


def unprocess(srgb: np.ndarray, profile: CameraProfile, wb_gains: np.ndarray, cfa: str | None = None) -> np.ndarray:
    """HxWx3 sRGB in [0, 1] -> HxW normalised mosaic in [0, 1] (the analytic reverse ISP)."""
    linear = ops.srgb_to_linear(srgb)
    rgb_to_cam = np.linalg.inv(profile.cam2rgb())  # host-side inverse
    cam_balanced = ops.apply_ccm(linear, rgb_to_cam)
    cam = cam_balanced / ops.libraw_gains(wb_gains).astype(np.float32).reshape(1, 1, 3)
    return np.clip(ops.mosaic(cam, cfa or profile.cfa), 0.0, 1.0).astype(np.float32)


def unprocess_photo(srgb: np.ndarray, profile: CameraProfile, wb_gains: np.ndarray, exif: Exif | None = None,
                    strip_rows: int = UNPROCESS_STRIP_ROWS) -> RawImage:
    """:func:`unprocess` of a stored HxWx3 photo (uint8 or uint16) into a RawImage, strip by strip of
    rows: memory stays near the photo plus its mosaic, not its float copies (12 bytes a pixel each)."""
    if strip_rows < 2 or strip_rows % 2:
        raise ValueError(f"strip_rows must be even and positive (the CFA phase), got {strip_rows}")
    h, w = srgb.shape[:2]
    bayer = np.empty((h, w), dtype=np.uint16)
    for r0 in range(0, h, strip_rows):
        strip = Photo(srgb[r0:r0 + strip_rows]).to_float()
        part = RawImage.from_normalized(unprocess(strip, profile, wb_gains), profile, wb_gains, exif)
        bayer[r0:r0 + strip_rows] = part.bayer
    return dataclasses.replace(part, bayer=bayer)


def process(mosaic_img: np.ndarray, cfa: str, wb_gains: np.ndarray, cam2rgb: np.ndarray,
            demosaic: str = "bilinear") -> np.ndarray:
    """HxW normalised mosaic -> HxWx3 sRGB in [0, 1] (the analytic forward ISP)."""
    if demosaic == "malvar":
        rgb = ops.demosaic_malvar(mosaic_img, cfa)
    else:
        rgb = ops.demosaic_bilinear(mosaic_img, cfa)
    rgb *= np.asarray(ops.libraw_gains(wb_gains), dtype=np.float32).reshape(1, 1, 3)  # in place: a 12 MP
    np.clip(rgb, 0.0, 1.0, out=rgb)  # rendering back holds one HxWx3 buffer, not three
    return ops.linear_to_srgb(ops.apply_ccm(rgb, cam2rgb))
