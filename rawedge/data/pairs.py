"""Build a training data folder from RAW files (and optionally ordinary photos).

Layout of DATA_DIR:
  manifest.json            every sample, its files, facts and split (rawedge.data.manifest)
  raw/<id>.png             target RAW: RGGB-phase mosaic, uint16 at the levels in the manifest
  srgb/<id>.jpg|.png       input photo, aligned pixel-for-pixel with the RAW

Kinds of pairs:
  libraw       the RAW rendered by LibRaw with random but realistic settings (WB +-15 % around as shot,
               brightness 0.8-1.4, sRGB or BT.709 curve, one of several demosaic algorithms), saved as
               JPEG at quality 80-95 so JPEG artefacts are part of the input. Full resolution.
  camera_jpeg  the camera's own embedded JPEG preview, aligned to the sensor (rawedge.data.align) with
               the RAW binned to the preview's grid; stored as PNG (the camera's JPEG artefacts are kept,
               none are added). Target levels: black 0, white 65535.
  synthetic    photos unprocessed with a random camera profile, WB, exposure and sensor noise
               (rawedge.data.synthetic).
All RAWs are cropped to RGGB phase (a red site at the origin, even size): models never see the CFA.
"""
from __future__ import annotations

import io
import os
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rawedge.data.manifest import Manifest, Sample, assign_splits
from rawedge.data.rggb import quantize_levels, rggb_black_levels, rggb_offset, to_rggb
from rawedge.errors import RawedgeError
from rawedge.filekinds import PHOTO_SUFFIXES, RAW_SUFFIXES, scan

DEMOSAIC_CHOICES = ("AHD", "DHT", "AAHD", "PPG", "VNG")
GAMMAS = {"srgb": (2.4, 12.92), "bt709": (2.222, 4.5)}
SYNTHETIC_GROUP = "synthetic photos"


@dataclass
class PrepareOptions:
    renders: int = 2  # LibRaw renderings per RAW file
    camera_jpeg: bool = True  # pair the embedded camera JPEG where there is one
    synthetic_from: str | None = None  # folder of sRGB photos
    synthetic: int = 0  # synthetic pairs in all (cycling over the photos)
    synthetic_input: str = "rerender"  # or "original" (see rawedge.data.synthetic)
    val_fraction: float = 0.25
    seed: int = 0


def _rng(seed: int, *keys) -> np.random.Generator:
    """Per-item generator: results do not depend on the order or number of other items."""
    return np.random.default_rng([seed, *(zlib.crc32(str(k).encode()) for k in keys)])


def random_render_settings(rng: np.random.Generator):
    from rawedge.io.render import RenderSettings

    gamma = "srgb" if rng.random() < 0.6 else "bt709"
    return RenderSettings(
        wb_scale=(float(rng.uniform(0.85, 1.15)), 1.0, float(rng.uniform(0.85, 1.15))),
        bright=float(rng.uniform(0.8, 1.4)), gamma=GAMMAS[gamma],
        demosaic=str(rng.choice(DEMOSAIC_CHOICES)), output_bps=8), gamma


def raw_files(raw_dir: Path) -> list[Path]:
    """The RAW files of a source folder (not recursive), sorted; none is an error."""
    if not raw_dir.is_dir():
        raise RawedgeError(raw_dir, "no such folder")
    files = scan(raw_dir, RAW_SUFFIXES)
    if not files:
        raise RawedgeError(raw_dir, f"no RAW files ({', '.join(sorted(RAW_SUFFIXES))})")
    return files


def photo_files(photo_dir: Path) -> list[Path]:
    """The photos of a folder for synthetic pairs (not recursive), sorted; none is an error."""
    if not photo_dir.is_dir():
        raise RawedgeError(photo_dir, "no such folder")
    files = scan(photo_dir, PHOTO_SUFFIXES)
    if not files:
        raise RawedgeError(photo_dir, "no photos (JPEG, PNG or TIFF) for synthetic pairs")
    return files


def _write_mosaic(path: Path, mosaic: np.ndarray) -> None:
    from PIL import Image

    from rawedge.io.atomic import atomic_output

    with atomic_output(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(mosaic, dtype=np.uint16)).save(tmp, format="PNG")


def _common(raw, cam2rgb) -> dict:
    return {"exif": raw.exif.to_dict(), "cam2rgb": np.asarray(cam2rgb).round(6).tolist()}


def libraw_pairs(path: Path, raw, out: Path, renders: int, seed: int) -> list[dict]:
    """``renders`` LibRaw renderings of one RAW file, all sharing one target mosaic."""
    from rawedge.io.photo import write_jpeg
    from rawedge.io.render import render_raw

    mosaic = to_rggb(raw.bayer, raw.cfa)
    black = rggb_black_levels(raw.black_level, raw.cfa)
    raw_rel = f"raw/{path.stem}.png"
    _write_mosaic(out / raw_rel, mosaic)
    rows = []
    for k in range(renders):
        rng = _rng(seed, path.name, "libraw", k)
        settings, gamma_name = random_render_settings(rng)
        quality = int(rng.integers(80, 96))
        srgb = to_rggb(render_raw(path, settings), raw.cfa)
        sid = f"{path.stem}-libraw{k}"
        write_jpeg(out / f"srgb/{sid}.jpg", srgb, raw.exif, quality=quality)
        gains = raw.wb_gains() * np.asarray(settings.wb_scale)
        rows.append(dict(id=sid, kind="libraw", srgb=f"srgb/{sid}.jpg", raw=raw_rel, height=mosaic.shape[0],
                         width=mosaic.shape[1], black_level=black, white_level=float(raw.white_level),
                         wb=(gains / gains[1]).round(6).tolist(),
                         settings={**settings.to_dict(), "gamma_name": gamma_name, "jpeg_quality": quality,
                                   "rggb_offset": list(rggb_offset(raw.cfa)), "cfa": raw.cfa},
                         **_common(raw, raw.profile.cam2rgb())))
    return rows


def camera_jpeg_pair(path: Path, raw, out: Path) -> tuple[dict | None, str | None]:
    """(sample row, None) or (None, reason it was skipped)."""
    from PIL import Image

    from rawedge.data.align import MIN_NCC, align_preview, bin_to_preview, valid_window
    from rawedge.io.photo import write_png
    from rawedge.io.raw import read_embedded_jpeg

    data = read_embedded_jpeg(path)
    if data is None:
        return None, "no embedded JPEG preview"
    try:
        with Image.open(io.BytesIO(data)) as im:
            preview = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for corrupt or unsupported JPEGs
        return None, f"embedded preview does not decode ({type(exc).__name__})"
    if min(preview.shape[:2]) < 64:
        return None, f"embedded preview is only {preview.shape[1]}x{preview.shape[0]}"
    mosaic = to_rggb(raw.normalized(), raw.cfa)
    wb, cam2rgb = raw.wb_gains(), raw.profile.cam2rgb()
    alignment = align_preview(preview.astype(np.float32) / 255.0, mosaic, wb, cam2rgb)
    if alignment.ncc < MIN_NCC:
        return None, f"preview does not match the sensor image (NCC {alignment.ncc:.3f} < {MIN_NCC})"
    top, left, h, w = valid_window(alignment, mosaic.shape, preview.shape[:2])
    if h < 64 or w < 64:
        return None, "too little of the preview lies on the sensor"
    binned = bin_to_preview(mosaic, alignment, (top, left, h, w))
    sid = f"{path.stem}-camera"
    _write_mosaic(out / f"raw/{sid}.png", quantize_levels(binned, [0.0] * 4, 65535.0))
    write_png(out / f"srgb/{sid}.png", preview[top:top + h, left:left + w], raw.exif)
    row = dict(id=sid, kind="camera_jpeg", srgb=f"srgb/{sid}.png", raw=f"raw/{sid}.png", height=h, width=w,
               black_level=[0.0] * 4, white_level=65535.0, wb=raw.wb_gains().round(6).tolist(),
               settings={"preview_size": [preview.shape[1], preview.shape[0]], "window": [top, left, h, w],
                         "binning": "area average of each colour plane over each preview pixel's footprint"},
               alignment=alignment.to_dict(), **_common(raw, cam2rgb))
    return row, None


def synthetic_pairs(photos: list[Path], cameras: dict, out: Path, count: int, input_mode: str, seed: int,
                    render_gain: float | None = None) -> list[dict]:
    from rawedge.data.synthetic import make_synthetic_pair
    from rawedge.io.photo import read_photo, write_jpeg, write_png
    from rawedge.types import CameraProfile

    names = sorted(cameras)
    rows = []
    for i in range(count):
        photo_path = photos[i % len(photos)]
        rng = _rng(seed, "synthetic", photo_path.name, i)
        camera = names[int(rng.integers(len(names)))]
        profile = CameraProfile.from_dict(cameras[camera])
        photo = read_photo(photo_path)
        pair = make_synthetic_pair(photo.to_float(), profile, rng, input_mode=input_mode, render_gain=render_gain)
        sid = f"syn-{photo_path.stem}-{i:04d}"
        _write_mosaic(out / f"raw/{sid}.png", pair.mosaic)
        if "jpeg_quality" in pair.settings:
            srgb_rel = f"srgb/{sid}.jpg"
            write_jpeg(out / srgb_rel, pair.srgb, photo.exif, quality=pair.settings["jpeg_quality"])
        else:
            srgb_rel = f"srgb/{sid}.png"
            write_png(out / srgb_rel, pair.srgb, photo.exif)
        rows.append({"id": sid, "source": photo_path.name, "camera": camera, "kind": "synthetic", "srgb": srgb_rel,
                     "raw": f"raw/{sid}.png", "height": pair.mosaic.shape[0], "width": pair.mosaic.shape[1],
                     "black_level": pair.black_level, "white_level": pair.white_level,
                     "wb": pair.wb.round(6).tolist(), "settings": pair.settings, "exif": photo.exif.to_dict(),
                     "cam2rgb": profile.cam2rgb().round(6).tolist()})
    return rows


NOTES = {
    "raw": "raw/*.png: RGGB-phase mosaic (the camera's CFA cropped so a red site is at the origin, even "
           "size), uint16 at sensor levels; normalise with (v - black_level[R,G1,G2,B]) / (white_level - "
           "black_level), clipped to [0, 1].",
    "srgb": "srgb/*: the input photo, pixel-aligned with the RAW.",
    "wb": "gains the rendering used (G = 1): as shot times the LibRaw wb_scale for libraw pairs, as shot for "
          "camera_jpeg, drawn from the camera's WB prior for synthetic pairs.",
    "camera_jpeg": "alignment: preview pixel u covers sensor [offset + scale*u, offset + scale*(u+1)); the RAW "
                   "is binned by area-averaging each colour plane over each preview pixel's footprint "
                   "(rawedge.data.align). residual_shift_px: shift left after alignment (phase correlation).",
    "synthetic": "Brooks et al. (2019) unprocessing with a random camera, WB from its prior, random EV and "
                 "shot/read noise; see rawedge.data.synthetic.",
    "splits": "by source file (RAW file or photo), stratified per camera, deterministic from the seed.",
}


def prepare(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, options: PrepareOptions | None = None,
            on_step: Callable[[str], None] | None = None) -> Manifest:
    """Make a data folder; ``on_step(description)`` is called once per source (for progress bars)."""
    from rawedge.io.raw import read_raw
    from rawedge.profiles import build_profiles

    options = options or PrepareOptions()
    if options.renders < 0 or options.synthetic < 0:
        raise RawedgeError(None, "--renders and --synthetic must be >= 0")
    raw_dir, out = Path(raw_dir), Path(out_dir)
    files = raw_files(raw_dir)
    photos = photo_files(Path(options.synthetic_from)) if options.synthetic_from and options.synthetic else []
    try:
        (out / "raw").mkdir(parents=True, exist_ok=True)
        (out / "srgb").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RawedgeError(out, f"cannot create the data folder ({exc.strerror})") from None
    cameras = {p.name: p.to_dict() for p in build_profiles(raw_dir)}

    rows, skipped = [], []
    groups: dict[str, list[str]] = defaultdict(list)
    for path in files:
        if on_step:
            on_step(path.name)
        raw = read_raw(path)
        groups[raw.profile.name].append(path.name)
        made = libraw_pairs(path, raw, out, options.renders, options.seed)
        if options.camera_jpeg:
            row, reason = camera_jpeg_pair(path, raw, out)
            if row:
                made.append(row)
            elif reason != "no embedded JPEG preview":
                skipped.append({"source": path.name, "kind": "camera_jpeg", "reason": reason})
        rows += [dict(r, source=path.name, camera=raw.profile.name) for r in made]
    if photos:
        if on_step:
            on_step(f"{options.synthetic} synthetic pairs")
        rows += synthetic_pairs(photos, cameras, out, options.synthetic, options.synthetic_input, options.seed)
        groups[SYNTHETIC_GROUP] = [p.name for p in photos[:options.synthetic]]

    return _write_manifest(out, cameras, rows, groups, options, skipped)


def _write_manifest(out: Path, cameras: dict, rows: list[dict], groups: dict, options: PrepareOptions,
                    skipped: list[dict]) -> Manifest:
    split_of = assign_splits(groups, options.val_fraction, options.seed)
    samples = [Sample(split=split_of[r["source"]], **r) for r in rows]
    manifest = Manifest(cameras=cameras, samples=samples, seed=options.seed, val_fraction=options.val_fraction,
                        notes=dict(NOTES, options=vars(options).copy()), skipped=skipped)
    manifest.save(out)
    return manifest


def toy_photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A procedural sRGB photo (gradients, flat shapes, texture): test and smoke-run data."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([0.5 + 0.4 * np.sin(x / width * rng.uniform(2, 6) + rng.uniform(0, 6)) * np.cos(
        y / height * rng.uniform(1, 4)) for _ in range(3)], axis=-1)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, min(height, width) / 3)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0.05, 1.0, 3)
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def make_toy_data(out_dir: str | os.PathLike, count: int = 6, size: tuple[int, int] = (96, 128), seed: int = 0,
                  val_fraction: float = 0.34, render_gain: float | None = None) -> Manifest:
    """A small data folder of synthetic pairs from procedural photos and the generic camera profile
    (no RAW files needed): for tests, smoke runs and trying recipes. A fixed ``render_gain`` gives every
    pair the same brightening, a systematic deviation from the analytic inverse that a model can learn."""
    from rawedge.io.photo import write_png
    from rawedge.types import CameraProfile

    out = Path(out_dir)
    photo_dir = out / "toy_photos"
    for sub in (photo_dir, out / "raw", out / "srgb"):
        sub.mkdir(parents=True, exist_ok=True)
    photos = []
    for i in range(count):
        path = photo_dir / f"toy{i:03d}.png"
        write_png(path, toy_photo(_rng(seed, "toy", i), *size))
        photos.append(path)
    profile = CameraProfile.generic()
    cameras = {profile.name: profile.to_dict()}
    options = PrepareOptions(renders=0, camera_jpeg=False, synthetic_from=str(photo_dir), synthetic=count,
                             val_fraction=val_fraction, seed=seed)
    rows = synthetic_pairs(photos, cameras, out, count, "rerender", seed, render_gain=render_gain)
    return _write_manifest(out, cameras, rows, {SYNTHETIC_GROUP: [p.name for p in photos]}, options, [])
