"""Which files are photos and which are camera RAWs, and the one folder scanner that finds them, so that
`infer`, `calibrate`, `data prepare`, `prior build` and `profile` all pick the same files of a folder."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})
RAW_SUFFIXES = frozenset({".crw", ".cr2", ".cr3", ".nef", ".arw", ".kdc", ".dng", ".orf", ".rw2", ".raf", ".pef",
                          ".srw"})


def is_photo(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in PHOTO_SUFFIXES


def is_raw(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in RAW_SUFFIXES


def scan(folder: str | os.PathLike, suffixes: Iterable[str], recursive: bool = False) -> list[Path]:
    """The files in ``folder`` (``recursive``: at any depth) whose suffix, in any case, is one of
    ``suffixes``, sorted; hidden files, and with ``recursive`` anything in hidden folders, are skipped
    (``._IMG_0001.CR2`` resource forks are not RAWs). An unreadable folder raises ``OSError``."""
    folder = Path(folder)
    wanted = {s.lower() for s in suffixes}
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in wanted and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))
