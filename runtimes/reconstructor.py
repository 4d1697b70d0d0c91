"""The Reconstructor: sRGB photo (numpy) in, camera RawImage out, on any runner.

It picks the camera profile and white balance, makes the thumbnail and canonical inputs once, cuts the
photo into aligned overlapping tiles (runtimes.tiling), runs them in batches, blends them at packed
resolution, fuses overexposure branches with one full-resolution mask, and maps the RGGB output back
to the camera's CFA phase and levels. Memory: the input photo, one float accumulator at packed
resolution (4 bytes per photo pixel), the uint16 output, a batch of tiles, and (for fusion models) a
packed mask; the photo is converted to float one tile or strip at a time.

Thread safety: a call keeps its state local; the runner serialises or parallelises inference as its
backend allows, so one Reconstructor can serve several threads.

Receptive field: a tile's border pixels see zero padding where the whole image would see neighbours,
so ``overlap`` must exceed the model's receptive-field radius (in sRGB pixels) for tiles to blend
invisibly. The raised-cosine window gives the inner border pixels almost no weight."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from rawedge.contract import THUMB_SIZE, canonical_inputs
from rawedge.errors import RawedgeError
from rawedge.isp.illuminant import estimate_wb
from rawedge.isp.ops import cfa_offsets, unpack
from rawedge.metadata.schema import ModelMeta
from rawedge.profiles import bundled_profiles, resolve_profile
from rawedge.types import CameraProfile, Exif, Photo, RawImage

from .base import Runner
from .factory import open_runner
from .fusion import DEFAULT_THRESHOLD, fuse, packed_mask_by_strips
from .tiling import Frame, TileGrid, round_up

OUTPUT_STRIP_ROWS = 64  # even: each strip starts on the same CFA row phase


@dataclass(frozen=True)
class FusionSettings:
    """Overexposure fusion from the model metadata's ``fusion`` object (written by models such as
    rawedge.models.oefusion): mask ``threshold`` and ``mode`` (runtimes.fusion.overexposure_mask),
    ``feather_radius`` in photo pixels, and ``outputs`` {"oe": name, "noe": name} of the two branches
    (default raw_oe and raw_noe)."""

    threshold: float = DEFAULT_THRESHOLD
    mode: str = "luma"
    feather_radius: int = 4
    oe_output: str = "raw_oe"
    noe_output: str = "raw_noe"

    @classmethod
    def from_meta(cls, meta: ModelMeta, outputs: list[str]) -> FusionSettings | None:
        """Settings when the model asks for fusion and has both branch outputs, else None."""
        f = meta.fusion
        if not f:
            return None
        names = f.get("outputs") or {}
        try:
            settings = cls(threshold=float(f.get("threshold", DEFAULT_THRESHOLD)), mode=str(f.get("mode", "luma")),
                           feather_radius=int(f.get("feather_radius", 4)), oe_output=names.get("oe", "raw_oe"),
                           noe_output=names.get("noe", "raw_noe"))
        except (TypeError, ValueError, AttributeError) as exc:
            raise RawedgeError(None, f"bad 'fusion' settings in the model metadata ({exc})") from None
        if settings.mode not in ("luma", "max"):
            raise RawedgeError(None, f"bad fusion mask mode {settings.mode!r} in the model metadata (luma or max)")
        if settings.oe_output in outputs and settings.noe_output in outputs:
            return settings
        return None


def _scale_of(srgb: np.ndarray) -> float:
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

    scale = np.float32(_scale_of(srgb))
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


class Reconstructor:
    """``Reconstructor.open("model.onnx", runtime="ort")``, then ``rec(srgb, exif=...) -> RawImage``.

    ``tile``/``overlap`` in sRGB pixels (default: the model's recommendation; ``tile=0``: the whole
    image in one piece, for dynamic-shape models); both are rounded to the model's ``align``.
    ``batch``: tiles per inference call."""

    def __init__(self, runner: Runner, tile: int | None = None, overlap: int | None = None, batch: int = 4):
        self.runner = runner.activate()
        meta = self.metadata = runner.metadata
        self.align = int(meta.align)
        specs = runner.input_specs()
        if "srgb" not in specs:
            raise RawedgeError(runner.model_path, f"model has no 'srgb' input (inputs: {', '.join(specs)})")
        self._static_batch = specs["srgb"][0]
        static_hw = {d for d in specs["srgb"][2:] if d is not None}
        if len(static_hw) > 1:
            raise RawedgeError(runner.model_path, f"model input srgb has non-square fixed size {specs['srgb']}")
        static = meta.static_tile or (static_hw.pop() if static_hw else None)
        if static and tile not in (None, static):
            raise RawedgeError(runner.model_path, f"this model runs fixed {static}x{static} tiles; tile={tile} is not possible")
        tile = static or (meta.tile if tile is None else tile)
        overlap = meta.overlap if overlap is None else overlap
        if tile < 0 or overlap < 0:
            raise RawedgeError(None, "tile and overlap must be >= 0")
        self.static_tile = static
        self.tile = 0 if tile == 0 else max(self.align, tile - tile % self.align)
        self.overlap = round_up(int(overlap), self.align)
        if self.tile and self.overlap >= self.tile:
            raise RawedgeError(None, f"overlap {self.overlap} must be smaller than the tile {self.tile}")
        self.batch = max(1, int(self._static_batch or batch))
        outputs = runner.output_names
        self.fusion = FusionSettings.from_meta(meta, outputs)
        if self.fusion is None and "raw" not in outputs:
            raise RawedgeError(runner.model_path, f"model has no 'raw' output (outputs: {', '.join(outputs)})")
        self._input_names = list(specs)
        self._embedded = {p.name: p for p in (CameraProfile.from_dict(d) for d in meta.camera_profiles)}
        self._bundled = bundled_profiles()

    @classmethod
    def open(cls, model_path: str | os.PathLike, runtime: str = "ort", precision: str | None = None,
             tile: int | None = None, overlap: int | None = None, batch: int = 4, threads: int | None = None,
             **runner_opts) -> Reconstructor:
        """Open ``model_path`` on ``runtime`` ("ort", "openvino", "trt") at ``precision``."""
        if runtime == "trt":
            if tile == 0:
                raise RawedgeError(model_path, "TensorRT engines are built for a maximum tile size; "
                                               "tile=0 (whole image) is not possible, give a tile size")
            runner_opts.setdefault("batch", batch)
            if tile:
                runner_opts.setdefault("tile", tile)
        runner = open_runner(model_path, runtime=runtime, precision=precision, threads=threads, **runner_opts)
        return cls(runner, tile=tile, overlap=overlap, batch=batch)

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self) -> Reconstructor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- camera profile ----------------------------------------------------------------------------
    def known_profiles(self) -> dict[str, CameraProfile]:
        """Profiles usable by name: the bundled ones, overridden by those embedded in the model."""
        return {**self._bundled, **self._embedded}

    def choose_profile(self, exif: Exif | None = None, profile: CameraProfile | None = None,
                       camera: str | None = None) -> tuple[CameraProfile, str]:
        """(profile, how): given > ``camera`` by name > the model's embedded profile for the EXIF model >
        a bundled one > the camera database > the model's 'generic' profile > CameraProfile.generic()
        (the policy is :func:`rawedge.profiles.resolve_profile`)."""
        if profile is not None:
            return profile, "given"
        found, _, how = resolve_profile(exif, camera=camera, profiles=self._bundled, embedded=self._embedded)
        return found, how

    # --- reconstruction ----------------------------------------------------------------------------
    @property
    def has_confidence(self) -> bool:
        """Whether the model predicts its own error (a ``sigma`` output, DESIGN.md)."""
        return "sigma" in self.runner.output_names

    def __call__(self, srgb: np.ndarray, exif: Exif | None = None, profile: CameraProfile | None = None,
                 wb=None, progress=None, confidence: bool = False) -> RawImage:
        """HxWx3 sRGB (uint8, uint16, or float in [0,1]) -> RawImage of the same HxW in the camera's
        CFA phase. ``wb``: [R,G,B] gains (default: :func:`rawedge.isp.illuminant.estimate_wb`, the profile's
        typical gains shifted to the EXIF light source when there is one). ``progress``:
        called as progress(tiles_done, tiles_total). ``confidence``: also fill ``RawImage.sigma``, the
        model's predicted error per photosite (normalised RAW units; costs 4 more bytes per pixel)."""
        srgb = check_photo(srgb)
        if confidence and not self.has_confidence:
            raise RawedgeError(self.runner.model_path, "this model has no confidence output ('sigma'); "
                                                       "use a model trained with confidence: true")
        exif = exif or Exif()
        profile, _ = self.choose_profile(exif, profile)
        gains = estimate_wb(profile, exif)[0] if wb is None else check_wb(wb)
        frame, acc, sums, sig = self._run_tiles(srgb, exif, profile, gains, progress, confidence)
        raw = self._to_raw(acc, sums, frame, profile, gains, exif)
        if sig is not None:
            raw.sigma = self._unpack_to_photo(sig, sums, frame)
        return raw

    def reconstruct_photo(self, photo: Photo, **kwargs) -> RawImage:
        raw = self(photo.srgb, exif=photo.exif, **kwargs)
        raw.source = photo.source
        return raw

    def _constants(self, srgb, exif, profile, gains) -> dict[str, np.ndarray]:
        consts = {"thumb": photo_thumbnail(srgb)[None], "exif": exif.to_vector()[None]}
        consts.update(canonical_inputs(profile.cam2rgb(), gains))
        return {k: v.astype(np.float32) for k, v in consts.items() if k in self._input_names}

    def _run_tiles(self, srgb, exif, profile, gains, progress, confidence: bool = False):
        h, w = srgb.shape[:2]
        frame = Frame.for_photo(h, w, cfa_offsets(profile.cfa)["R"], self.align, min_size=self.static_tile or 0)
        grid = TileGrid.plan(frame, self.tile or max(frame.height, frame.width), self.overlap)
        consts = self._constants(srgb, exif, profile, gains)
        scale = np.float32(_scale_of(srgb))
        mask = None
        if self.fusion is not None:
            f = self.fusion

            def read_rows(r0, r1):
                return np.clip(frame.gather(srgb, r0, 0, r1 - r0, frame.width).astype(np.float32) / scale, 0, 1)

            mask = packed_mask_by_strips(read_rows, frame.height, frame.width, f.threshold, f.mode, f.feather_radius)
        acc = np.zeros((4, frame.height // 2, frame.width // 2), dtype=np.float32)
        sig = np.zeros_like(acc) if confidence else None
        positions = list(grid.positions())
        for start in range(0, len(positions), self.batch):
            chunk = positions[start:start + self.batch]
            tiles = np.stack([frame.gather(srgb, y0, x0, grid.th, grid.tw) for _, _, y0, x0 in chunk])
            tiles = np.clip(tiles.astype(np.float32) / scale, 0.0, 1.0).transpose(0, 3, 1, 2)
            out = self._infer(tiles, consts)
            for k, (i, j, y0, x0) in enumerate(chunk):
                py, px, ph, pw = y0 // 2, x0 // 2, grid.th // 2, grid.tw // 2
                if mask is None:
                    tile_raw = out["raw"][k]
                else:
                    tile_raw = fuse(out[self.fusion.oe_output][k], out[self.fusion.noe_output][k],
                                    mask[py:py + ph, px:px + pw])
                weight = grid.window_y(i)[:, None] * grid.window_x(j)[None, :]
                acc[:, py:py + ph, px:px + pw] += tile_raw * weight
                if sig is not None:
                    sig[:, py:py + ph, px:px + pw] += out["sigma"][k] * weight
            if progress is not None:
                progress(min(start + self.batch, len(positions)), len(positions))
        return frame, acc, grid.weight_sums(frame), sig

    def _infer(self, tiles: np.ndarray, consts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(tiles)
        run_n = self._static_batch or n
        if run_n > n:  # fixed-batch model: pad with copies of the last tile
            tiles = np.concatenate([tiles, np.repeat(tiles[-1:], run_n - n, axis=0)])
        feed = {k: np.repeat(v, run_n, axis=0) for k, v in consts.items()}
        feed["srgb"] = np.ascontiguousarray(tiles)
        out = self.runner.infer(feed)
        expected = (run_n, 4, tiles.shape[2] // 2, tiles.shape[3] // 2)
        for name in ((self.fusion.oe_output, self.fusion.noe_output) if self.fusion else ("raw",)):
            if out[name].shape != expected:
                raise RawedgeError(self.runner.model_path, f"output {name!r} has shape {out[name].shape}, "
                                                           f"expected {expected} (packed RGGB at half the tile size)")
        return {k: v[:n] for k, v in out.items()}

    @staticmethod
    def _unpack_to_photo(acc, sums, frame: Frame) -> np.ndarray:
        """A blended packed map -> HxW float32 per photosite, cropped like the RAW."""
        sy, sx = sums
        packed = acc / (sy[:, None] * sx[None, :])
        return np.ascontiguousarray(unpack(packed, "RGGB")[frame.dy:frame.dy + frame.h, frame.dx:frame.dx + frame.w])

    def _to_raw(self, acc, sums, frame: Frame, profile, gains, exif) -> RawImage:
        """Normalise the blend, unpack RGGB on the frame, crop back to the photo (camera CFA phase at the
        origin) and quantise to sensor levels, strip by strip."""
        sy, sx = sums
        bayer = np.empty((frame.h, frame.w), dtype=np.uint16)
        template = None
        for r0 in range(0, frame.h, OUTPUT_STRIP_ROWS):
            r1 = min(frame.h, r0 + OUTPUT_STRIP_ROWS)
            p0, p1 = (r0 + frame.dy) // 2, (r1 + frame.dy + 1) // 2
            packed = acc[:, p0:p1] / (sy[p0:p1, None] * sx[None, :])
            strip = unpack(packed, "RGGB")[r0 + frame.dy - 2 * p0:r1 + frame.dy - 2 * p0, frame.dx:frame.dx + frame.w]
            part = RawImage.from_normalized(strip, profile, gains, exif)
            bayer[r0:r1] = part.bayer
            if template is None:
                template = part
        return dataclasses.replace(template, bayer=bayer)
