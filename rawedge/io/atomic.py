"""Write-then-rename, so a failed or killed run never leaves a partial file at the target path."""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from rawedge.errors import RawedgeError

TEMP_PREFIX = ".rawedge-tmp-"
# A temporary's name records who made it: .rawedge-tmp-<pid>@<host>-<random><suffix>. The next run in
# the directory removes temporaries whose process is gone (SIGKILL, power loss) at once; those of other
# hosts (shared file systems), and older unnamed ones, after ``max_age_s``.
_OWNER = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)@([^-/]*)-")
_WRITE_ERRORS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                 errno.EFBIG: "file too large for the file system or the file-size limit (ulimit -f)",
                 errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:64] or "host"


def temp_prefix() -> str:
    """The prefix of this process's temporaries (files of atomic_output, staging folders of export)."""
    return f"{TEMP_PREFIX}{os.getpid()}@{_host()}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists (another user's) or not a PID we can judge: keep it
    return True


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
    """Remove temporaries (files or staging folders) left in ``directory`` by killed runs: at once when
    their process, on this host, is gone; otherwise once older than ``max_age_s``. They are never at a
    target path, only beside it."""
    removed = 0
    host = _host()
    for name in glob.glob(os.path.join(os.fspath(directory), glob.escape(TEMP_PREFIX) + "*")):
        owner = _OWNER.match(os.path.basename(name))
        try:
            dead = owner is not None and owner.group(2) == host and not _process_alive(int(owner.group(1)))
            if dead or time.time() - os.path.getmtime(name) >= max_age_s:
                if os.path.isdir(name) and not os.path.islink(name):
                    shutil.rmtree(name)
                else:
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
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(), suffix=suffix or target.suffix, dir=target.parent or ".")
    except OSError as exc:
        raise RawedgeError(target, f"cannot write: {write_error(exc)}") from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        _remove_quietly(tmp)
        raise RawedgeError(target, f"cannot write: {write_error(exc, os.path.dirname(tmp))}") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_error(exc: OSError, directory: str | os.PathLike | None = None) -> str:
    """A short reason for a failed write (full disk, quota, file-size limit, read-only...). numpy reports
    a short write without an errno ("N requested and M written"): ``directory`` tells which it was."""
    if exc.errno in _WRITE_ERRORS:
        return _WRITE_ERRORS[exc.errno]
    if exc.errno is None and directory is not None:
        with contextlib.suppress(OSError):
            if shutil.disk_usage(directory).free < 1 << 20:
                return _WRITE_ERRORS[errno.ENOSPC]
        with contextlib.suppress(ImportError, OSError, ValueError):
            import resource

            if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
                return _WRITE_ERRORS[errno.EFBIG]
    return exc.strerror or str(exc)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
