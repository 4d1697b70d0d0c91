"""Torch Dataset over a data folder: random Bayer-safe crops with every input of the model contract.

Crops start at even offsets of the RGGB-phase frame, so every crop is RGGB. A flip would turn RGGB into
GRBG (horizontal) or GBRG (vertical); the flipped crop is therefore cut one pixel further (odd start)
before flipping, which puts a red site back at the origin. sRGB, RAW and thumbnail flip together.
The thumbnail is ``rawedge.contract.make_thumb`` of the whole photo, computed once per sample.
Crop positions come from a generator seeded by (seed, epoch, index): the same crops whatever the
number of workers or processes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from rawedge.contract import make_thumb
from rawedge.data.manifest import Manifest, Sample, load_manifest
from rawedge.data.rggb import normalize_levels
from rawedge.errors import RawedgeError
from rawedge.isp.ops import pack


@dataclass
class PairArrays:
    """One sample in memory: the full photo, the RAW at its stored levels (shared by the renderings of
    one RAW file, normalised per crop), and the per-image contract inputs."""

    srgb: np.ndarray  # HxWx3 uint8/uint16
    levels: np.ndarray  # HxW uint16, RGGB phase
    black_level: list[float]  # R, G1, G2, B
    white_level: float
    thumb: np.ndarray  # 3x256x256 float32
    exif: np.ndarray  # (4,) float32, NaN missing
    wb: np.ndarray  # (3,)
    cam2rgb: np.ndarray  # (3, 3)
    rgb2cam: np.ndarray  # (3, 3), host-side inverse

    @property
    def mosaic(self) -> np.ndarray:
        """The whole RAW, float32 in [0, 1]."""
        return normalize_levels(self.levels, self.black_level, self.white_level)

    def mosaic_window(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """A window of the normalised RAW; odd offsets keep each site's own black level."""
        t0, l0 = top - top % 2, left - left % 2
        block = normalize_levels(self.levels[t0:top + height, l0:left + width], self.black_level, self.white_level)
        return block[top - t0:, left - l0:]

    def srgb_float(self) -> np.ndarray:
        scale = 255.0 if self.srgb.dtype == np.uint8 else 65535.0
        return self.srgb.astype(np.float32) / np.float32(scale)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except FileNotFoundError:
        raise RawedgeError(path, "missing file of the data folder (re-run `rawedge data prepare`)") from None
    except OSError as exc:
        raise RawedgeError(path, f"cannot decode ({exc})") from None


def load_pair(data_dir: str | os.PathLike, sample: Sample, raw_cache: dict | None = None) -> PairArrays:
    """Read one sample's files and derive its contract inputs (``raw_cache``: RAWs already read, by path)."""
    data_dir = Path(data_dir)
    srgb = _read_image(data_dir / sample.srgb)
    if raw_cache is not None and sample.raw in raw_cache:
        levels = raw_cache[sample.raw]
    else:
        levels = _read_image(data_dir / sample.raw)
        if raw_cache is not None:
            raw_cache[sample.raw] = levels
    if srgb.ndim != 3 or srgb.shape[:2] != levels.shape or levels.shape != (sample.height, sample.width):
        raise RawedgeError(data_dir / sample.raw, f"sample {sample.id}: sRGB {srgb.shape} and RAW {levels.shape} "
                                                  f"do not match the manifest ({sample.height}x{sample.width})")
    srgb = np.ascontiguousarray(srgb[..., :3])
    cam2rgb = np.asarray(sample.cam2rgb, dtype=np.float64)
    scale = 255.0 if srgb.dtype == np.uint8 else 65535.0
    return PairArrays(srgb=srgb, levels=levels, black_level=list(sample.black_level),
                      white_level=float(sample.white_level),
                      thumb=make_thumb(srgb.astype(np.float32) / np.float32(scale)),
                      exif=sample.exif_vector(), wb=np.asarray(sample.wb, dtype=np.float32),
                      cam2rgb=cam2rgb.astype(np.float32), rgb2cam=np.linalg.inv(cam2rgb).astype(np.float32))


def to_item(arrays: PairArrays, srgb: np.ndarray, mosaic: np.ndarray, thumb: np.ndarray, sample: Sample) -> dict:
    """Contract tensors of one crop (unbatched) plus the target ``raw`` and sample facts."""
    scale = 255.0 if srgb.dtype == np.uint8 else 65535.0

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    return {"srgb": t(np.moveaxis(srgb, -1, 0) / np.float32(scale)), "thumb": t(thumb), "exif": t(arrays.exif),
            "wb": t(arrays.wb), "cam2rgb": t(arrays.cam2rgb), "rgb2cam": t(arrays.rgb2cam),
            "raw": t(pack(mosaic, "RGGB")), "id": sample.id, "kind": sample.kind, "camera": sample.camera}


def bayer_safe_crop(rng: np.random.Generator, height: int, width: int, crop: int, flips: bool
                    ) -> tuple[int, int, bool, bool]:
    """(top, left, flip_v, flip_h) of a crop that is RGGB after the flips are applied."""
    if crop % 2:
        raise ValueError("crop size must be even")
    flip_v = bool(flips and height >= crop + 1 and rng.random() < 0.5)
    flip_h = bool(flips and width >= crop + 1 and rng.random() < 0.5)
    top = 2 * int(rng.integers(0, (height - crop - flip_v) // 2 + 1)) + flip_v
    left = 2 * int(rng.integers(0, (width - crop - flip_h) // 2 + 1)) + flip_h
    return top, left, flip_v, flip_h


class PairDataset(Dataset):
    """``crops_per_image`` random crops of every sample of a split per epoch (call ``set_epoch``);
    ``crop=None`` for a dataset used only through :meth:`full_item` (validation, evaluation)."""

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", crop: int | None = 128,
                 crops_per_image: int = 8, flips: bool = True, kinds=None, seed: int = 0,
                 manifest: Manifest | None = None, cache: bool = True):
        self.data_dir = Path(data_dir)
        self.manifest = manifest or load_manifest(self.data_dir)
        self.samples = self.manifest.select(split, kinds)
        if not self.samples:
            raise RawedgeError(self.data_dir, f"no {'/'.join(kinds) if kinds else ''} samples in split {split!r}")
        self.crop, self.crops_per_image, self.flips, self.seed = crop, crops_per_image, flips, seed
        self.cache = cache
        self.epoch = 0
        self._arrays: dict[str, PairArrays] = {}
        self._raws: dict[str, np.ndarray] = {}  # RAW levels by file: the renderings of one RAW share it
        small = [s.id for s in self.samples if crop and min(s.height, s.width) < crop]
        if small:
            raise RawedgeError(self.data_dir, f"crop {crop} is larger than {len(small)} sample(s), e.g. {small[0]}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples) * self.crops_per_image

    def arrays(self, j: int) -> PairArrays:
        sample = self.samples[j]
        if sample.id in self._arrays:
            return self._arrays[sample.id]
        arrays = load_pair(self.data_dir, sample, self._raws if self.cache else None)
        if self.cache:
            self._arrays[sample.id] = arrays
        return arrays

    def __getitem__(self, index: int) -> dict:
        if not self.crop:
            raise TypeError("this PairDataset has no crop size: use full_item()")
        j = index % len(self.samples)
        arrays = self.arrays(j)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        h, w = arrays.levels.shape
        top, left, flip_v, flip_h = bayer_safe_crop(rng, h, w, self.crop, self.flips)
        srgb = arrays.srgb[top:top + self.crop, left:left + self.crop]
        mosaic, thumb = arrays.mosaic_window(top, left, self.crop, self.crop), arrays.thumb
        if flip_v:
            srgb, mosaic, thumb = srgb[::-1], mosaic[::-1], thumb[:, ::-1]
        if flip_h:
            srgb, mosaic, thumb = srgb[:, ::-1], mosaic[:, ::-1], thumb[:, :, ::-1]
        return to_item(arrays, srgb, mosaic, thumb, self.samples[j])

    def full_item(self, j: int, center_crop: int | None = None) -> dict:
        """The whole sample (or its central ``center_crop`` square, at an even offset), unflipped."""
        arrays = self.arrays(j)
        if not center_crop:
            return to_item(arrays, arrays.srgb, arrays.mosaic, arrays.thumb, self.samples[j])
        h, w = arrays.levels.shape
        ch, cw = min(center_crop, h // 2 * 2), min(center_crop, w // 2 * 2)
        top, left = (h - ch) // 4 * 2, (w - cw) // 4 * 2
        srgb, mosaic = arrays.srgb[top:top + ch, left:left + cw], arrays.mosaic_window(top, left, ch, cw)
        return to_item(arrays, srgb, mosaic, arrays.thumb, self.samples[j])
