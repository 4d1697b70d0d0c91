"""The camera database: colour matrix, levels and a white-balance prior for about 800 cameras by EXIF
make and model, generated from LibRaw's colour table (``build.py``; numbers only, credited to LibRaw,
LGPL-2.1 / CDDL-1.0). Numpy only, never torch: the runtimes use it."""
from rawedge.cameradb.match import (
    SOURCE_NOTE,
    Entry,
    entries,
    find,
    get,
    lookup,
    names,
    normalise,
    normalise_make,
    search,
    to_profile,
)

__all__ = ["SOURCE_NOTE", "Entry", "entries", "find", "get", "lookup", "names", "normalise", "normalise_make",
           "search", "to_profile"]
