"""The one place EXIF is parsed and written (JPEG/PNG/TIFF via Pillow or tifffile tags, RAW via rawpy)."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import struct
import threading
from fractions import Fraction

from rawedge.types import Exif

# EXIF / TIFF tag numbers.
TAG_MAKE, TAG_MODEL, TAG_ORIENTATION, TAG_DATETIME = 271, 272, 274, 306
TAG_EXPOSURE_TIME, TAG_F_NUMBER, TAG_ISO, TAG_FOCAL_LENGTH = 33434, 33437, 34855, 37386
TAG_DATETIME_ORIGINAL = 36867
TAG_LIGHT_SOURCE = 37384
TAG_BRIGHTNESS, TAG_EXPOSURE_BIAS = 37379, 37380
# Values outside these ranges are not photographs' settings but damaged or invented tags: they are dropped
# (missing, as the model's training-time dropout) with a notice, never fed to a model.
PLAUSIBLE = {"exposure_time": ("exposure time", 1e-6, 3600.0, "s"), "iso": ("ISO", 1.0, 1e7, ""),
             "f_number": ("f-number", 0.5, 1000.0, ""), "focal_length": ("focal length", 0.5, 10000.0, " mm"),
             "exposure_bias": ("exposure bias", -10.0, 10.0, " EV"), "brightness_value": ("brightness value", -20.0,
                                                                                         30.0, " Bv")}
EXIF_IFD_POINTER = 0x8769


class _QuietInThread(logging.Filter):
    """Drops tifffile's log records in threads that are inside ``quiet_tifffile()``."""

    state = threading.local()

    def filter(self, record) -> bool:
        return not getattr(self.state, "depth", 0)


_QUIET = _QuietInThread()


@contextlib.contextmanager
def quiet_tifffile():
    """Silence tifffile's warnings about damaged tags while rawedge reads a file: rawedge reports what
    it cannot read itself, as one line, instead of a screenful of tag offsets."""
    logger = logging.getLogger("tifffile")
    if _QUIET not in logger.filters:
        logger.addFilter(_QUIET)
    _QUIET.state.depth = getattr(_QUIET.state, "depth", 0) + 1
    try:
        yield
    finally:
        _QUIET.state.depth -= 1


def _number(value) -> float | None:
    """A positive finite float from whatever a tag holds (rational, tuple, list), else None."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        if not value:
            return None
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            value = value[0] / value[1] if value[1] else None
        else:
            value = value[0]
        if value is None:
            return None
    try:
        x = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def _signed(value) -> float | None:
    """A finite float (of either sign) from a tag value, else None."""
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and all(isinstance(v, int) for v in value):
            value = value[0] / value[1] if value[1] else None
        elif value:
            value = value[0]
        else:
            value = None
    try:
        x = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return x if math.isfinite(x) else None


def plausible(name: str, value: float | None, notes: list[str]) -> float | None:
    """``value`` when it is a plausible EXIF ``name`` (see PLAUSIBLE), else None with a notice in ``notes``."""
    if value is None:
        return None
    label, low, high, unit = PLAUSIBLE[name]
    if low <= value <= high:
        return value
    notes.append(f"EXIF {label} {value:g}{unit} is implausible (outside {low:g}..{high:g}); treated as missing")
    return None


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    s = str(value).replace("\x00", "").strip()
    if len(s) >= 19 and s[4] == ":" and s[7] == ":" and s[10] == " ":  # EXIF date -> ISO date
        s = s[:4] + "-" + s[5:7] + "-" + s[8:]
    return s or None


def _orientation(value) -> int | None:
    try:
        v = int(value if not isinstance(value, (tuple, list)) else value[0])
    except (TypeError, ValueError, IndexError):
        return None
    return v if 1 <= v <= 8 else None


def light_source_code(value) -> int | None:
    """EXIF LightSource as an int code; 0 ("unknown") and anything malformed become None."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 255:
        return None
    return int(value)


def exif_from_tags(tags: dict[int, object]) -> Exif:
    """Exif from a flat {tag number: value} map (IFD0 and the EXIF IFD merged). Implausible numbers
    (negative exposure, ISO 0, exposure bias +-100...) are dropped, each with a notice in ``Exif.notes``."""
    notes: list[str] = []

    def checked(name, tag):
        return plausible(name, _signed(tags.get(tag)), notes)

    return Exif(
        exposure_time=checked("exposure_time", TAG_EXPOSURE_TIME),
        iso=checked("iso", TAG_ISO),
        f_number=checked("f_number", TAG_F_NUMBER),
        focal_length=checked("focal_length", TAG_FOCAL_LENGTH),
        exposure_bias=checked("exposure_bias", TAG_EXPOSURE_BIAS),
        brightness_value=checked("brightness_value", TAG_BRIGHTNESS),
        notes=notes,
        make=_text(tags.get(TAG_MAKE)),
        model=_text(tags.get(TAG_MODEL)),
        orientation=_orientation(tags.get(TAG_ORIENTATION)),
        datetime=_text(tags.get(TAG_DATETIME_ORIGINAL) or tags.get(TAG_DATETIME)),
        light_source=light_source_code(tags.get(TAG_LIGHT_SOURCE)),
    )


def exif_from_pillow(image) -> Exif:
    """Exif of an open Pillow image (JPEG, PNG eXIf, TIFF)."""
    try:
        raw = image.getexif()
        tags = dict(raw)
        tags.update(dict(raw.get_ifd(EXIF_IFD_POINTER)))
    except Exception:  # a corrupt EXIF block is no reason to refuse the pixels
        return Exif()
    return exif_from_tags(tags)


def exif_from_tifffile_page(page) -> Exif:
    """Exif of a tifffile page (TIFF input, DNG read-back)."""
    tags: dict[int, object] = {}
    for tag in page.tags.values():
        tags[tag.code] = tag.value
    exif_ifd = tags.get(EXIF_IFD_POINTER)
    if isinstance(exif_ifd, dict):
        from tifffile import TIFF

        for name, value in exif_ifd.items():
            code = TIFF.TAGS.get(name) if isinstance(name, str) else name
            if isinstance(code, int):
                tags.setdefault(code, value)
    return exif_from_tags(tags)


def exif_from_rawpy(raw, make: str | None, model: str | None) -> Exif:
    """Exif of a rawpy RawPy object; LibRaw reports 0 for unknown values, which become None."""
    other = raw.other
    return Exif(
        exposure_time=_number(other.shutter_speed),
        iso=_number(other.iso_speed),
        f_number=_number(other.aperture),
        focal_length=_number(other.focal_length),
        make=make,
        model=model,
        orientation=_flip_to_orientation(raw.sizes.flip),
        datetime=_timestamp(other.timestamp),
    )


def _timestamp(stamp) -> str | None:
    """LibRaw's capture time, None when it has none (it reports the Unix epoch, 1970-01-01 00:00)."""
    if not stamp:
        return None
    try:
        if stamp.replace(tzinfo=dt.timezone.utc).timestamp() <= 0:
            return None
        return stamp.isoformat(sep=" ")
    except (AttributeError, ValueError, OverflowError, OSError):
        return None


def _flip_to_orientation(flip: int) -> int:
    """LibRaw's ``flip`` (0, 3, 5, 6) to the EXIF Orientation code."""
    return {0: 1, 3: 3, 5: 8, 6: 6}.get(int(flip), 1)


def rational(x: float, max_denominator: int = 1_000_000) -> tuple[int, int]:
    """A float as a (numerator, denominator) pair for TIFF RATIONAL tags."""
    f = Fraction(x).limit_denominator(max_denominator)
    return f.numerator, f.denominator


def pillow_exif(exif: Exif):
    """A Pillow ``Image.Exif`` carrying ``exif`` (for JPEG/PNG writing)."""
    from PIL import Image, TiffImagePlugin

    out = Image.Exif()
    if exif.make:
        out[TAG_MAKE] = exif.make
    if exif.model:
        out[TAG_MODEL] = exif.model
    if exif.orientation:
        out[TAG_ORIENTATION] = int(exif.orientation)
    sub = out.get_ifd(EXIF_IFD_POINTER)
    if exif.exposure_time:
        sub[TAG_EXPOSURE_TIME] = TiffImagePlugin.IFDRational(*rational(exif.exposure_time))
    if exif.f_number:
        sub[TAG_F_NUMBER] = TiffImagePlugin.IFDRational(*rational(exif.f_number, 1000))
    if exif.iso:
        sub[TAG_ISO] = int(round(exif.iso))
    if exif.focal_length:
        sub[TAG_FOCAL_LENGTH] = TiffImagePlugin.IFDRational(*rational(exif.focal_length, 1000))
    if exif.exposure_bias is not None:
        sub[TAG_EXPOSURE_BIAS] = TiffImagePlugin.IFDRational(*rational(exif.exposure_bias, 1000))
    if exif.brightness_value is not None:
        sub[TAG_BRIGHTNESS] = TiffImagePlugin.IFDRational(*rational(exif.brightness_value, 1000))
    if exif.datetime:
        sub[TAG_DATETIME_ORIGINAL] = exif.datetime.replace("-", ":")[:19]
    if exif.light_source:
        sub[TAG_LIGHT_SOURCE] = int(exif.light_source)
    return out


def ciff_make_model(data: bytes) -> tuple[str | None, str | None]:
    """Make and model from a Canon CIFF (.CRW) file, which rawpy does not expose (record 0x080a)."""
    if len(data) < 26 or data[:2] != b"II" or data[6:14] != b"HEAPCCDR":
        return None, None
    (header_len,) = struct.unpack_from("<I", data, 2)

    def walk(start: int, end: int, depth: int):
        if depth > 4 or end - start < 4 or end > len(data):
            return None
        (table,) = struct.unpack_from("<I", data, end - 4)
        pos = start + table
        if pos + 2 > end:
            return None
        (count,) = struct.unpack_from("<H", data, pos)
        for i in range(min(count, 512)):
            entry = pos + 2 + 10 * i
            if entry + 10 > end:
                return None
            tag, size, offset = struct.unpack_from("<HII", data, entry)
            kind = tag & 0x3800
            if tag & 0x3FFF == 0x080A and start + offset + size <= end:
                parts = data[start + offset:start + offset + size].split(b"\x00")
                return [p.decode("latin-1").strip() for p in parts if p.strip()]
            if kind in (0x2800, 0x3000):
                found = walk(start + offset, start + offset + size, depth + 1)
                if found:
                    return found
        return None

    found = walk(header_len, len(data), 0)
    if not found:
        return None, None
    return found[0], (found[1] if len(found) > 1 else None)
