"""Photos to their result files, what `rawedge infer` does: read each, reconstruct it (the Reconstructor's
plan -> run -> blend), measure the round trip, and write the RAW with its confidence map and preview as
one unit (a failure leaves none of them). The Reconstructor is passed in, so this module imports no
runtime.

Several photos run as a three-stage pipeline (:func:`convert_photos`): while photo k goes through the
model, photo k+1 is decoded and photo k-1 rendered back and written, each on its own thread, so the
single-threaded stages (JPEG decoding, DNG writing) fill the cores the model leaves idle."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
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
    (_, result), = convert_photos(rec, [(photo_path, target)], fmt, camera, confidence, preview, max_pixels,
                                  progress)
    if isinstance(result, BaseException):
        raise result
    return result


def read_ahead(photo_path: Path, max_pixels: int | None = None) -> Future:
    """Start decoding ``photo_path`` on its own thread, e.g. while the model loads (`rawedge infer` does, so
    the first photo's JPEG decoding no longer waits for the model); give it to :func:`convert_photos`."""
    from rawedge.io.photo import read_photo

    pool = ThreadPoolExecutor(1, "rawedge-read-ahead")
    try:
        return pool.submit(read_photo, photo_path, max_pixels=max_pixels)
    finally:
        pool.shutdown(wait=False)  # the thread ends after this one photo


def convert_photos(rec, jobs, fmt: str, camera=None, confidence: bool = False, preview: bool = False,
                   max_pixels: int | None = None, progress=None, ahead: dict | None = None):
    """Yield ``(photo_path, Converted or the exception it raised)`` for each ``(photo_path, target)`` of
    ``jobs``, in order, with :func:`convert_photo`'s options. A result is yielded before the next photo's
    files are written, so a caller that stops at a failure leaves no output it was not told of. ``ahead``:
    {photo_path: :func:`read_ahead` future} of photos whose decoding has started already."""
    from rawedge.io.photo import read_photo

    ahead = dict(ahead or {})
    jobs = iter(jobs)
    with ThreadPoolExecutor(1, "rawedge-read") as reader, ThreadPoolExecutor(1, "rawedge-write") as writer:
        reads: deque = deque()

        def read_next() -> None:
            job = next(jobs, None)
            if job is not None:
                started = ahead.pop(job[0], None)
                reads.append((job, started or reader.submit(read_photo, job[0], max_pixels=max_pixels)))

        read_next()
        pending = None  # (photo path, the write in flight or the failure)
        while reads:
            (photo_path, target), decoding = reads.popleft()
            read_next()  # photo k+1 decodes while photo k runs
            try:
                photo = decoding.result()
                plan, raw = _reconstruct(rec, photo, camera, confidence, preview, progress)
                step = preview_step(photo.srgb.shape) if preview else 0
                outcome = None
            except Exception as exc:  # noqa: BLE001 - handed to the caller with its photo
                outcome = exc
            if pending is not None:
                yield _settle(*pending)
            if outcome is None:  # photo k-1 was reported: photo k may write now
                outcome = writer.submit(_finish, photo_path, target, fmt, photo, plan, raw, confidence,
                                        preview, step)
            pending = (photo_path, outcome)
        if pending is not None:
            yield _settle(*pending)


def _settle(photo_path: Path, outcome):
    if isinstance(outcome, Future):
        try:
            return photo_path, outcome.result()
        except Exception as exc:  # noqa: BLE001 - handed to the caller with its photo
            return photo_path, exc
    return photo_path, outcome


def _reconstruct(rec, photo, camera, confidence: bool, preview: bool, progress):
    plan = rec.plan(photo.srgb, photo.exif, camera)
    want_sigma = confidence or (preview and rec.has_confidence)
    raw = rec.reconstruct(plan, progress=progress, confidence=want_sigma)
    raw.source = photo.source
    return plan, raw


def _finish(photo_path: Path, target: Path, fmt: str, photo, plan, raw, confidence: bool, preview: bool,
            step: int) -> Converted:
    """Round trip, then the map, preview and RAW as one unit."""
    figure, back = round_trip(raw, photo.srgb, step)
    written = []
    try:  # no half result: the map and preview go with their RAW
        if confidence:
            write_confidence(confidence_path(target), raw.sigma)
            written.append(confidence_path(target))
        if preview:
            write_preview(preview_path(target), photo.srgb, back, raw.sigma, step)
            written.append(preview_path(target))
        write_result(target, raw, fmt, preview=photo.srgb)
    except BaseException:
        for extra in written:
            extra.unlink(missing_ok=True)
        raise
    h, w = raw.bayer.shape
    return Converted(Path(photo_path), Path(target), h, w, raw.cfa, raw.profile.name, plan.how, figure,
                     photo.converted_from, list(photo.exif.notes))
