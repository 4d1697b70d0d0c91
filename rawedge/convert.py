"""One photo to its result files, what `rawedge infer` does per photo: read it, reconstruct it (the
Reconstructor's plan -> run -> blend), measure the round trip, and write the RAW with its confidence map
and preview as one unit (a failure leaves none of them). The Reconstructor is passed in, so this module
imports no runtime."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rawedge.outputs import confidence_path, preview_path
from rawedge.roundtrip import preview_step, round_trip
from rawedge.writers import write_confidence, write_preview, write_result


@dataclass(frozen=True)
class Converted:
    """What one conversion wrote and how: the profile and white balance choice (``how``), the round-trip
    PSNR in dB, the ICC profile the photo was converted from, and EXIF notices."""

    photo: Path
    target: Path
    height: int
    width: int
    cfa: str
    profile: str
    how: str
    round_trip_db: float
    converted_from: str | None = None
    notes: list[str] = field(default_factory=list)


def convert_photo(rec, photo_path: Path, target: Path, fmt: str, camera=None, confidence: bool = False,
                  preview: bool = False, max_pixels: int | None = None, progress=None) -> Converted:
    """Convert ``photo_path`` with ``rec`` (a runtimes.Reconstructor) into ``target`` as ``fmt``;
    ``camera``: its ``camera_options`` (default: by the photo's EXIF); ``confidence``/``preview``: also
    write the confidence map / preview sheet beside it (rawedge.outputs names them)."""
    from rawedge.io.photo import read_photo

    photo = read_photo(photo_path, max_pixels=max_pixels)
    plan = rec.plan(photo.srgb, photo.exif, camera)
    want_sigma = confidence or (preview and rec.has_confidence)
    raw = rec.reconstruct(plan, progress=progress, confidence=want_sigma)
    raw.source = photo.source
    step = preview_step(photo.srgb.shape) if preview else 0
    figure, back = round_trip(raw, photo.srgb, step)
    written = []
    try:  # no half result: the map and preview go with their RAW
        if confidence:
            write_confidence(confidence_path(target), raw.sigma)
            written.append(confidence_path(target))
        if preview:
            write_preview(preview_path(target), photo.srgb, back, raw.sigma if want_sigma else None, step)
            written.append(preview_path(target))
        write_result(target, raw, fmt, preview=photo.srgb)
    except BaseException:
        for extra in written:
            extra.unlink(missing_ok=True)
        raise
    h, w = raw.bayer.shape
    return Converted(Path(photo_path), Path(target), h, w, raw.cfa, raw.profile.name, plan.how, figure,
                     photo.converted_from, list(photo.exif.notes))
