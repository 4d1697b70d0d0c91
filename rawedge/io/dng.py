"""The one DNG writer (tifffile): a CFA DNG that Adobe's DNG SDK, LibRaw and raw editors open.

Layout (DNG 1.4, the standard one): IFD0 is an sRGB thumbnail (NewSubFileType 1, about 256 px) that
carries the camera-wide tags (Make/Model, UniqueCameraModel, colour matrix, as-shot neutral,
BaselineExposure, Orientation, the EXIF IFD); its one SubIFD is the CFA mosaic (NewSubFileType 0),
padded by ``CROP_MARGIN`` pixels per side and cropped back to the photo's size by DefaultCrop,
uncompressed (see UNCOMPRESSED_WHY). Only one SubIFD: tifffile before 2026.5.2 chains two
or more SubIFDs wrongly.
"""
from __future__ import annotations

import math
import os
import re
import struct

import numpy as np

from rawedge import __version__
from rawedge.io.atomic import atomic_output
from rawedge.io.exif import (
    EXIF_IFD_POINTER,
    TAG_DATETIME,
    TAG_DATETIME_ORIGINAL,
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

# Pixels of mosaic added on each side (edge reflection, an even count so the CFA phase is unchanged) and
# cropped back by DefaultCropOrigin/Size: Adobe's demosaic wants a few pixels beyond the visible area
# ("Too little padding on ... edge of CFA image" otherwise).
CROP_MARGIN = 8
# Longest side of the sRGB thumbnail in IFD0.
THUMBNAIL_SIZE = 256
# BaselineExposure (EV). Adobe's default rendering of a DNG (dng_validate -tif, Camera Raw at its
# defaults) is not LibRaw's/rawedge's "WB, matrix, sRGB curve": its default tone curve and exposure make
# it brighter than the photo the mosaic was made from. Measured with the SDK's dng_validate -tif
# (1.7.1) on 7 photos (samples/boxes_s40.jpg, Kodak kodim01/03/05/07/12/23) through the analytic
# reverse ISP with the generic and the Canon S40 profiles, mean of Adobe's 8-bit rendering minus the
# photo's: +30.1 levels at 0 EV, +10.6 at -0.5, +5.0 at -0.65, +1.3 at -0.75 (per photo -5..+16,
# bright scenes most). LibRaw ignores the tag.
BASELINE_EXPOSURE = -0.75
# Below this many levels between black and white, Adobe's SDK 1.7.1 overflows ("Overflow in
# Round_int32") when the black level is a 2x2 pattern (its fixed-point scale 65535 / range * 2^24
# passes 2^31 below 512): such mosaics are rescaled per CFA position to 16 bits (see _levels).
_SDK_MIN_RANGE_FOR_2X2_BLACK = 512

# Why the mosaic is stored uncompressed (measured 2026, DNG SDK 1.7.1, LibRaw 0.22, tifffile 2026.3.3):
# Deflate (Compression 8, with or without a predictor) on 16-bit CFA data is refused by the SDK
# ("*** Error: ZIP compression is limited to floating point, 32-bit integer, ... maps") and LibRaw
# cannot decode it (LibRawDataError). Lossless JPEG, the DNG codec for integer CFA data, needs imagecodecs
# (tifffile compression="jpeg", compressionargs={"lossless": True}, bitspersample=16; imagecodecs
# 2026.3.6): the SDK accepts it and it saves about a third, but LibRaw 0.22 fails on 14-bit data
# (white 16383: "data corrupted") and, tiled, on odd sizes, so it is not offered (README "Formats").
UNCOMPRESSED_WHY = ("Deflate CFA DNGs are invalid for Adobe's SDK and LibRaw; lossless JPEG (imagecodecs) "
                    "is not decoded by LibRaw 0.22 for 14-bit mosaics")


def _srational(values, denominator: int = 10000) -> tuple[int, ...]:
    out: list[int] = []
    for v in np.asarray(values, dtype=np.float64).flatten():
        out += [round(v * denominator), denominator]
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


def camera_identity(raw: RawImage) -> tuple[str, str, str]:
    """(Make, Model, UniqueCameraModel). Make/Model are the photo's EXIF (what took the picture);
    UniqueCameraModel names the camera whose colour data (matrix, levels, CFA) the DNG carries: the
    profile's camera, or "rawedge <profile> (<photo's camera>)" for a profile without a real camera
    (the generic one), so that no raw editor takes it for that camera's own calibrated DNG."""
    exif, profile = raw.exif, raw.profile
    make = _ascii(exif.make or profile.make or "") or "rawedge"
    model = _ascii(exif.model or profile.model or profile.name or "") or "unknown"
    if profile.make and profile.model:
        p_make, p_model = _ascii(profile.make), _ascii(profile.model)
        unique = p_model if p_model.lower().startswith(p_make.lower()) else f"{p_make} {p_model}"
    else:
        photo = " ".join(_ascii(v) for v in (exif.make, exif.model) if v and _ascii(v))
        unique = f"rawedge {_ascii(profile.name) or 'profile'}" + (f" ({photo})" if photo else "")
    return make, model, unique or "rawedge"


def rescaled_levels(raw: RawImage) -> bool:
    """True when the DNG stores the mosaic rescaled to 16 bits (black 0, white 65535): different black
    levels per CFA position with white - black below 512 levels (see _levels). Such a file reads back
    with those levels and ``normalized()`` equal within 1e-5; the raw numbers differ."""
    black = np.asarray(raw.black_level, dtype=np.float64).reshape(-1)
    return bool(np.any(black != black[0])) and \
        float(raw.white_level) - float(black.max()) < _SDK_MIN_RANGE_FOR_2X2_BLACK


def _levels(raw: RawImage, bayer: np.ndarray) -> tuple[np.ndarray, list[float], int, float]:
    """(mosaic, BlackLevel values, repeat (1 or 2), WhiteLevel). Equal blacks -> one BlackLevel.
    Different blacks -> a 2x2 pattern, except below 512 levels between black and white, where Adobe's
    SDK overflows on a 2x2 pattern: there each CFA position is rescaled on its own to black 0, white
    65535, (v - black) * 65535 / (white - black). Every source level keeps its own 16-bit value (steps of
    at least 128), so nothing is lost and every reader sees the same normalised signal."""
    black = np.asarray(raw.black_level, dtype=np.float64).reshape(-1)
    white = float(raw.white_level)
    if np.all(black == black[0]):
        return bayer, [float(black[0])], 1, white
    if not rescaled_levels(raw):
        return bayer, black.tolist(), 2, white
    out = np.empty(bayer.shape, dtype=np.uint16)
    for i, b in enumerate(black):
        dy, dx = divmod(i, 2)
        scaled = (bayer[dy::2, dx::2].astype(np.float64) - b) * (65535.0 / (white - b))
        out[dy::2, dx::2] = np.round(np.clip(scaled, 0.0, 65535.0)).astype(np.uint16)
    return out, [0.0], 1, 65535.0


def dng_tags(raw: RawImage) -> list[tuple]:
    """IFD0 (camera-wide) tifffile ``extratags`` for ``raw`` (code, dtype, count, value, writeonce).
    The raw IFD's own tags are :func:`raw_ifd_tags`; EXIF values go to the EXIF IFD (:func:`exif_entries`)."""
    exif = raw.exif
    make, model, unique = camera_identity(raw)
    matrix = raw.profile.color_matrix if raw.profile.color_matrix is not None else _IDENTITY_XYZ_TO_CAM
    tags = [
        (TAG_MAKE, "s", 0, make, True),
        (TAG_MODEL, "s", 0, model, True),
        (TAG_ORIENTATION, "H", 1, int(exif.orientation) if exif.orientation in range(1, 9) else 1, True),
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, unique, True),  # UniqueCameraModel: the camera of the colour data
        (50721, "2i", 9, _srational(matrix), True),  # ColorMatrix1
        (50778, "H", 1, int(raw.profile.calibration_illuminant), True),  # CalibrationIlluminant1
        (50728, "2I", 3, _rationals(raw.as_shot_neutral), True),  # AsShotNeutral
        (50730, "2i", 1, _srational([BASELINE_EXPOSURE], 100), True),  # BaselineExposure
        (50936, "s", 0, _ascii(f"rawedge {raw.profile.name}") or "rawedge", True),  # ProfileName
    ]
    stamp = _tiff_date(exif.datetime)  # a malformed date is left out, not passed on
    if stamp:
        tags.append((TAG_DATETIME, "s", 0, stamp, True))
    return tags


def raw_ifd_tags(raw: RawImage, shape: tuple[int, int], repeat: int, black: list[float],
                 white: float) -> list[tuple]:
    """Tags of the raw (CFA) IFD; ``shape`` is the unpadded mosaic's (height, width)."""
    h, w = shape
    aspect = float(raw.profile.pixel_aspect)
    return [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, bytes(_CFA_CODES[c] for c in raw.cfa), True),  # CFAPattern (unchanged by the even pad)
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50713, "H", 2, (repeat, repeat), True),  # BlackLevelRepeatDim
        (50714, "2I", len(black), _rationals(black), True),  # BlackLevel (RATIONAL)
        (50717, "I", 1, round(float(white)), True),  # WhiteLevel
        (50718, "2I", 2, _rationals([aspect, 1.0]) if aspect >= 1
         else _rationals([1.0, 1.0 / aspect]), True),  # DefaultScale (non-square pixels)
        (50719, "I", 2, (CROP_MARGIN, CROP_MARGIN), True),  # DefaultCropOrigin
        (50720, "I", 2, (w, h), True),  # DefaultCropSize: the photo's size
    ]


def exif_entries(raw: RawImage) -> list[tuple[int, int, int, bytes]]:
    """EXIF IFD entries (tag, TIFF type, count, little-endian value bytes), sorted by tag."""
    exif = raw.exif
    entries = [(36864, 7, 4, b"0231")]  # ExifVersion
    for tag, value, max_denominator in ((TAG_EXPOSURE_TIME, exif.exposure_time, 1_000_000),
                                        (TAG_F_NUMBER, exif.f_number, 1000), (TAG_FOCAL_LENGTH, exif.focal_length, 1000)):
        pair = _exif_rational(value, max_denominator)
        if pair:
            entries.append((tag, 5, 1, struct.pack("<II", *pair)))
    if _exif_rational(exif.iso, 1):
        entries.append((TAG_ISO, 3, 1, struct.pack("<H", int(min(max(round(exif.iso), 1), 65535)))))
    stamp = _tiff_date(exif.datetime)
    if stamp:
        entries.append((TAG_DATETIME_ORIGINAL, 2, 20, stamp.encode("ascii") + b"\x00"))
    if light_source_code(exif.light_source):
        entries.append((TAG_LIGHT_SOURCE, 3, 1, struct.pack("<H", light_source_code(exif.light_source))))
    return sorted(entries)


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


# tifffile will not write tag 34665 (ExifIFD) itself: IFD0 gets this unused tag number instead (next to
# 34665, so the entries stay sorted) and _append_exif_ifd turns it into the ExifIFD pointer.
_EXIF_PLACEHOLDER = EXIF_IFD_POINTER - 1


def _append_exif_ifd(path, entries) -> None:
    """Append the EXIF IFD to the classic little-endian TIFF at ``path`` and turn IFD0's placeholder
    entry into the ExifIFD pointer to it."""
    with open(path, "r+b") as fh:
        head = fh.read(8)
        if head[:4] != b"II*\x00":
            raise ValueError("expected a classic little-endian TIFF")
        ifd0 = struct.unpack("<I", head[4:8])[0]
        fh.seek(ifd0)
        (count,) = struct.unpack("<H", fh.read(2))
        table = fh.read(12 * count)
        slot = None
        for i in range(count):
            tag, typ = struct.unpack("<HH", table[12 * i:12 * i + 4])
            if tag == _EXIF_PLACEHOLDER:
                slot = ifd0 + 2 + 12 * i
            elif tag == 330 and typ == 13:  # SubIFDs: tifffile writes type IFD, readers expect LONG
                fh.seek(ifd0 + 2 + 12 * i + 2)
                fh.write(struct.pack("<H", 4))
        if slot is None:
            raise ValueError("IFD0 has no ExifIFD entry")
        fh.seek(0, os.SEEK_END)
        start = fh.tell()
        start += start % 2
        data_at = start + 2 + 12 * len(entries) + 4
        body, extra = bytearray(struct.pack("<H", len(entries))), bytearray()
        for tag, typ, count, value in entries:
            if len(value) <= 4:
                body += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\x00")
            else:
                body += struct.pack("<HHII", tag, typ, count, data_at + len(extra))
                extra += value + (b"\x00" if len(value) % 2 else b"")
        body += struct.pack("<I", 0)
        fh.seek(start)
        fh.write(body + extra)
        fh.seek(slot)
        fh.write(struct.pack("<HHII", EXIF_IFD_POINTER, 4, 1, start))


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


def _preview_rgb8(preview, path) -> np.ndarray:
    from rawedge.errors import RawedgeError

    arr = np.asarray(preview)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype not in (np.uint8, np.uint16) or min(arr.shape[:2]) < 1:
        raise RawedgeError(path, f"cannot write a DNG: the preview must be HxWx3 uint8, not {arr.shape} {arr.dtype}")
    return arr if arr.dtype == np.uint8 else (arr >> 8).astype(np.uint8)


def _mosaic_preview(raw: RawImage) -> np.ndarray:
    """HxWx3 uint8 sRGB of the mosaic through rawedge's forward ISP (rawedge.isp.pipeline.process), on a
    mosaic binned by k x k CFA cells (same CFA phase) so that it costs little for any photo size."""
    from rawedge.isp.pipeline import process

    mosaic = raw.normalized()
    h, w = mosaic.shape
    k = max(1, min(max(h, w) // (2 * THUMBNAIL_SIZE), h // 2, w // 2))
    hh, ww = (h // (2 * k)) * 2 * k, (w // (2 * k)) * 2 * k
    binned = mosaic[:hh, :ww].reshape(hh // (2 * k), k, 2, ww // (2 * k), k, 2).mean(axis=(1, 4))
    binned = binned.reshape(hh // k, ww // k)
    rgb = process(binned, raw.cfa, raw.wb_gains(), raw.profile.cam2rgb())
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def thumbnail(raw: RawImage, preview=None, path=None) -> np.ndarray:
    """The IFD0 thumbnail: ``preview`` (the photo, HxWx3) or the mosaic's own rendering, scaled so its
    longest side is at most THUMBNAIL_SIZE, with the DNG's final aspect ratio (DefaultScale included).
    Stored like the mosaic, not rotated: Orientation applies to both."""
    from PIL import Image

    rgb = _preview_rgb8(preview, path) if preview is not None else _mosaic_preview(raw)
    h, w = raw.bayer.shape
    aspect = float(raw.profile.pixel_aspect)
    fw, fh = (w * aspect, h) if aspect >= 1 else (w, h / aspect)
    scale = min(1.0, THUMBNAIL_SIZE / max(fw, fh))
    size = (max(1, round(fw * scale)), max(1, round(fh * scale)))
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if image.size != size:
        image = image.resize(size, Image.Resampling.BOX if image.width >= size[0] else Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def linear_tone_curve_tags(tags: list[tuple]) -> list[tuple]:
    """``tags`` (from :func:`dng_tags`) with Adobe's default look switched off: an identity
    ProfileToneCurve and BaselineExposure 0. Used by ``make interop`` to measure the DNG's colour data
    (matrix, neutral, illuminant) in Adobe's rendering without Adobe's default tone curve, which boosts
    saturated colours (README "Formats")."""
    return [t for t in tags if t[0] != 50730] + [
        (50730, "2i", 1, (0, 100), True),  # BaselineExposure 0
        (50940, "f", 4, (0.0, 0.0, 1.0, 1.0), True),  # ProfileToneCurve: identity
    ]


def write_dng(path: str | os.PathLike, raw: RawImage, preview: np.ndarray | None = None, *,
              linear_tone_curve: bool = False) -> None:
    """Write ``raw`` as a CFA DNG at ``path`` (atomically: no partial file on failure).

    ``preview``: the photo the mosaic was made from (HxWx3 uint8 sRGB, as stored, not rotated), for the
    thumbnail; without it the thumbnail is rendered from the mosaic. The mosaic is uncompressed: see
    UNCOMPRESSED_WHY. ``linear_tone_curve``: see :func:`linear_tone_curve_tags` (for measurements)."""
    import tifffile

    check_raw_image(raw, path)
    thumb = thumbnail(raw, preview, path)
    bayer, black, repeat, white = _levels(raw, np.ascontiguousarray(raw.bayer, dtype=np.uint16))
    # Edge reflection ("reflect", not "symmetric") maps row -d to row d: same parity, so with an even
    # margin every padded pixel keeps its CFA colour and the pattern at the origin is unchanged.
    padded = np.pad(bayer, CROP_MARGIN, mode="reflect")
    exif = exif_entries(raw)
    with atomic_output(path, suffix=".dng") as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=False, byteorder="<") as tif:
            tif.write(thumb, photometric="rgb", planarconfig="contig", subfiletype=1, subifds=1,
                      software=f"rawedge {__version__}", metadata=None,
                      extratags=(linear_tone_curve_tags(dng_tags(raw)) if linear_tone_curve else dng_tags(raw))
                      + [(_EXIF_PLACEHOLDER, "I", 1, 0, True)])
            tif.write(padded, photometric=32803, subfiletype=0, metadata=None,  # 32803: CFA
                      extratags=raw_ifd_tags(raw, bayer.shape, repeat, black, white))
        _append_exif_ifd(tmp, exif)
