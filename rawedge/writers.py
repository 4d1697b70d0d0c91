"""Writing one photo's results: the RAW (CFA DNG, linear TIFF or float mosaic), its confidence map and
its preview sheet. Every file is written atomically (rawedge.io.atomic), so a present output is complete."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rawedge.io.atomic import atomic_output


def write_linear_tiff(path, raw) -> None:
    """16-bit TIFF of the linear camera RGB: the mosaic normalised to [0,1] (black 0, white 65535),
    bilinear-demosaiced at full resolution, not white-balanced, in camera (not sRGB) primaries."""
    import tifffile

    from rawedge.isp.ops import demosaic_bilinear

    rgb = demosaic_bilinear(raw.normalized(), raw.cfa)
    data = np.round(np.clip(rgb, 0.0, 1.0) * 65535.0).astype(np.uint16)
    description = json.dumps({"rawedge": "linear camera RGB, bilinear demosaic, not white-balanced",
                              "cfa": raw.cfa, "wb_gains": np.round(raw.wb_gains(), 6).tolist(),
                              "camera_to_srgb": np.round(raw.profile.cam2rgb(), 6).tolist(),
                              "profile": raw.profile.name})
    with atomic_output(path, suffix=".tiff") as tmp:
        tifffile.imwrite(tmp, data, photometric="rgb", description=description, metadata=None)


def write_mosaic_npy(path, raw) -> None:
    """float32 HxW mosaic in [0,1] ((raw - black) / (white - black)), camera CFA phase at the origin."""
    with atomic_output(path, suffix=".npy") as tmp:
        np.save(tmp, raw.normalized())


def write_result(path: Path, raw, fmt: str, preview: np.ndarray | None = None) -> None:
    """The RAW as ``fmt`` (dng, tiff, npy); ``preview``: the input photo, for the DNG's thumbnail."""
    if fmt == "dng":
        from rawedge.io.dng import write_dng

        write_dng(path, raw, preview=preview)
    elif fmt == "tiff":
        write_linear_tiff(path, raw)
    else:
        write_mosaic_npy(path, raw)


def write_confidence(path: Path, sigma: np.ndarray) -> None:
    """16-bit grey PNG, one value per photosite: the predicted standard deviation of the RAW error in
    units of 1/65535 of the sensor range (white - black), so 0 is certain and 655 is 1 % of full scale."""
    from PIL import Image

    levels = np.round(np.clip(sigma, 0.0, 1.0) * 65535.0).astype(np.uint16)
    with atomic_output(path, suffix=".png") as tmp:
        Image.fromarray(levels).save(tmp, format="PNG")


def write_preview(path: Path, srgb: np.ndarray, back: np.ndarray, sigma: np.ndarray | None, step: int) -> None:
    """8-bit PNG of panels side by side, each subsampled by ``step``: the photo | the result rendered back
    (``back``, already subsampled) | the confidence map (white: uncertain, 5 % of full scale and more) when
    there is one | the absolute difference of the two, times 4."""
    from PIL import Image

    scale = np.float32(255.0 if srgb.dtype == np.uint8 else 65535.0)
    photo = srgb[::step, ::step].astype(np.float32) / scale
    panels = [photo, back]
    if sigma is not None:
        grey = np.clip(sigma[::step, ::step] / 0.05, 0.0, 1.0)
        panels.append(np.repeat(grey[..., None], 3, axis=2))
    panels.append(np.clip(np.abs(back - photo) * 4.0, 0.0, 1.0))
    sheet = np.concatenate(panels, axis=1)
    with atomic_output(path, suffix=".png") as tmp:
        Image.fromarray(np.round(sheet * 255.0).astype(np.uint8), "RGB").save(tmp, format="PNG")
