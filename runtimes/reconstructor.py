"""The Reconstructor: sRGB photo (numpy) in, camera RawImage out, on any runner; the one definition of
what a model sees, for `rawedge infer`, `rawedge eval` and the INT8 calibration feeds.

Three steps, each usable alone: :meth:`Reconstructor.plan` (camera profile and white balance, the
model's per-photo inputs, frame and tiles: runtimes.plan), :meth:`Reconstructor.run` (the tiles through
the runner, batch by batch) and :meth:`Reconstructor.blend` (the outputs accumulated with a smooth
window, overexposure branches fused with one full-resolution mask, turned into a RawImage in the
camera's CFA phase and levels: runtimes.blend). Memory stays bounded by a batch of tiles plus the
output buffers; the photo is converted to float one tile or strip at a time.

Thread safety: a call keeps its state local; the runner serialises or parallelises inference as its
backend allows, so one Reconstructor can serve several threads.

Receptive field: a tile's border pixels see zero padding where the whole image would see neighbours,
so ``overlap`` must exceed the model's receptive-field radius (in sRGB pixels) for tiles to blend
invisibly. The raised-cosine window gives the inner border pixels almost no weight."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.isp.ops import cfa_offsets
from rawedge.profiles import bundled_profiles
from rawedge.tiling import Frame, TileGrid, tile_sizes
from rawedge.types import CameraProfile, Exif, Photo, RawImage

from .base import Runner
from .blend import Blend
from .factory import open_runner
from .fusion import FusionSettings
from .plan import (
    Batch,
    CameraOptions,
    Plan,
    camera_options,
    check_photo,
    choose_camera,
    model_constants,
    pick_profile,
)

LOG = logging.getLogger("rawedge.runtimes")
OOM_MARKERS = ("outofmemory", "cudaerrormemoryallocation", "failedtoallocate", "alloc_failed", "bad_alloc")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether a backend's exception means it ran out of memory (CUDA, cuDNN, TensorRT, ONNX Runtime and
    OpenVINO each word it their own way)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower().replace(" ", "")
    return any(marker in text for marker in OOM_MARKERS)


# The working tile and the pixels of tiles per call, by measurement: `rawedge infer` of a 12 MP JPEG with the
# bundled model, OpenVINO INT8, 2-core x86, 4 interleaved runs each (README, Speed): 512 px tiles in calls
# of 4, best 2.98 s / median 3.34 s / 497 MB; 1024 px in calls of 1, 2.54 / 3.11 s / 450 MB; 1024 px in calls
# of 2, 2.62 / 2.92 s / 553 MB. Larger tiles cut the overlap's repeated work (14 instead of 17 MP of tiles at
# 12 MP); about 1 MP a call keeps memory at that of four 512 px tiles.
WORK_TILE = 1024
WORK_PIXELS = 1024 * 1024
TRT_BATCH = 4  # TensorRT engines are built for a maximum batch; unchanged (no GPU measurement here)


def default_batch(tile: int) -> int:
    """Tiles per call when none is given: about WORK_PIXELS of tiles (1 for the whole image, tile 0)."""
    return max(1, WORK_PIXELS // (tile * tile)) if tile else 1


class Reconstructor:
    """``Reconstructor.open("model.onnx", runtime="ort")``, then ``rec(srgb, exif=...) -> RawImage``.

    ``tile``/``overlap`` in sRGB pixels (default tile: :data:`WORK_TILE` or the model's recommendation if
    larger, on TensorRT the model's, since its engine is built for it; default overlap: the model's;
    ``tile=0``: the whole image in one piece, for dynamic-shape models); both are rounded to the model's
    ``align``. ``batch``: tiles per inference call (default: about :data:`WORK_PIXELS` of tiles a call)."""

    def __init__(self, runner: Runner, tile: int | None = None, overlap: int | None = None, batch: int | None = None):
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
        self.static_tile = static
        if tile is None:
            tile = meta.tile if runner.backend == "trt" else max(meta.tile, WORK_TILE)
        self.tile, self.overlap = tile_sizes(static or tile, meta.overlap if overlap is None else overlap, self.align)
        self.batch = max(1, int(self._static_batch or batch or default_batch(self.tile)))
        outputs = runner.output_names
        self.fusion = FusionSettings.from_meta(meta, outputs)
        if self.fusion is None and "raw" not in outputs:
            raise RawedgeError(runner.model_path, f"model has no 'raw' output (outputs: {', '.join(outputs)})")
        self._input_names = list(specs)
        self._embedded = {p.name: p for p in (CameraProfile.from_dict(d) for d in meta.camera_profiles)}
        self._bundled = bundled_profiles()

    @classmethod
    def open(cls, model_path: str | os.PathLike, runtime: str = "ort", precision: str | None = None,
             tile: int | None = None, overlap: int | None = None, batch: int | None = None, threads: int | None = None,
             confidence: bool = True, **runner_opts) -> Reconstructor:
        """Open ``model_path`` on ``runtime`` ("ort", "openvino", "trt") at ``precision``. ``confidence``
        False: the caller will not ask for the model's ``sigma``, so a runtime that can skip computing it
        does (OpenVINO; ``reconstruct(confidence=True)`` is then an error)."""
        if not confidence and runtime == "openvino":
            runner_opts.setdefault("skip_outputs", ("sigma",))
        if runtime == "trt":
            if tile == 0:
                raise RawedgeError(model_path, "TensorRT engines are built for a maximum tile size; "
                                               "tile=0 (whole image) is not possible, give a tile size")
            runner_opts.setdefault("batch", batch or TRT_BATCH)
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

    # --- camera profile and white balance ------------------------------------------------------------
    def known_profiles(self) -> dict[str, CameraProfile]:
        """Profiles usable by name: the bundled ones, overridden by those embedded in the model."""
        return {**self._bundled, **self._embedded}

    def choose_profile(self, exif: Exif | None = None, profile: CameraProfile | None = None,
                       camera: str | None = None) -> tuple[CameraProfile, str]:
        """(profile, how): given > ``camera`` by name > the model's embedded profile for the EXIF model >
        a bundled one > the camera database > the model's 'generic' profile > CameraProfile.generic()
        (the policy is :func:`rawedge.profiles.resolve_profile`)."""
        return pick_profile(exif, self._bundled, self._embedded, profile=profile, camera=camera)

    def camera_options(self, profile: CameraProfile | None = None, wb=None, camera: str | None = None,
                       camera_profile: str | os.PathLike | None = None, like: str | os.PathLike | None = None,
                       cam2rgb=None) -> CameraOptions:
        """The user's camera options (a profile, [R,G,B] gains, a camera name, a profile JSON, a RAW file
        of the same camera, a camera->sRGB matrix), checked and resolved once for any number of photos."""
        return camera_options(self._bundled, self._embedded, profile=profile, wb=wb, camera=camera,
                              camera_profile=camera_profile, like=like, cam2rgb=cam2rgb)

    # --- plan, run, blend -----------------------------------------------------------------------------
    @property
    def has_confidence(self) -> bool:
        """Whether the model predicts its own error (a ``sigma`` output, DESIGN.md)."""
        return "sigma" in self.runner.output_names

    def plan(self, srgb: np.ndarray, exif: Exif | None = None, camera: CameraOptions | None = None,
             thumb: np.ndarray | None = None) -> Plan:
        """What the model will see of this photo (HxWx3 uint8, uint16, or float in [0,1]): profile and
        white balance from ``camera`` (default: by the EXIF, gains by
        :func:`rawedge.isp.illuminant.estimate_wb`), the per-photo inputs, frame and tiles. ``thumb``:
        the whole photo's thumbnail when ``srgb`` is a crop of it."""
        srgb = check_photo(srgb)
        exif = exif or Exif()
        camera = camera or CameraOptions()
        profile, gains, how = choose_camera(exif, camera, self._bundled, self._embedded)
        h, w = srgb.shape[:2]
        frame = Frame.for_photo(h, w, cfa_offsets(profile.cfa)["R"], self.align, min_size=self.static_tile or 0)
        grid = TileGrid.plan(frame, self.tile or max(frame.height, frame.width), self.overlap,
                             align=None if self.static_tile else self.align)
        cam2rgb = profile.cam2rgb() if camera.cam2rgb is None else camera.cam2rgb
        constants = model_constants(srgb, exif, cam2rgb, gains, self._input_names, thumb)
        return Plan(srgb, exif, profile, gains, how, frame, grid, constants, self.batch, self._static_batch)

    def run(self, plan: Plan, progress=None) -> Iterator[tuple[Batch, dict[str, np.ndarray]]]:
        """The plan's tiles through the runner, one batch at a time: (batch, the runner's outputs).
        ``progress``: called as progress(tiles_done, tiles_total) after each batch is used."""
        done, total = 0, len(plan)
        for batch in plan.batches():
            yield batch, self._infer(batch.feed)
            done += len(batch.positions)
            if progress is not None:
                progress(done, total)

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The runner on one feed. Out of (GPU) memory, the batch size is halved (one warning line) and the
        feed runs in pieces of that size, as do all later feeds; a fixed-batch model cannot be split."""
        n = len(feed["srgb"])
        if n > self.batch and not self._static_batch:
            return self._in_pieces(feed, self.batch)
        try:
            return self.runner.infer(feed)
        except Exception as exc:
            if n == 1 or self._static_batch or not is_out_of_memory(exc):
                raise
            self.batch = n // 2
            LOG.warning(f"rawedge: {self.runner.backend} ran out of memory with {n} tiles a call; "
                        f"retrying with {self.batch}")
            return self._in_pieces(feed, self.batch)

    def _in_pieces(self, feed: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
        n = len(feed["srgb"])
        parts = [self._infer({k: v[i:i + size] for k, v in feed.items()}) for i in range(0, n, size)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def blend(self, plan: Plan, results: Iterable[tuple[Batch, dict[str, np.ndarray]]],
              confidence: bool = False) -> Blend:
        """Accumulate ``results`` (from :meth:`run`, or outputs computed elsewhere for the plan's batches);
        ``.raw()`` of the result is the RawImage. ``confidence``: also blend the model's ``sigma``."""
        if confidence and not self.has_confidence:
            if "sigma" in self.runner.skip_outputs:
                raise RawedgeError(self.runner.model_path, "opened without its confidence output "
                                                           "(Reconstructor.open(..., confidence=True) keeps it)")
            raise RawedgeError(self.runner.model_path, "this model has no confidence output ('sigma'); "
                                                       "use a model trained with confidence: true")
        acc = Blend(plan, self.fusion, confidence, source=self.runner.model_path)
        for batch, outputs in results:
            acc.add(batch, outputs)
        return acc

    def reconstruct(self, plan: Plan, progress=None, confidence: bool = False) -> RawImage:
        """plan -> run -> blend: the RawImage of a planned photo (``sigma`` filled when ``confidence``: the
        model's predicted error per photosite, normalised RAW units; 4 more bytes per pixel)."""
        return self.blend(plan, self.run(plan, progress), confidence).raw()  # run is lazy: blend checks first

    def __call__(self, srgb: np.ndarray, exif: Exif | None = None, profile: CameraProfile | None = None,
                 wb=None, progress=None, confidence: bool = False, camera: str | None = None,
                 camera_profile: str | os.PathLike | None = None, like: str | os.PathLike | None = None) -> RawImage:
        """HxWx3 sRGB (uint8, uint16, or float in [0,1]) -> RawImage of the same HxW in the camera's CFA
        phase. ``profile``/``wb``/``camera``/``camera_profile``/``like``: as :meth:`camera_options` (default:
        the EXIF camera, the profile's typical gains shifted to the EXIF light source)."""
        options = self.camera_options(profile=profile, wb=wb, camera=camera, camera_profile=camera_profile, like=like)
        return self.reconstruct(self.plan(srgb, exif, options), progress, confidence)

    def reconstruct_photo(self, photo: Photo, **kwargs) -> RawImage:
        raw = self(photo.srgb, exif=photo.exif, **kwargs)
        raw.source = photo.source
        return raw
