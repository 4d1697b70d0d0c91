"""RAW files in, through rawpy (LibRaw): visible Bayer area, CFA phase, levels, white balance, matrix, EXIF."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.io.exif import ciff_make_model, exif_from_rawpy, exif_from_tifffile_page, quiet_tifffile
from rawedge.types import (
    BAYER_PATTERNS,
    ILLUMINANT_D65,
    SRGB_TO_XYZ,
    CameraProfile,
    Exif,
    RawImage,
    fit_wb_prior,
)


def _cfa_string(raw) -> str:
    desc = raw.color_desc.decode("ascii", "replace")
    pattern = np.asarray(raw.raw_pattern)
    if pattern.shape != (2, 2):
        raise ValueError(f"CFA repeat {pattern.shape} is not a 2x2 Bayer pattern")
    cfa = "".join(desc[int(i)] for i in pattern.flatten())
    if cfa not in BAYER_PATTERNS:
        raise ValueError(f"CFA pattern {cfa!r} is not a Bayer pattern")
    return cfa


def _tiff_facts(path: Path) -> tuple[Exif | None, list | None, int | None]:
    """EXIF of TIFF-based RAWs (DNG and most others), richer than LibRaw's (orientation, make, model),
    a DNG's own XYZ->camera ColorMatrix (None when it has none) and the CalibrationIlluminant of the
    matrix rawedge uses (None when the file has no usable matrix or no illuminant tag)."""
    try:
        import tifffile

        with quiet_tifffile(), tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            matrix, illuminant = _dng_color_matrix(page)
            return exif_from_tifffile_page(page), matrix, illuminant
    except Exception:
        return None, None, None


# What rawedge's DNG writer stores for a camera without a known matrix (rawedge.io.dng): read as unknown.
_UNKNOWN_MATRIX_MARKER = np.linalg.inv(SRGB_TO_XYZ)


def _dng_color_matrix(page) -> tuple[list | None, int | None]:
    """(ColorMatrix1/2 of a DNG, its CalibrationIlluminant): the one calibrated for D65 when there are
    two. LibRaw reports a DNG's matrix only for cameras in its own table (and never the illuminant), so
    rawedge's DNGs of other cameras need this. (None, None) without a usable matrix; the illuminant is
    None when the matrix has no CalibrationIlluminant tag."""
    found = {}
    for matrix_tag, illuminant_tag in ((50721, 50778), (50722, 50779)):
        tag = page.tags.get(matrix_tag)
        if tag is None:
            continue
        pairs = np.asarray(tag.value, dtype=np.float64).reshape(-1)
        if pairs.size != 18 or np.any(pairs[1::2] == 0):
            continue
        illuminant = page.tags.get(illuminant_tag)
        try:
            code = int(illuminant.value) if illuminant is not None else None
        except (TypeError, ValueError):
            code = None
        if code is not None and not 0 <= code <= 65535:
            code = None
        found.setdefault(code, (pairs[0::2] / pairs[1::2]).reshape(3, 3))
    if not found:
        return None, None
    illuminant = ILLUMINANT_D65 if ILLUMINANT_D65 in found else next(iter(found))
    matrix = found[illuminant]
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-9:
        return None, None
    if np.allclose(matrix, _UNKNOWN_MATRIX_MARKER, atol=2e-4):
        return None, None
    return matrix.tolist(), illuminant


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
    except RawedgeError as exc:  # e.g. levels that make no valid camera profile
        raise RawedgeError(path, exc.problem) if exc.path is None else exc from None
    except MemoryError:
        raise
    except Exception as exc:  # rawpy's view of damaged headers (e.g. NotImplementedError for odd CFA filters)
        raise RawedgeError(path, f"cannot interpret this RAW file ({type(exc).__name__}: {exc})") from None
    finally:
        raw.close()


def read_profile(path: str | os.PathLike) -> CameraProfile:
    """Profile of the camera that took ``path`` (CFA, levels, matrix, a one-sample WB prior)."""
    return read_raw(path).profile


def _to_raw_image(raw, path: Path, data: bytes) -> RawImage:
    if raw.num_colors != 3 and raw.num_colors != 4:
        raise ValueError(f"{raw.num_colors}-colour sensor is not supported")
    cfa = _cfa_string(raw)
    bayer = np.asarray(raw.raw_image_visible)
    pattern = np.asarray(raw.raw_pattern)
    top, left, height, width = _dng_default_crop(raw, path, bayer.shape)
    if (top, left) != (0, 0) or (height, width) != bayer.shape:  # a DNG's crop margin (rawedge writes 8 px)
        bayer = bayer[top:top + height, left:left + width]
        pattern = np.roll(pattern, (-(top % 2), -(left % 2)), axis=(0, 1))
        desc = raw.color_desc.decode("ascii", "replace")
        cfa = "".join(desc[int(i)] for i in pattern.flatten())
    bayer = np.array(bayer, dtype=np.uint16, copy=True)
    if bayer.ndim != 2 or min(bayer.shape) < 2:
        raise ValueError("no Bayer mosaic in this file (linear or tiny RAW)")
    per_channel = np.asarray(raw.black_level_per_channel, dtype=np.float64)
    black = np.array([per_channel[int(c)] for c in pattern.flatten()], dtype=np.float64)
    white = float(raw.white_level)

    make, model = ciff_make_model(data)  # Canon CRW; TIFF-based RAWs name the camera in their tags
    tiff_exif, dng_matrix, dng_illuminant = _tiff_facts(path)
    if tiff_exif and (tiff_exif.make or not make):
        make, model = tiff_exif.make, tiff_exif.model
    exif = exif_from_rawpy(raw, make, model)
    if tiff_exif:  # TIFF tags are exact where LibRaw rounds or drops (ISO, orientation, date in DNG)
        for key, value in tiff_exif.to_dict().items():
            if value is not None and (key in ("orientation", "datetime", "iso") or getattr(exif, key) is None):
                setattr(exif, key, value)

    xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3, :3]
    color_matrix = xyz_to_cam.tolist() if np.any(xyz_to_cam) and abs(np.linalg.det(xyz_to_cam)) > 1e-9 else dng_matrix
    # The matrix's calibration illuminant: the DNG's tag when the file has one (LibRaw reports none; its
    # own table and other RAWs' matrices are D65), so that a DNG of a matrix calibrated under, e.g.,
    # illuminant A (17) reads back as such.
    illuminant = dng_illuminant if color_matrix is not None and dng_illuminant is not None else ILLUMINANT_D65

    gains = _as_shot_gains(raw)
    neutral = gains[1] / gains
    name = model or make or "unknown"
    profile = CameraProfile(
        name=name, cfa=cfa, black_level=black.tolist(), white_level=white, color_matrix=color_matrix,
        make=make, model=model, pixel_aspect=float(raw.sizes.pixel_aspect or 1.0),
        calibration_illuminant=int(illuminant),
    )
    fit_wb_prior(profile, [gains])
    return RawImage(bayer=bayer, cfa=cfa, black_level=black, white_level=white, as_shot_neutral=neutral,
                    profile=profile, exif=exif, source=str(path))


def _dng_default_crop(raw, path: Path, shape) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a DNG's DefaultCrop within LibRaw's visible area (the whole area for
    other RAWs and for crops LibRaw does not report or that do not fit)."""
    full = (0, 0, int(shape[0]), int(shape[1]))
    sizes = raw.sizes
    crop = tuple(int(getattr(sizes, k, 0) or 0)
                 for k in ("crop_top_margin", "crop_left_margin", "crop_height", "crop_width"))
    top, left, height, width = crop
    if height < 2 or width < 2 or top + height > shape[0] or left + width > shape[1] or crop == full:
        return full
    try:
        import tifffile

        with quiet_tifffile(), tifffile.TiffFile(path) as tif:
            is_dng = 50706 in tif.pages[0].tags  # DNGVersion
    except Exception:
        is_dng = False
    return crop if is_dng else full


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
