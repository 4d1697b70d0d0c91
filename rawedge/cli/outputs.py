"""The CLI's output policy: never replace a file the user did not ask to replace.

An output "exists" when its directory holds a file of the same name in any case (``IMG_0001.dng``
protects ``IMG_0001.DNG``: on a case-insensitive file system, as on most cameras' cards, macOS and
Windows, they are one file). The check reads the directory listing, so it gives the same answer on a
case-sensitive file system."""
from __future__ import annotations

import os
from pathlib import Path

from rawedge.errors import RawedgeError

OVERWRITE_HINT = "pass --overwrite to replace it"


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
    return bool(output) and (output.endswith("/") or output.endswith(os.sep))
