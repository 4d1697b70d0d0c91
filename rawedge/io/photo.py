"""Photos in (JPEG, PNG, TIFF: 8 or 16 bit RGB) with their EXIF, and JPEG out with EXIF."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.io.atomic import atomic_output
from rawedge.io.exif import exif_from_pillow, exif_from_tifffile_page, pillow_exif, quiet_tifffile
from rawedge.types import Exif, Photo

# Refuse decompression bombs before allocating; override with RAWEDGE_MAX_PIXELS or max_pixels=.
DEFAULT_MAX_PIXELS = 120_000_000
TIFF_SUFFIXES = (".tif", ".tiff")


def max_pixels_default() -> int:
    try:
        return int(os.environ.get("RAWEDGE_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def _check_size(path, width: int, height: int, max_pixels: int) -> None:
    if width < 2 or height < 2:
        raise RawedgeError(path, f"image is {width}x{height}; at least 2x2 is needed")
    if width * height > max_pixels:
        raise RawedgeError(path, f"image is {width}x{height} ({width * height / 1e6:.0f} MP), over the "
                                 f"{max_pixels / 1e6:.0f} MP limit (raise it with --max-pixels or RAWEDGE_MAX_PIXELS)")


def _as_rgb(path, arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1):
        raise RawedgeError(path, "grayscale image: a colour (RGB) photo is needed")
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise RawedgeError(path, f"unsupported pixel layout {arr.shape}: an RGB photo is needed")
    if arr.dtype not in (np.uint8, np.uint16):
        raise RawedgeError(path, f"unsupported sample type {arr.dtype}: 8- or 16-bit RGB is needed")
    return np.ascontiguousarray(arr[..., :3])


def read_photo(path: str | os.PathLike, max_pixels: int | None = None) -> Photo:
    """Read an sRGB photo as stored (orientation is kept in EXIF, pixels are not rotated)."""
    path = Path(path)
    max_pixels = max_pixels or max_pixels_default()
    if not path.is_file():
        raise RawedgeError(path, "no such file" if not path.exists() else "not a regular file")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _read_tiff(path, max_pixels)
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # damaged tags: EXIF is optional
            Image.MAX_IMAGE_PIXELS = None  # our own limit below, before decoding
            with Image.open(path) as im:
                _check_size(path, im.width, im.height, max_pixels)
                im.load()  # first: PNG's getexif() loads the pixels itself and would swallow a decode error
                exif = exif_from_pillow(im)
                mode = im.mode
                if mode in ("L", "LA", "1", "I;16", "I;16B", "I;16L", "I", "F"):
                    raise RawedgeError(path, f"grayscale image (mode {mode}): a colour (RGB) photo is needed")
                if mode == "CMYK":
                    im = im.convert("RGB")
                elif mode not in ("RGB", "RGBA"):
                    im = im.convert("RGB")
                im, converted_from = to_srgb(im)
                arr = np.asarray(im)
    except RawedgeError:
        raise
    except UnidentifiedImageError:
        raise RawedgeError(path, "not an image Pillow can read (JPEG, PNG or TIFF expected)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RawedgeError(path, f"cannot decode image ({str(exc).splitlines()[0] if str(exc) else 'truncated or corrupt'})") from None
    return Photo(srgb=_as_rgb(path, arr), exif=exif, source=str(path), converted_from=converted_from)


def icc_description(icc: bytes) -> str | None:
    """The description of an ICC profile, or None if Pillow cannot read it."""
    from PIL import ImageCms

    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() or "unnamed"
    except (OSError, ImageCms.PyCMSError, TypeError, ValueError):
        return None


def to_srgb(im):
    """(image, description of the profile it was converted from, or None): an RGB image with an embedded
    ICC profile other than sRGB (Adobe RGB, Display P3, ProPhoto...) converted to sRGB with LittleCMS
    (relative colorimetric, black-point compensation off), as the model expects sRGB. Profiles that call
    themselves sRGB, that are not RGB or that Pillow cannot read leave the pixels as stored."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA"):
        return im, None
    from PIL import ImageCms

    description = icc_description(icc)
    if description is None or "srgb" in description.lower().replace(" ", "").replace("-", ""):
        return im, None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if source.profile.xcolor_space.strip() != "RGB":
            return im, None
        rgb = im.convert("RGB") if im.mode != "RGB" else im
        converted = ImageCms.profileToProfile(rgb, source, ImageCms.createProfile("sRGB"),
                                              renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB")
    except (OSError, ImageCms.PyCMSError, ValueError):
        return im, None
    return converted, description


def _read_tiff(path: Path, max_pixels: int) -> Photo:
    import tifffile

    try:
        with quiet_tifffile(), tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            shape = page.shape
            h, w = (shape[0], shape[1]) if page.planarconfig != 2 else (shape[-2], shape[-1])
            _check_size(path, w, h, max_pixels)
            exif = exif_from_tifffile_page(page)
            arr = page.asarray()
            if page.planarconfig == 2 and arr.ndim == 3:
                arr = np.moveaxis(arr, 0, -1)
    except RawedgeError:
        raise
    except Exception as exc:
        raise RawedgeError(path, f"cannot decode TIFF ({type(exc).__name__})") from None
    return Photo(srgb=_as_rgb(path, arr), exif=exif, source=str(path))


def write_jpeg(path: str | os.PathLike, srgb: np.ndarray, exif: Exif | None = None, quality: int = 92) -> None:
    """Write an 8-bit sRGB JPEG that carries ``exif`` (atomically)."""
    from PIL import Image

    arr = np.asarray(srgb)
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    with atomic_output(path, suffix=".jpg") as tmp:
        Image.fromarray(arr, "RGB").save(tmp, format="JPEG", quality=quality, exif=pillow_exif(exif or Exif()))


def write_png(path: str | os.PathLike, srgb: np.ndarray, exif: Exif | None = None) -> None:
    """Write an 8-bit sRGB PNG that carries ``exif`` (atomically)."""
    from PIL import Image

    with atomic_output(path, suffix=".png") as tmp:
        Image.fromarray(np.asarray(srgb, dtype=np.uint8), "RGB").save(tmp, format="PNG", exif=pillow_exif(exif or Exif()))
