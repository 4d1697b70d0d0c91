"""Where results go, and the policy that never replaces a file the user did not ask to replace.

An output "exists" when its directory holds a file of the same name in any case (``IMG_0001.dng``
protects ``IMG_0001.DNG``: on a case-insensitive file system, as on most cameras' cards, macOS and
Windows, they are one file). The check reads the directory listing, so it gives the same answer on a
case-sensitive file system. Planning happens before any work, so a batch fails up front, not half-way."""
from __future__ import annotations

import os
from pathlib import Path

from rawedge.errors import RawedgeError

OVERWRITE_HINT = "pass --overwrite to replace it"
FORMATS = {"dng": ".dng", "tiff": ".tiff", "npy": ".npy"}
EXTENSION_FORMATS = {".dng": "dng", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}
CONFIDENCE_SUFFIX = ".confidence.png"
PREVIEW_SUFFIX = ".preview.png"


def existing_output(path: str | os.PathLike) -> Path | None:
    """The entry of ``path``'s directory whose name equals ``path``'s name in any case, or None."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.exists() or path.is_symlink():
        return path
    try:
        names = os.listdir(parent)
    except OSError:  # no such directory yet: nothing in it
        return None
    wanted = path.name.casefold()
    for name in names:
        if name.casefold() == wanted:
            return parent / name
    return None


def refuse_existing(paths, overwrite: bool) -> None:
    """One-line error naming the first output that already exists, unless ``overwrite``."""
    if overwrite:
        return
    for path in paths:
        found = existing_output(path)
        if found is not None:
            raise RawedgeError(found, f"already exists; {OVERWRITE_HINT}")


def is_dir_spec(output: str | None) -> bool:
    """``-o name/``: a directory, made if needed, even when it does not exist yet."""
    return bool(output) and output.endswith(("/", os.sep))


def confidence_path(target: Path) -> Path:
    """Where the confidence map of ``target`` goes (``photo.dng`` -> ``photo.confidence.png``)."""
    return target.with_name(target.stem + CONFIDENCE_SUFFIX)


def preview_path(target: Path) -> Path:
    """Where the side-by-side preview of ``target`` goes (``photo.dng`` -> ``photo.preview.png``)."""
    return target.with_name(target.stem + PREVIEW_SUFFIX)


def _to_file(output: str | None, many: bool) -> bool:
    """Whether ``output`` names one output file (not a directory: several photos, ``DIR/`` or an existing one)."""
    return bool(output) and not many and not is_dir_spec(output) and not Path(output).is_dir()


def choose_format(output: str | None, fmt: str | None, many: bool) -> str:
    """The output format: ``fmt``, else the output file's extension (.dng, .tif/.tiff, .npy), else dng.
    An extension that disagrees with ``fmt`` is an error, never a TIFF under a .dng name."""
    if not _to_file(output, many):
        return fmt or "dng"
    ext = Path(output).suffix.lower()
    by_ext = EXTENSION_FORMATS.get(ext)
    if by_ext is None:
        raise RawedgeError(output, f"unknown output extension {ext or '(none)'}: use .dng, .tif/.tiff or .npy "
                                   "(or end the name with / for a directory)")
    if fmt and fmt != by_ext:
        raise RawedgeError(output, f"the extension {ext} is {by_ext}, but --format is {fmt}; "
                                   f"use {FORMATS[fmt]} or leave --format out")
    return by_ext


def output_paths(photos: list[Path], output: str | None, fmt: str, many: bool) -> list[Path]:
    """Where each photo's result goes: beside the photo, into the directory ``output`` (made if needed;
    several photos, an existing directory, or a name ending in /), or (one photo) at the file ``output``.
    Two photos that would write the same file (in any case) are refused up front, and so is an output
    that is its own photo."""
    suffix = FORMATS[fmt]
    if _to_file(output, many):
        targets = [Path(output)]
    elif output:
        out_dir = Path(output)
        if out_dir.exists() and not out_dir.is_dir():
            raise RawedgeError(out_dir, "several photos need an output directory, this is a file")
        if not out_dir.exists() and not is_dir_spec(output) and out_dir.suffix.lower() in EXTENSION_FORMATS:
            raise RawedgeError(out_dir, "several photos need an output directory, this names a file "
                                        "(end it with / for a directory of that name)")
        out_dir.mkdir(parents=True, exist_ok=True)
        targets = [out_dir / (p.stem + suffix) for p in photos]
    else:
        targets = [p.with_suffix(suffix) for p in photos]
    seen: dict[str, Path] = {}
    for photo, target in zip(photos, targets):
        key = str(target.parent / target.name.casefold())
        if key in seen:
            raise RawedgeError(target, f"both {seen[key]} and {photo} would write it; convert them separately")
        if target.exists() and target.resolve() == photo.resolve():
            raise RawedgeError(target, "the output would replace the photo itself; choose another -o")
        seen[key] = photo
    return targets


def output_parts(target: Path, confidence: bool = False, preview: bool = False) -> list[Path]:
    """Every file one photo's conversion writes: the result, and its confidence map and preview if asked."""
    return [target] + ([confidence_path(target)] if confidence else []) + ([preview_path(target)] if preview else [])


def plan_outputs(files: list[Path], targets: list[Path], parts, many: bool, overwrite: bool):
    """(photos to convert with their targets, photos skipped). Without ``overwrite``: one photo whose output
    exists is an error; in a batch (several photos, or a directory) a photo whose outputs all exist is
    skipped (atomic writes: a present output is complete), so a rerun of an interrupted batch converts
    exactly the missing ones; one with only some of its outputs present is an error."""
    if overwrite:
        return list(zip(files, targets)), []
    todo, skipped = [], []
    for photo, target in zip(files, targets):
        wanted = parts(target)
        present = [existing_output(p) for p in wanted]
        if not any(present):
            todo.append((photo, target))
            continue
        first = next(p for p in present if p is not None)
        if not many:
            raise RawedgeError(first, f"already exists; {OVERWRITE_HINT}")
        if not all(present):
            missing = next(p for p, q in zip(wanted, present) if q is None)
            raise RawedgeError(first, f"already exists but {missing.name} does not; pass --overwrite to redo {photo}")
        skipped.append(photo)
    return todo, skipped
