"""Blending a photo's tile outputs back into one RAW: window-weighted sums at packed resolution over the
frame (overexposure branches fused first with one full-resolution mask, runtimes.fusion), normalised by
the window sums (rawedge.tiling), unpacked to the camera's CFA phase, cropped to the photo and quantised
to sensor levels strip by strip.

Memory: one float accumulator at packed resolution (4 bytes per photo pixel), the uint16 result, for
fusion models a packed mask, and for a confidence map a second accumulator."""
from __future__ import annotations

import dataclasses

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.isp.ops import unpack
from rawedge.types import RawImage

from .fusion import FusionSettings, fuse, packed_mask_by_strips
from .plan import Batch, Plan, photo_scale

OUTPUT_STRIP_ROWS = 64  # even: each strip starts on the same CFA row phase


def fusion_mask(plan: Plan, fusion: FusionSettings) -> np.ndarray:
    """The packed, feathered overexposure mask of the whole frame, computed strip by strip."""
    frame, srgb = plan.frame, plan.srgb
    scale = np.float32(photo_scale(srgb))

    def read_rows(r0, r1):
        return np.clip(frame.gather(srgb, r0, 0, r1 - r0, frame.width).astype(np.float32) / scale, 0, 1)

    return packed_mask_by_strips(read_rows, frame.height, frame.width, fusion.threshold, fusion.mode,
                                 fusion.feather_radius)


class Blend:
    """The running blend of one photo's tiles: :meth:`add` each batch's outputs, then :meth:`raw` (the
    RawImage `rawedge infer` writes) or :meth:`mosaic` (the same values before quantisation)."""

    def __init__(self, plan: Plan, fusion: FusionSettings | None = None, confidence: bool = False, source=None):
        self.plan, self.fusion, self.source = plan, fusion, source
        frame = plan.frame
        self.mask = fusion_mask(plan, fusion) if fusion is not None else None
        self.acc = np.zeros((4, frame.height // 2, frame.width // 2), dtype=np.float32)
        self.sig = np.zeros_like(self.acc) if confidence else None
        self.sums = plan.grid.weight_sums(frame)

    def add(self, batch: Batch, outputs: dict[str, np.ndarray]) -> None:
        """Accumulate one inference call's outputs (those of padding tiles are dropped)."""
        grid, f = self.plan.grid, self.fusion
        ph, pw = grid.th // 2, grid.tw // 2
        expected = (len(batch.feed["srgb"]), 4, ph, pw)
        for name in ((f.oe_output, f.noe_output) if f else ("raw",)):
            if outputs[name].shape != expected:
                raise RawedgeError(self.source, f"output {name!r} has shape {outputs[name].shape}, "
                                                f"expected {expected} (packed RGGB at half the tile size)")
        for k, (i, j, y0, x0) in enumerate(batch.positions):
            py, px = y0 // 2, x0 // 2
            if self.mask is None:
                tile_raw = outputs["raw"][k]
            else:
                tile_raw = fuse(outputs[f.oe_output][k], outputs[f.noe_output][k], self.mask[py:py + ph, px:px + pw])
            weight = grid.window_y(i)[:, None] * grid.window_x(j)[None, :]
            self.acc[:, py:py + ph, px:px + pw] += tile_raw * weight
            if self.sig is not None:
                self.sig[:, py:py + ph, px:px + pw] += outputs["sigma"][k] * weight

    def mosaic(self, r0: int = 0, r1: int | None = None) -> np.ndarray:
        """Rows [r0, r1) of the photo's mosaic (camera CFA phase at the origin): the blend normalised by
        the window sums, float32, not yet clipped or quantised."""
        frame = self.plan.frame
        r1 = frame.h if r1 is None else r1
        sy, sx = self.sums
        p0, p1 = (r0 + frame.dy) // 2, (r1 + frame.dy + 1) // 2
        packed = self.acc[:, p0:p1] / (sy[p0:p1, None] * sx[None, :])
        off = frame.dy - 2 * p0
        return np.ascontiguousarray(unpack(packed, "RGGB")[r0 + off:r1 + off, frame.dx:frame.dx + frame.w])

    def sigma(self) -> np.ndarray | None:
        """The blended confidence map, HxW float32 per photosite, cropped like the RAW (None: not asked)."""
        if self.sig is None:
            return None
        frame = self.plan.frame
        sy, sx = self.sums
        packed = self.sig / (sy[:, None] * sx[None, :])
        return np.ascontiguousarray(unpack(packed, "RGGB")[frame.dy:frame.dy + frame.h, frame.dx:frame.dx + frame.w])

    def raw(self) -> RawImage:
        """The mosaic quantised to the profile's sensor levels, strip by strip, with the plan's white
        balance and EXIF (and ``sigma`` when the confidence map was blended)."""
        plan = self.plan
        h, w = plan.frame.h, plan.frame.w
        bayer = np.empty((h, w), dtype=np.uint16)
        template = None
        for r0 in range(0, h, OUTPUT_STRIP_ROWS):
            r1 = min(h, r0 + OUTPUT_STRIP_ROWS)
            part = RawImage.from_normalized(self.mosaic(r0, r1), plan.profile, plan.gains, plan.exif)
            bayer[r0:r1] = part.bayer
            if template is None:
                template = part
        raw = dataclasses.replace(template, bayer=bayer)
        raw.sigma = self.sigma()
        return raw
