"""The calibration set: a folder of photos (JPEG/PNG/TIFF with EXIF) and/or RAW files, split by file
into a calibration part and a held-out part that only the accuracy gate sees.

RAW files are rendered on the fly (``rawedge.io.render.render_raw``, pixel-aligned with the mosaic)
and bring their ground truth, profile and as-shot white balance. Photos get their profile and white
balance the way `rawedge infer` chooses them. Feeds come from the Reconstructor's plan
(``Reconstructor.plan``): the same tiles, thumbnail, EXIF vector and canonical inputs as inference; and
outputs computed elsewhere (the gate's Comparator) go back through its blend into a RawImage."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rawedge.runtimes import Reconstructor
from rawedge.runtimes.base import Runner
from rawedge.runtimes.plan import Plan

from rawedge.errors import RawedgeError
from rawedge.filekinds import PHOTO_SUFFIXES, RAW_SUFFIXES, scan
from rawedge.types import CameraProfile, Exif, RawImage

MIN_CALIBRATION_FILES = 2
MIN_HELD_OUT_FILES = 1


def list_sources(folder: str | os.PathLike) -> list[Path]:
    """Photos and RAW files directly inside ``folder`` (not recursive, hidden files skipped), sorted."""
    folder = Path(folder)
    if not folder.exists():
        raise RawedgeError(folder, "no such directory")
    if not folder.is_dir():
        raise RawedgeError(folder, "not a directory (give a folder of photos or RAW files)")
    try:
        files = scan(folder, PHOTO_SUFFIXES | RAW_SUFFIXES)
    except OSError as exc:
        raise RawedgeError(folder, f"cannot read this directory ({exc.strerror or exc})") from None
    if not files:
        raise RawedgeError(folder, f"no photos ({', '.join(sorted(PHOTO_SUFFIXES))}) or RAW files "
                                   f"({', '.join(sorted(RAW_SUFFIXES))}) in this directory")
    return files


@dataclass(frozen=True)
class Split:
    calibration: list[Path]
    held_out: list[Path]


def split_sources(files: list[Path], holdout: float, seed: int = 0, folder=None,
                  roles: tuple[str, str] = ("calibration", "the accuracy gate")) -> Split:
    """A seeded split by file: ``round(holdout * n)`` files (at least one) are held out for the gate.
    ``roles`` names what the two parts are for in the too-few-files message (other users: ``rawedge hedge``)."""
    if not 0.0 < holdout < 1.0:
        raise RawedgeError(None, f"--holdout must be between 0 and 1 (exclusive), got {holdout}")
    n = len(files)
    n_hold = max(MIN_HELD_OUT_FILES, round(holdout * n))
    if n - n_hold < MIN_CALIBRATION_FILES:
        need = MIN_CALIBRATION_FILES + MIN_HELD_OUT_FILES
        raise RawedgeError(folder, f"{n} file{'s' if n != 1 else ''} are too few to split: {roles[0]} needs at "
                                   f"least {MIN_CALIBRATION_FILES} and {roles[1]} at least "
                                   f"{MIN_HELD_OUT_FILES} held-out file(s) with --holdout {holdout} "
                                   f"(give {max(need, math.ceil(MIN_CALIBRATION_FILES / (1 - holdout)))} or more)")
    order = np.random.default_rng(seed).permutation(n)
    held = set(order[:n_hold].tolist())
    return Split(calibration=[f for i, f in enumerate(files) if i not in held],
                 held_out=[f for i, f in enumerate(files) if i in held])


@dataclass
class Item:
    """One source image ready for the Reconstructor. ``profile``/``wb`` None: chosen as `rawedge infer`
    does; ``truth``: the RAW it was rendered from (RAW sources only)."""

    path: Path
    srgb: np.ndarray
    exif: Exif
    profile: CameraProfile | None = None
    wb: np.ndarray | None = None
    truth: RawImage | None = None

    @property
    def has_truth(self) -> bool:
        return self.truth is not None


def is_raw(path: Path) -> bool:
    return path.suffix.lower() in RAW_SUFFIXES


def load_item(path: str | os.PathLike, max_pixels: int | None = None) -> Item:
    path = Path(path)
    if is_raw(path):
        from rawedge.io.raw import read_raw
        from rawedge.io.render import render_raw

        raw = read_raw(path)
        srgb = render_raw(path)
        if srgb.shape[:2] != raw.bayer.shape:
            raise RawedgeError(path, f"rendering {srgb.shape[1]}x{srgb.shape[0]} is not aligned with the "
                                     f"{raw.bayer.shape[1]}x{raw.bayer.shape[0]} mosaic")
        return Item(path, srgb, raw.exif or Exif(), raw.profile, raw.wb_gains(), raw)
    from rawedge.io.photo import read_photo

    photo = read_photo(path, max_pixels=max_pixels)
    return Item(path, photo.srgb, photo.exif or Exif())


@dataclass(frozen=True)
class Tiling:
    """How the Reconstructor cuts images (None: what `rawedge infer` does, runtimes.Reconstructor's defaults)."""

    tile: int | None = None
    overlap: int | None = None
    batch: int | None = None


def plan_item(template: Runner, item: Item, tiling: Tiling) -> tuple[Reconstructor, Plan]:
    """The Reconstructor of ``template`` (an activated runner of the model) and its plan of ``item``."""
    rec = Reconstructor(template, tile=tiling.tile, overlap=tiling.overlap, batch=tiling.batch)
    return rec, rec.plan(item.srgb, item.exif, rec.camera_options(profile=item.profile, wb=item.wb))


def record_feeds(template: Runner, item: Item, tiling: Tiling, keep: int | None = None,
                 seed: int = 0) -> list[dict[str, np.ndarray]]:
    """The feeds `rawedge infer` would run for ``item``: all of them in order, or a uniform reservoir
    sample of ``keep`` (seeded)."""
    _, plan = plan_item(template, item, tiling)
    rng = np.random.default_rng(seed)
    feeds: list[dict[str, np.ndarray]] = []
    for calls, batch in enumerate(plan.batches()):
        if keep is None or len(feeds) < keep:
            feeds.append(batch.feed)
        else:
            j = int(rng.integers(0, calls + 1))
            if j < keep:
                feeds[j] = batch.feed
    return feeds


def replay(template: Runner, item: Item, tiling: Tiling, feeds, outputs) -> RawImage:
    """The RawImage the Reconstructor blends from ``outputs``, one per feed of ``record_feeds`` (all of
    them, in order)."""
    rec, plan = plan_item(template, item, tiling)
    batches = list(plan.batches())
    if len(feeds) != len(outputs) or len(outputs) != len(batches):
        raise RawedgeError(template.model_path, f"replay of {len(outputs)} outputs for {len(feeds)} feeds "
                                                f"({len(batches)} tile batches)")
    for i, (batch, feed) in enumerate(zip(batches, feeds)):
        if batch.feed["srgb"].shape != feed["srgb"].shape:
            raise RawedgeError(template.model_path, f"replay out of step at call {i} (tile batch {feed['srgb'].shape})")
    results = ((b, {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}) for b, out in zip(batches, outputs))
    return rec.blend(plan, results).raw()


@dataclass
class CalibrationSet:
    """Single-tile feeds sampled evenly from the calibration files, plus the calibration files that
    carry ground truth (a validation set for NNCF's accuracy control; never the held-out files)."""

    feeds: list[dict[str, np.ndarray]]
    files: list[Path]
    tiles_per_file: dict[str, int] = field(default_factory=dict)
    with_truth: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.feeds)


def build_calibration_set(template: Runner, files: list[Path], tiling: Tiling, max_tiles: int, seed: int = 0,
                          max_pixels: int | None = None, on_file=None) -> CalibrationSet:
    """About ``max_tiles`` single-tile feeds: ``ceil(max_tiles / files)`` from each file (a seeded
    sample of its tiles, all of them when it has fewer). ``on_file(path)`` is called before each file."""
    if max_tiles < 1:
        raise RawedgeError(None, f"--max-tiles must be at least 1, got {max_tiles}")
    per_file = max(1, math.ceil(max_tiles / len(files)))
    single = Tiling(tiling.tile, tiling.overlap, batch=1)
    feeds, counts, with_truth = [], {}, []
    for k, path in enumerate(files):
        if on_file:
            on_file(path)
        item = load_item(path, max_pixels)
        got = record_feeds(template, item, single, keep=per_file, seed=seed + k)
        feeds.extend(got)
        counts[path.name] = len(got)
        if item.has_truth:
            with_truth.append(path)
    return CalibrationSet(feeds=feeds, files=list(files), tiles_per_file=counts,
                          with_truth=with_truth)
