"""The one DNG writer (tifffile): a CFA DNG that LibRaw and raw editors open."""
from __future__ import annotations

import math
import os
import re

import numpy as np

from rawedge import __version__
from rawedge.io.atomic import atomic_output
from rawedge.io.exif import (
    TAG_EXPOSURE_TIME,
    TAG_F_NUMBER,
    TAG_FOCAL_LENGTH,
    TAG_ISO,
    TAG_LIGHT_SOURCE,
    TAG_MAKE,
    TAG_MODEL,
    TAG_ORIENTATION,
    light_source_code,
    rational,
)
from rawedge.types import SRGB_TO_XYZ, RawImage

_CFA_CODES = {"R": 0, "G": 1, "B": 2}
# The XYZ->camera matrix written when the source camera had none: the one that makes LibRaw's
# rgb_cam the identity (camera RGB == linear sRGB), i.e. exactly how LibRaw treated the source file.
_IDENTITY_XYZ_TO_CAM = np.linalg.inv(SRGB_TO_XYZ)


def _srational(values, denominator: int = 10000) -> tuple[int, ...]:
    out: list[int] = []
    for v in np.asarray(values, dtype=np.float64).flatten():
        out += [int(round(v * denominator)), denominator]
    return tuple(out)


def _rationals(values) -> tuple[int, ...]:
    out: list[int] = []
    for v in np.asarray(values, dtype=np.float64).flatten():
        out += list(rational(float(v)))
    return tuple(out)


def _ascii(text) -> str:
    """TIFF ASCII tags hold 7-bit text without NUL: other characters (EXIF of any origin) become '?'."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in str(text).replace("\x00", "")).strip()


# The EXIF date rawedge keeps (rawedge.io.exif), written back in the TIFF form "YYYY:MM:DD HH:MM:SS".
_DATE = re.compile(r"(\d{4})[-:](\d{2})[-:](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")


def _tiff_date(text: str | None) -> str | None:
    match = _DATE.match(text or "")
    return "{}:{}:{} {}:{}:{}".format(*match.groups()) if match else None


def dng_tags(raw: RawImage) -> list[tuple]:
    """tifffile ``extratags`` for ``raw`` (code, dtype, count, value, writeonce)."""
    exif = raw.exif
    make = _ascii(exif.make or raw.profile.make or "") or "rawedge"
    model = _ascii(exif.model or raw.profile.model or raw.profile.name or "") or "unknown"
    matrix = raw.profile.color_matrix if raw.profile.color_matrix is not None else _IDENTITY_XYZ_TO_CAM
    cfa = bytes(_CFA_CODES[c] for c in raw.cfa)
    tags = [
        (TAG_MAKE, "s", 0, make, True),
        (TAG_MODEL, "s", 0, model, True),
        (TAG_ORIENTATION, "H", 1, int(exif.orientation) if exif.orientation in range(1, 9) else 1, True),
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, cfa, True),  # CFAPattern
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, f"{make} {model}" if not model.startswith(make) else model, True),  # UniqueCameraModel
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (2, 2), True),  # BlackLevelRepeatDim
        (50714, "2I", 4, _rationals(raw.black_level), True),  # BlackLevel (RATIONAL)
        (50717, "I", 1, int(round(raw.white_level)), True),  # WhiteLevel
        (50721, "2i", 9, _srational(matrix), True),  # ColorMatrix1
        (50778, "H", 1, int(raw.profile.calibration_illuminant), True),  # CalibrationIlluminant1
        (50728, "2I", 3, _rationals(raw.as_shot_neutral), True),  # AsShotNeutral
        (50718, "2I", 2, _rationals([raw.profile.pixel_aspect, 1.0]) if raw.profile.pixel_aspect >= 1
         else _rationals([1.0, 1.0 / raw.profile.pixel_aspect]), True),  # DefaultScale (non-square pixels)
    ]
    stamp = _tiff_date(exif.datetime)  # a malformed date is left out, not passed on
    if stamp:
        tags.append((306, "s", 0, stamp, True))  # DateTime
        tags.append((36867, "s", 0, stamp, True))  # DateTimeOriginal
    for tag, value, max_denominator in ((TAG_EXPOSURE_TIME, exif.exposure_time, 1_000_000),
                                        (TAG_F_NUMBER, exif.f_number, 1000), (TAG_FOCAL_LENGTH, exif.focal_length, 1000)):
        pair = _exif_rational(value, max_denominator)
        if pair:
            tags.append((tag, "2I", 1, pair, True))
    if _exif_rational(exif.iso, 1):
        tags.append((TAG_ISO, "H", 1, int(min(max(round(exif.iso), 1), 65535)), True))
    if light_source_code(exif.light_source):
        tags.append((TAG_LIGHT_SOURCE, "H", 1, light_source_code(exif.light_source), True))
    return tags


def _exif_rational(value, max_denominator: int) -> tuple[int, int] | None:
    """An EXIF value as an unsigned RATIONAL, or None when it is missing, not positive, or too large."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(x) and 0 < x < 2**32 - 1):
        return None
    num, den = rational(x, max_denominator)
    return (num, den) if 0 < num < 2**32 and 0 < den < 2**32 else None


def check_raw_image(raw: RawImage, path=None) -> None:
    """Refuse, with one line, a RawImage no DNG can describe (the embedding API accepts any values)."""
    from rawedge.errors import RawedgeError
    from rawedge.types import BAYER_PATTERNS

    bayer = np.asarray(raw.bayer)
    problems = []
    if bayer.ndim != 2 or min(bayer.shape) < 2:
        problems.append(f"the mosaic must be 2-D and at least 2x2, not {bayer.shape}")
    elif bayer.dtype.kind not in "ui" or (bayer.size and (bayer.min() < 0 or bayer.max() > 65535)):
        problems.append(f"the mosaic must hold 16-bit sensor values, not {bayer.dtype}")
    if raw.cfa not in BAYER_PATTERNS:
        problems.append(f"unknown CFA {raw.cfa!r}")
    neutral = np.asarray(raw.as_shot_neutral, dtype=np.float64).reshape(-1)
    if neutral.shape != (3,) or not np.all(np.isfinite(neutral)) or np.any(neutral <= 0):
        problems.append("as_shot_neutral must be 3 positive numbers")
    black = np.asarray(raw.black_level, dtype=np.float64).reshape(-1)
    if black.shape != (4,) or not np.all(np.isfinite(black)) or np.any(black < 0) or \
            not (np.max(black) < float(raw.white_level) <= 65535):
        problems.append("levels must be 4 black levels >= 0 below a white level <= 65535")
    if problems:
        raise RawedgeError(path, f"cannot write a DNG: {'; '.join(problems)}")


def write_dng(path: str | os.PathLike, raw: RawImage) -> None:
    """Write ``raw`` as an uncompressed CFA DNG at ``path`` (atomically: no partial file on failure)."""
    import tifffile

    check_raw_image(raw, path)
    bayer = np.ascontiguousarray(raw.bayer, dtype=np.uint16)
    with atomic_output(path, suffix=".dng") as tmp:
        with tifffile.TiffWriter(tmp) as tif:
            tif.write(
                bayer,
                photometric=32803,  # CFA
                subfiletype=0,
                software=f"rawedge {__version__}",
                extratags=dng_tags(raw),
                metadata=None,
            )
