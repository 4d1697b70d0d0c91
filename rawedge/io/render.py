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
    auto_bright: bool = False  # LibRaw's histogram brightening (1 % of pixels to white), its default
    adjust_maximum_thr: float = 0.0  # LibRaw's data-driven white level (default 0.75); 0 = the file's

    @classmethod
    def libraw_default(cls) -> RenderSettings:
        """What LibRaw (``dcraw_emu -w``) does by default with the camera's white balance: automatic
        brightening, BT.709 curve, AHD, white level adjusted to the data. Not invertible analytically:
        the brightening depends on the image's histogram."""
        return cls(gamma=(2.222, 4.5), auto_bright=True, adjust_maximum_thr=0.75)

    def to_dict(self) -> dict:
        return {"wb_scale": list(self.wb_scale), "bright": self.bright, "gamma": list(self.gamma),
                "demosaic": self.demosaic, "output_bps": self.output_bps, "auto_bright": self.auto_bright,
                "adjust_maximum_thr": self.adjust_maximum_thr}


def render_raw(path: str | os.PathLike, settings: RenderSettings | None = None,
               wb_gains: np.ndarray | None = None) -> np.ndarray:
    """HxWx3 sRGB (uint8 or uint16) aligned pixel-for-pixel with the RAW's visible mosaic.

    Orientation is not applied (it stays in EXIF) and non-square pixels are not stretched, so the
    rendering lines up with the Bayer data.
    """
    import rawpy

    from rawedge.io.raw import _dng_default_crop, read_raw

    settings = settings or RenderSettings()
    raw_image = read_raw(path)
    gains = np.asarray(wb_gains if wb_gains is not None else raw_image.wb_gains(), dtype=np.float64)
    gains = gains * np.asarray(settings.wb_scale)
    try:
        with open(path, "rb") as fh, rawpy.imread(io.BytesIO(fh.read())) as raw:
            rgb = raw.postprocess(
                demosaic_algorithm=getattr(rawpy.DemosaicAlgorithm, settings.demosaic),
                user_wb=[float(gains[0]), float(gains[1]), float(gains[2]), float(gains[1])],
                no_auto_bright=not settings.auto_bright, bright=float(settings.bright), gamma=tuple(settings.gamma),
                output_bps=int(settings.output_bps), output_color=rawpy.ColorSpace.sRGB, user_flip=0,
                adjust_maximum_thr=float(settings.adjust_maximum_thr), highlight_mode=rawpy.HighlightMode.Clip,
            )
            full = raw.raw_image_visible.shape
            crop = _dng_default_crop(raw, path, full)  # LibRaw renders a DNG's crop margin too
    except Exception as exc:
        raise RawedgeError(path, f"LibRaw could not render this file ({type(exc).__name__})") from None
    h, w = crop[2:] if crop[2:] != full else raw_image.bayer.shape
    if crop[2:] != full and rgb.shape[:2] == full:  # square pixels: cut the margin at once
        return rgb[crop[0]:crop[0] + h, crop[1]:crop[1] + w]
    if rgb.shape[:2] != (h, w):  # LibRaw stretched non-square pixels: undo to keep the pair aligned
        from PIL import Image

        size = (full[1], full[0]) if crop[2:] != full else (w, h)
        chans = [np.asarray(Image.fromarray(rgb[..., c]).resize(size, Image.LANCZOS)) for c in range(3)]
        rgb = np.stack(chans, axis=-1).astype(rgb.dtype)
        if crop[2:] != full:
            rgb = rgb[crop[0]:crop[0] + h, crop[1]:crop[1] + w]
    return rgb
