"""The one DNG writer (tifffile): a CFA DNG that LibRaw and raw editors open."""
from __future__ import annotations

import os

import numpy as np

from rawedge import __version__
from rawedge.io.atomic import atomic_output
from rawedge.io.exif import (
    TAG_EXPOSURE_TIME, TAG_F_NUMBER, TAG_FOCAL_LENGTH, TAG_ISO, TAG_MAKE, TAG_MODEL, TAG_ORIENTATION, rational,
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


def dng_tags(raw: RawImage) -> list[tuple]:
    """tifffile ``extratags`` for ``raw`` (code, dtype, count, value, writeonce)."""
    exif = raw.exif
    make = exif.make or raw.profile.make or "rawedge"
    model = exif.model or raw.profile.model or raw.profile.name
    matrix = raw.profile.color_matrix if raw.profile.color_matrix is not None else _IDENTITY_XYZ_TO_CAM
    cfa = bytes(_CFA_CODES[c] for c in raw.cfa)
    tags = [
        (TAG_MAKE, "s", 0, make, True),
        (TAG_MODEL, "s", 0, model, True),
        (TAG_ORIENTATION, "H", 1, int(exif.orientation or 1), True),
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
    if exif.datetime:
        stamp = exif.datetime.replace("-", ":").replace("T", " ")[:19]
        tags.append((306, "s", 0, stamp, True))  # DateTime
        tags.append((36867, "s", 0, stamp, True))  # DateTimeOriginal
    if exif.exposure_time:
        tags.append((TAG_EXPOSURE_TIME, "2I", 1, rational(exif.exposure_time), True))
    if exif.f_number:
        tags.append((TAG_F_NUMBER, "2I", 1, rational(exif.f_number, 1000), True))
    if exif.iso:
        tags.append((TAG_ISO, "H", 1, int(min(round(exif.iso), 65535)), True))
    if exif.focal_length:
        tags.append((TAG_FOCAL_LENGTH, "2I", 1, rational(exif.focal_length, 1000), True))
    return tags


def write_dng(path: str | os.PathLike, raw: RawImage) -> None:
    """Write ``raw`` as an uncompressed CFA DNG at ``path`` (atomically: no partial file on failure)."""
    import tifffile

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
