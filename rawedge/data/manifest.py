"""The data folder's ``manifest.json``: every sample's files, facts and split, and the split rule.

Splits are by source file (a RAW file or a photo), never by patch or rendering, so no scene is in both
train and val. They are deterministic from the seed and stratified per camera.
"""
from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rawedge import __version__
from rawedge.errors import RawedgeError

MANIFEST_NAME = "manifest.json"
FORMAT = "rawedge-pairs"
FORMAT_VERSION = 1
KINDS = ("libraw", "camera_jpeg", "synthetic", "engine", "crosscam", "libraw_default")  # the last three: rawedge.data.mix
SPLITS = ("train", "val")


@dataclass
class Sample:
    """One sRGB/RAW pair. Paths are relative to the data folder.

    ``raw`` is an RGGB-phase mosaic (uint16 PNG) at the levels in ``black_level`` (R, G1, G2, B) and
    ``white_level``; ``srgb`` is the input photo aligned pixel-for-pixel with it."""

    id: str
    source: str  # RAW file or photo the pair comes from (the split unit)
    camera: str  # key into Manifest.cameras
    kind: str  # libraw | camera_jpeg | synthetic
    split: str
    srgb: str
    raw: str
    height: int
    width: int
    black_level: list[float]
    white_level: float
    wb: list[float]  # gains the rendering used (G = 1): the model's ``wb`` input
    cam2rgb: list[list[float]]
    exif: dict = field(default_factory=dict)  # rawedge.types.Exif fields
    settings: dict = field(default_factory=dict)  # how the pair was made (render settings, noise, ...)
    alignment: dict | None = None  # camera_jpeg: preview <-> sensor mapping and its residual

    def exif_vector(self) -> np.ndarray:
        from rawedge.types import Exif

        return Exif.from_dict(self.exif).to_vector()


@dataclass
class Manifest:
    cameras: dict[str, dict]  # camera name -> CameraProfile dict (WB prior fitted over its files)
    samples: list[Sample]
    seed: int = 0
    val_fraction: float = 0.25
    notes: dict = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # sources or renderings left out, with the reason
    rawedge_version: str = __version__

    def select(self, split: str | None = None, kinds=None) -> list[Sample]:
        if split is not None and split not in SPLITS and split != "all":
            raise RawedgeError(None, f"unknown split {split!r}; use train, val or all")
        return [s for s in self.samples
                if (split in (None, "all") or s.split == split) and (not kinds or s.kind in kinds)]

    def sources(self, split: str) -> list[str]:
        return sorted({s.source for s in self.samples if s.split == split})

    def to_dict(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "rawedge_version": self.rawedge_version,
                "seed": self.seed, "val_fraction": self.val_fraction, "notes": self.notes,
                "cameras": self.cameras,
                "splits": {split: self.sources(split) for split in SPLITS},
                "counts": {kind: sum(s.kind == kind for s in self.samples) for kind in KINDS},
                "skipped": self.skipped, "samples": [asdict(s) for s in self.samples]}

    def save(self, data_dir: str | os.PathLike) -> Path:
        from rawedge.io.atomic import atomic_output

        path = Path(data_dir) / MANIFEST_NAME
        with atomic_output(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=1))
        return path


def load_manifest(data_dir: str | os.PathLike) -> Manifest:
    """Read and check a data folder made by ``rawedge data prepare``."""
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST_NAME
    if not data_dir.is_dir():
        raise RawedgeError(data_dir, "no such data folder (make one with `rawedge data prepare`)")
    if not path.is_file():
        raise RawedgeError(data_dir, f"no {MANIFEST_NAME}: not a data folder made by `rawedge data prepare`")
    try:
        d = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RawedgeError(path, f"not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise RawedgeError(path, f"not a rawedge pairs manifest (format {d.get('format') if isinstance(d, dict) else None!r})")
    if d.get("format_version", 0) > FORMAT_VERSION:
        raise RawedgeError(path, f"manifest version {d['format_version']} is newer than this rawedge")
    try:
        samples = [Sample(**s) for s in d["samples"]]
    except (KeyError, TypeError) as exc:
        raise RawedgeError(path, f"malformed sample entry ({exc})") from None
    for s in samples:
        if s.kind not in KINDS or s.split not in SPLITS or s.camera not in d["cameras"]:
            raise RawedgeError(path, f"sample {s.id!r}: unknown kind, split or camera")
    return Manifest(cameras=d["cameras"], samples=samples, seed=d.get("seed", 0),
                    val_fraction=d.get("val_fraction", 0.25), notes=d.get("notes", {}),
                    skipped=d.get("skipped", []), rawedge_version=d.get("rawedge_version", "?"))


def assign_splits(groups: dict[str, list[str]], val_fraction: float, seed: int) -> dict[str, str]:
    """{source: split}. Within each group (a camera), round(n * val_fraction) sources go to val, at
    least one when the group has >= 2 sources and never all of them; the choice is a seeded shuffle of
    the sorted names, so it depends only on the seed and the file names."""
    if not 0.0 <= val_fraction < 1.0:
        raise RawedgeError(None, f"--val-fraction must be in [0, 1), got {val_fraction}")
    out = {}
    for group in sorted(groups):
        names = sorted(set(groups[group]))
        rng = np.random.default_rng([seed, zlib.crc32(group.encode())])
        order = [names[i] for i in rng.permutation(len(names))]
        n_val = 0
        if len(names) >= 2 and val_fraction > 0:
            n_val = min(len(names) - 1, max(1, math.floor(len(names) * val_fraction + 0.5)))
        for i, name in enumerate(order):
            out[name] = "val" if i < n_val else "train"
    return out
