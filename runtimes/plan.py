"""The plan of one photo: everything a model sees, decided before any tile runs.

The camera profile and white balance (the one policy: :func:`rawedge.profiles.resolve_profile`, then
:func:`rawedge.isp.illuminant.estimate_wb` when no gains are given), the per-photo constants of the model
contract (thumbnail, EXIF vector, canonical ``wb``/``cam2rgb``/``rgb2cam``), the padded RGGB frame and the
tile grid (rawedge.tiling). `rawedge infer`, `rawedge eval` and the INT8 calibration feeds all take their
feeds from a Plan, so they cannot disagree about what a model is given."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rawedge.contract import THUMB_SIZE, canonical_inputs
from rawedge.errors import RawedgeError
from rawedge.isp.illuminant import estimate_wb
from rawedge.profiles import resolve_profile
from rawedge.tiling import Frame, TileGrid
from rawedge.types import CameraProfile, Exif

Profiles = dict[str, CameraProfile]


def photo_scale(srgb: np.ndarray) -> float:
    """The full-scale value of the photo's pixel type (uint8 255, uint16 65535, float 1)."""
    if srgb.dtype == np.uint8:
        return 255.0
    if srgb.dtype == np.uint16:
        return 65535.0
    return 1.0


def photo_thumbnail(srgb: np.ndarray, size: int = THUMB_SIZE, strip_rows: int = 256) -> np.ndarray:
    """``rawedge.contract.make_thumb`` of the photo, bit for bit (tested), without a float copy of it.

    make_thumb resizes each channel with Pillow's BOX filter, which is separable and runs its
    horizontal pass first; that pass is done here on strips of rows converted to float one at a time,
    then the vertical pass on the narrow (H x size) result."""
    from PIL import Image

    scale = np.float32(photo_scale(srgb))
    chans = []
    for c in range(3):
        rows = []
        for r0 in range(0, srgb.shape[0], strip_rows):
            strip = srgb[r0:r0 + strip_rows, :, c].astype(np.float32)
            strip /= scale
            im = Image.fromarray(strip, mode="F")
            rows.append(np.asarray(im.resize((size, strip.shape[0]), Image.BOX), dtype=np.float32))
        narrow = Image.fromarray(np.ascontiguousarray(np.concatenate(rows, axis=0)), mode="F")
        chans.append(np.asarray(narrow.resize((size, size), Image.BOX), dtype=np.float32))
    return np.clip(np.stack(chans, axis=0), 0.0, 1.0)


def check_photo(srgb) -> np.ndarray:
    srgb = np.asarray(srgb)
    if srgb.ndim != 3 or srgb.shape[2] != 3:
        raise RawedgeError(None, f"expected an HxWx3 RGB image, got shape {srgb.shape}")
    if srgb.shape[0] < 2 or srgb.shape[1] < 2:
        raise RawedgeError(None, f"image {srgb.shape[1]}x{srgb.shape[0]} is smaller than one 2x2 Bayer block")
    if srgb.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise RawedgeError(None, f"unsupported pixel type {srgb.dtype} (uint8, uint16 or float in [0,1])")
    return srgb


def check_wb(wb) -> np.ndarray:
    gains = np.asarray(wb, dtype=np.float64).reshape(-1)
    if gains.shape != (3,) or not np.all(np.isfinite(gains)) or np.any(gains <= 0):
        raise RawedgeError(None, f"white balance must be 3 positive gains [R, G, B], got {wb!r}")
    return gains / gains[1]


# --- camera profile and white balance -------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CameraOptions:
    """The user's camera choices for a run, resolved once before any photo, so a bad profile JSON, an
    unreadable RAW or an unknown camera name fails once, not on every photo.

    ``profile``: fixed for every photo (given, ``--camera-profile``, ``--like``), chosen as ``how`` says;
    else looked up per photo by ``camera`` name or the EXIF. ``wb``: fixed gains (given, the ``--like``
    RAW's as-shot), else estimated per photo. ``cam2rgb``: a camera->sRGB matrix known apart from the
    profile (evaluation data carry their RAW's own), else the profile's."""

    profile: CameraProfile | None = None
    wb: np.ndarray | None = None
    how: str = ""
    camera: str | None = None
    cam2rgb: np.ndarray | None = None


def pick_profile(exif: Exif | None, bundled: Profiles, embedded: Profiles, profile: CameraProfile | None = None,
                 camera: str | None = None) -> tuple[CameraProfile, str]:
    """(profile, how) for one photo: given > ``camera`` by name > the EXIF camera (resolve_profile)."""
    if profile is not None:
        return profile, "given"
    found, _, how = resolve_profile(exif, camera=camera, profiles=bundled, embedded=embedded)
    return found, how


def camera_options(bundled: Profiles, embedded: Profiles, profile: CameraProfile | None = None, wb=None,
                   camera: str | None = None, camera_profile: str | os.PathLike | None = None,
                   like: str | os.PathLike | None = None, cam2rgb=None) -> CameraOptions:
    """The user's options checked and the fixed parts resolved (JSON read, ``like`` RAW read)."""
    gains = None if wb is None else check_wb(wb)
    matrix = None if cam2rgb is None else np.asarray(cam2rgb, dtype=np.float64)
    if profile is not None:
        return CameraOptions(profile, gains, "given", cam2rgb=matrix)
    if camera_profile or like:
        found, as_shot, how = resolve_profile(Exif(), like=like, profile_json=camera_profile, profiles=bundled,
                                              embedded=embedded)
        if gains is None and as_shot is not None:
            gains = check_wb(as_shot)
        return CameraOptions(found, gains, how, cam2rgb=matrix)
    if camera:
        pick_profile(Exif(), bundled, embedded, camera=camera)  # an unknown name fails here
    return CameraOptions(wb=gains, camera=camera, cam2rgb=matrix)


def choose_camera(exif: Exif, options: CameraOptions, bundled: Profiles, embedded: Profiles
                  ) -> tuple[CameraProfile, np.ndarray, str]:
    """(profile, white-balance gains, how both were chosen) for one photo."""
    if options.profile is not None:
        profile, how = options.profile, options.how
    else:
        profile, how = pick_profile(exif, bundled, embedded, camera=options.camera)
    if options.wb is not None:
        return profile, options.wb, how
    gains, wb_how = estimate_wb(profile, exif)
    return profile, gains, f"{how}; {wb_how}"


# --- the plan -------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Batch:
    """One inference call: the grid positions (i, j, y0, x0) of its tiles and the feed, padded with copies
    of the last tile up to a fixed-batch model's size."""

    positions: tuple[tuple[int, int, int, int], ...]
    feed: dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Plan:
    """One photo, ready to run: its camera and white balance, the model's per-photo inputs
    (``constants``, batch of 1, only those the model takes), the frame and the tile grid. ``srgb`` is the
    photo as given; tiles are converted to float one batch at a time."""

    srgb: np.ndarray
    exif: Exif
    profile: CameraProfile
    gains: np.ndarray
    how: str
    frame: Frame
    grid: TileGrid
    constants: dict[str, np.ndarray]
    batch: int
    static_batch: int | None = None

    def __len__(self) -> int:
        return len(self.grid)

    def batches(self) -> Iterator[Batch]:
        """The feeds of the photo's tiles, ``batch`` tiles a call, in row-major grid order."""
        scale = np.float32(photo_scale(self.srgb))
        positions = list(self.grid.positions())
        th, tw = self.grid.th, self.grid.tw
        for start in range(0, len(positions), self.batch):
            chunk = positions[start:start + self.batch]
            tiles = np.stack([self.frame.gather(self.srgb, y0, x0, th, tw) for _, _, y0, x0 in chunk])
            tiles = tiles.astype(np.float32) / scale
            if self.srgb.dtype.kind == "f":  # uint8 / 255 and uint16 / 65535 are in [0, 1] already
                np.clip(tiles, 0.0, 1.0, out=tiles)
            tiles = tiles.transpose(0, 3, 1, 2)
            run_n = self.static_batch or len(chunk)
            if run_n > len(chunk):  # fixed-batch model: pad with copies of the last tile
                tiles = np.concatenate([tiles, np.repeat(tiles[-1:], run_n - len(chunk), axis=0)])
            feed = {k: np.repeat(v, run_n, axis=0) for k, v in self.constants.items()}
            feed["srgb"] = np.ascontiguousarray(tiles)
            yield Batch(tuple(chunk), feed)


def model_constants(srgb: np.ndarray, exif: Exif, cam2rgb: np.ndarray, gains: np.ndarray, names,
                    thumb: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The per-photo inputs the model takes (``names``), batch of 1, float32. ``thumb``: the whole photo's
    thumbnail when ``srgb`` is a crop of it (evaluation crops)."""
    consts = {}
    if "thumb" in names:
        consts["thumb"] = (photo_thumbnail(srgb) if thumb is None else np.asarray(thumb, np.float32))[None]
    consts["exif"] = exif.to_vector()[None]
    consts.update(canonical_inputs(cam2rgb, gains))
    return {k: v.astype(np.float32) for k, v in consts.items() if k in names}
