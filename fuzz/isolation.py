"""Run fuzz cases in a separate worker process: an address-space limit (RLIMIT_AS) bounds memory, the
parent enforces a per-case timeout, and a crash (segfault, abort, OOM kill) or hang kills only the
worker, which is restarted for the next case. Outcomes come back as ``Outcome(status, detail)``:

    ok / refused / usage   the target's own classification (success, RawedgeError, click usage error)
    failed                 an unexpected exception or a broken invariant (detail: the traceback)
    crash                  the worker died (detail: signal or exit status, tail of its stderr)
    timeout                the case ran past the time bound (the worker is killed)

Protocol: length-prefixed pickles on the worker's stdin/stdout; the worker moves its own stdout and
stderr (and so any C library's prints) to a log file so they cannot corrupt the channel."""
from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ACCEPTED = ("ok", "refused", "usage")


@dataclass
class Outcome:
    status: str
    detail: str = ""

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    chunks, left = [], n
    while left:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(fd: int, deadline: float | None = None):
    head = _read_exact(fd, 8, deadline)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack("<Q", head)[0], deadline)
    return None if body is None else pickle.loads(body)


class Worker:
    """A restartable worker process for ``targets`` (names in fuzz.targets.TARGETS)."""

    def __init__(self, memory_mb: int = 3072, timeout_s: float = 20.0, startup_timeout_s: float = 300.0,
                 env: dict | None = None):
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self.env = env or {}
        self.home = Path(tempfile.mkdtemp(prefix="rawedge-fuzz-"))
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.log_path = self.home / "worker.log"

    # --- lifecycle -----------------------------------------------------------------------------------
    def _limits(self) -> None:
        limit = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "RAWEDGE_CACHE_DIR": str(self.home / "cache"), "OMP_NUM_THREADS": "1", **self.env}
        self.proc = subprocess.Popen([sys.executable, "-m", "fuzz.isolation", str(self.home)], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     preexec_fn=self._limits)  # noqa: PLW1509 - started from one thread
        try:
            ready = _receive(self.proc.stdout.fileno(), time.monotonic() + self.startup_timeout_s)
        except TimeoutError:
            ready = None
        if ready != "ready":
            detail = self._death()
            raise RuntimeError(f"fuzz worker did not start: {detail}")

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc.stdin.close()
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        import shutil

        shutil.rmtree(self.home, ignore_errors=True)

    def _death(self) -> str:
        """Why the worker is gone (it is reaped here), with the end of its log."""
        proc = self.proc
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        self.close()
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        tail = ""
        if self.log_path.is_file():
            tail = self.log_path.read_bytes()[-2000:].decode("utf-8", "replace")
        return f"{how}\n{tail}"

    # --- cases --------------------------------------------------------------------------------------
    def run(self, target: str, case, timeout_s: float | None = None) -> Outcome:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self._death()
            self.start()
            self.restarts += 1
        try:
            _send(self.proc.stdin, (target, case))
            reply = _receive(self.proc.stdout.fileno(), time.monotonic() + (timeout_s or self.timeout_s))
        except TimeoutError:
            self._death()
            return Outcome("timeout", f"no answer within {timeout_s or self.timeout_s:.0f} s")
        except (BrokenPipeError, OSError, EOFError):
            reply = None
        if reply is None:
            return Outcome("crash", self._death())
        return Outcome(*reply)


# --- the worker side -------------------------------------------------------------------------------------
def serve(home: Path) -> None:
    """Answer (target, case) messages until stdin closes."""
    channel_in = os.fdopen(os.dup(0), "rb", buffering=0)
    channel_out = os.fdopen(os.dup(1), "wb")
    log = os.open(home / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)

    from fuzz.targets import Context, execute

    ctx = Context(home)
    _send(channel_out, "ready")
    while True:
        message = _receive(channel_in.fileno())
        if message is None:
            return
        target, case = message
        try:
            status, detail = execute(ctx, target, case)
        except MemoryError:
            status, detail = "failed", "MemoryError: the case needed more memory than the worker's limit"
        except BaseException:  # noqa: BLE001 - everything else is a finding, reported with its traceback
            status, detail = "failed", traceback.format_exc(limit=12)
        _send(channel_out, (status, detail))


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
