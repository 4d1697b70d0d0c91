"""Write-then-rename, so a failed or killed run never leaves a partial file at the target path."""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path

from rawedge.errors import RawedgeError

TEMP_PREFIX = ".rawedge-tmp-"


def check_output_dir(path: str | os.PathLike) -> Path:
    """Fail early, with one line, if the output's directory is missing or not writable."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise RawedgeError(target, f"output directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise RawedgeError(target, f"output directory {parent} is not writable")
    return target


def clean_stale_temporaries(directory: str | os.PathLike, max_age_s: float = 0.0) -> int:
    """Remove temporaries left by a killed run (they are never at a target path, only beside it)."""
    import time

    removed = 0
    for name in glob.glob(os.path.join(os.fspath(directory), TEMP_PREFIX + "*")):
        try:
            if time.time() - os.path.getmtime(name) >= max_age_s:
                os.remove(name)
                removed += 1
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path in the target directory; rename it onto ``path`` only on success."""
    target = check_output_dir(path)
    clean_stale_temporaries(target.parent if str(target.parent) else ".", max_age_s=3600.0)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix or target.suffix, dir=target.parent or ".")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        _remove_quietly(tmp)
        if exc.errno == 28:
            raise RawedgeError(target, "no space left on device") from exc
        raise RawedgeError(target, f"cannot write: {exc.strerror or exc}") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
