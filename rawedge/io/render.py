"""Render a RAW file to sRGB with LibRaw (rawpy): how users and tests make sRGB/RAW pairs."""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from rawedge.errors import RawedgeError


@dataclass
class RenderSettings:
    """LibRaw settings of one rendering. The defaults are the plain, invertible pipeline."""

    wb_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)  # multiplies the as-shot gains
    bright: float = 1.0
    gamma: tuple[float, float] = (2.4, 12.92)  # sRGB-like; (2.222, 4.5) is BT.709
    demosaic: str = "AHD"
    output_bps: int = 8

    def to_dict(self) -> dict:
        return {"wb_scale": list(self.wb_scale), "bright": self.bright, "gamma": list(self.gamma),
                "demosaic": self.demosaic, "output_bps": self.output_bps}


def render_raw(path: str | os.PathLike, settings: RenderSettings | None = None,
               wb_gains: np.ndarray | None = None) -> np.ndarray:
    """HxWx3 sRGB (uint8 or uint16) aligned pixel-for-pixel with the RAW's visible mosaic.

    Orientation is not applied (it stays in EXIF) and non-square pixels are not stretched, so the
    rendering lines up with the Bayer data.
    """
    import rawpy

    from rawedge.io.raw import read_raw

    settings = settings or RenderSettings()
    raw_image = read_raw(path)
    gains = np.asarray(wb_gains if wb_gains is not None else raw_image.wb_gains(), dtype=np.float64)
    gains = gains * np.asarray(settings.wb_scale)
    try:
        with open(path, "rb") as fh, rawpy.imread(io.BytesIO(fh.read())) as raw:
            rgb = raw.postprocess(
                demosaic_algorithm=getattr(rawpy.DemosaicAlgorithm, settings.demosaic),
                user_wb=[float(gains[0]), float(gains[1]), float(gains[2]), float(gains[1])],
                no_auto_bright=True, bright=float(settings.bright), gamma=tuple(settings.gamma),
                output_bps=int(settings.output_bps), output_color=rawpy.ColorSpace.sRGB, user_flip=0,
                adjust_maximum_thr=0.0, highlight_mode=rawpy.HighlightMode.Clip,
            )
    except Exception as exc:
        raise RawedgeError(path, f"LibRaw could not render this file ({type(exc).__name__})") from None
    h, w = raw_image.bayer.shape
    if rgb.shape[:2] != (h, w):  # LibRaw stretched non-square pixels: undo to keep the pair aligned
        from PIL import Image

        chans = [np.asarray(Image.fromarray(rgb[..., c]).resize((w, h), Image.LANCZOS)) for c in range(3)]
        rgb = np.stack(chans, axis=-1).astype(rgb.dtype)
    return rgb
