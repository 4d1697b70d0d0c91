"""RAW files in, through rawpy (LibRaw): visible Bayer area, CFA phase, levels, white balance, matrix, EXIF."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.io.exif import ciff_make_model, exif_from_rawpy, exif_from_tifffile_page
from rawedge.types import BAYER_PATTERNS, CameraProfile, Exif, RawImage, fit_wb_prior


def _cfa_string(raw) -> str:
    desc = raw.color_desc.decode("ascii", "replace")
    pattern = np.asarray(raw.raw_pattern)
    if pattern.shape != (2, 2):
        raise ValueError(f"CFA repeat {pattern.shape} is not a 2x2 Bayer pattern")
    cfa = "".join(desc[int(i)] for i in pattern.flatten())
    if cfa not in BAYER_PATTERNS:
        raise ValueError(f"CFA pattern {cfa!r} is not a Bayer pattern")
    return cfa


def _make_model(path: Path, raw_bytes_head: bytes) -> tuple[str | None, str | None]:
    make, model = ciff_make_model(raw_bytes_head)
    if make:
        return make, model
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            e = exif_from_tifffile_page(page)
            return e.make, e.model
    except Exception:
        return None, None


def _exif_tiff(path: Path) -> Exif | None:
    """EXIF of TIFF-based RAWs (DNG and most others), richer than LibRaw's (orientation, make, model)."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return exif_from_tifffile_page(tif.pages[0])
    except Exception:
        return None


def read_raw(path: str | os.PathLike) -> RawImage:
    """Read a camera RAW (or DNG) file. Unknown colour matrix -> ``profile.color_matrix is None``."""
    import rawpy

    path = Path(path)
    if not path.is_file():
        raise RawedgeError(path, "no such file")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise RawedgeError(path, f"cannot read: {exc.strerror}") from None
    try:
        raw = rawpy.RawPy()
        raw.open_buffer(io.BytesIO(data))
        raw.unpack()
    except Exception as exc:  # LibRaw's errors: unsupported format, truncated data, ...
        reason = type(exc).__name__.replace("LibRawFileUnsupportedError", "unsupported or not a RAW file")
        raise RawedgeError(path, f"cannot decode as RAW ({reason})") from None
    try:
        return _to_raw_image(raw, path, data)
    except ValueError as exc:
        raise RawedgeError(path, str(exc)) from None
    finally:
        raw.close()


def _to_raw_image(raw, path: Path, data: bytes) -> RawImage:
    if raw.num_colors != 3 and raw.num_colors != 4:
        raise ValueError(f"{raw.num_colors}-colour sensor is not supported")
    cfa = _cfa_string(raw)
    bayer = np.array(raw.raw_image_visible, dtype=np.uint16, copy=True)
    if bayer.ndim != 2 or min(bayer.shape) < 2:
        raise ValueError("no Bayer mosaic in this file (linear or tiny RAW)")
    pattern = np.asarray(raw.raw_pattern)
    per_channel = np.asarray(raw.black_level_per_channel, dtype=np.float64)
    black = np.array([per_channel[int(c)] for c in pattern.flatten()], dtype=np.float64)
    white = float(raw.white_level)

    make, model = _make_model(path, data)
    tiff_exif = _exif_tiff(path)
    if tiff_exif and tiff_exif.make:
        make, model = tiff_exif.make, tiff_exif.model
    exif = exif_from_rawpy(raw, make, model)
    if tiff_exif:  # TIFF tags are exact where LibRaw rounds or drops (ISO, orientation, date in DNG)
        for key, value in tiff_exif.to_dict().items():
            if value is not None and (key in ("orientation", "datetime", "iso") or getattr(exif, key) is None):
                setattr(exif, key, value)

    xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3, :3]
    color_matrix = xyz_to_cam.tolist() if np.any(xyz_to_cam) and abs(np.linalg.det(xyz_to_cam)) > 1e-9 else None

    gains = _as_shot_gains(raw)
    neutral = gains[1] / gains
    name = model or make or "unknown"
    profile = CameraProfile(
        name=name, cfa=cfa, black_level=black.tolist(), white_level=white, color_matrix=color_matrix,
        make=make, model=model, pixel_aspect=float(raw.sizes.pixel_aspect or 1.0),
    )
    fit_wb_prior(profile, [gains])
    return RawImage(bayer=bayer, cfa=cfa, black_level=black, white_level=white, as_shot_neutral=neutral,
                    profile=profile, exif=exif, source=str(path))


def _as_shot_gains(raw) -> np.ndarray:
    """[R, G, B] as-shot multipliers (G = 1). Invalid camera values fall back to LibRaw's daylight ones."""
    for candidate in (raw.camera_whitebalance, raw.daylight_whitebalance):
        c = np.asarray(candidate[:3], dtype=np.float64)
        if np.all(np.isfinite(c)) and np.all(c > 0):
            return c / c[1]
    return np.ones(3)


def read_embedded_jpeg(path: str | os.PathLike) -> bytes | None:
    """The camera's own JPEG preview inside a RAW file, or None when it has none."""
    import rawpy

    try:
        with rawpy.imread(os.fspath(path)) as raw:
            thumb = raw.extract_thumb()
    except Exception:
        return None
    if thumb.format != rawpy.ThumbFormat.JPEG:
        return None
    return bytes(thumb.data)
