"""Faults: `rawedge infer` and `rawedge export` killed (SIGKILL) mid-write, a full disk, a file-size limit,
a read-only output directory, and a photo whose header claims 100 MP. Each leaves no partial file at
the target path, fails with one clear line, and the next run cleans the temporaries of dead runs."""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from rawedge.io.atomic import TEMP_PREFIX, clean_stale_temporaries, temp_prefix
from tests.conftest import ROOT, SAMPLE_JPEG

RAWEDGE = [sys.executable, "-m", "rawedge.cli"]

# Runs rawedge with os.replace held at the rename of a rawedge temporary: writes MARK, then waits for GO
# (or forever), so the test can SIGKILL the process with a finished temporary and no target yet.
HOLD_AT_RENAME = textwrap.dedent("""
    import os, sys, time
    real_replace = os.replace
    def held_replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(src)).startswith(".rawedge-tmp-") and os.fspath(dst).endswith(os.environ["HOLD_SUFFIX"]):
            with open(os.environ["HOLD_MARK"], "w") as fh:
                fh.write(os.fspath(src))
            while not os.path.exists(os.environ.get("HOLD_GO", "/nonexistent/go")):
                time.sleep(0.05)
        return real_replace(src, dst, *args, **kwargs)
    os.replace = held_replace
    from rawedge.cli import main
    main(sys.argv[1:], prog_name="rawedge")
""")


@pytest.fixture(scope="module")
def model(tiny_unet):
    return tiny_unet[:2]


def start_held(args, mark: Path, suffix: str, go: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "HOLD_MARK": str(mark), "HOLD_SUFFIX": suffix, "HOLD_GO": str(go or "/nonexistent/go"),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", HOLD_AT_RENAME, *map(str, args)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process ended before the held rename:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the held rename was never reached")
        time.sleep(0.05)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(TEMP_PREFIX))


def run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*RAWEDGE, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False, **kwargs)


# --- SIGKILL mid-write --------------------------------------------------------------------------------------
def test_infer_killed_mid_write_leaves_the_old_file_and_the_next_run_cleans_up(model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "boxes.dng"
    target.write_bytes(b"the previous result")  # a killed run must not damage what is there
    mark = tmp_path / "mark"
    proc = start_held(["infer", SAMPLE_JPEG, "--model", model[0], "-o", target, "--tile", 128, "--overwrite"], mark,
                      ".dng")
    wait_for(mark, proc)
    temp = Path(mark.read_text())
    assert temp.parent == out and temp.stat().st_size > 800 * 600 * 2  # the whole DNG, not yet renamed
    kill(proc)
    assert target.read_bytes() == b"the previous result"
    assert temporaries(out) == [temp.name]  # the dead run's temporary is all that is left

    done = run(["infer", SAMPLE_JPEG, "--model", model[0], "-o", target, "--tile", 128, "--overwrite"])
    assert done.returncode == 0, done.stderr
    assert temporaries(out) == []  # its process is gone: removed at once, not after an hour
    from rawedge.io.raw import read_raw

    assert read_raw(target).bayer.shape == (600, 800)


def test_export_killed_mid_write_leaves_nothing_and_the_next_run_cleans_up(model, tmp_path):
    torch = pytest.importorskip("torch")  # noqa: F841 - export needs it
    out = tmp_path / "models"
    out.mkdir()
    target = out / "unet.onnx"
    mark = tmp_path / "mark"
    proc = start_held(["export", model[1], "-o", target, "--no-check"], mark, "unet.onnx")
    wait_for(mark, proc)
    assert Path(mark.read_text()).parent == out
    kill(proc)
    assert not target.exists()
    left = temporaries(out)
    assert len(left) == 2  # the staging folder and the finished, unrenamed model
    assert any((out / name).is_dir() for name in left)

    # the next rawedge run writing there (any command: here a quick one) removes both
    done = run(["unprocess", SAMPLE_JPEG, "-o", out / "boxes.dng"])
    assert done.returncode == 0, done.stderr
    assert temporaries(out) == [] and not target.exists()


def test_stale_temporaries_of_dead_processes_go_at_once_others_wait(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(dead.stdout)
    host_prefix = temp_prefix().split("@", 1)[1]
    dead_file = tmp_path / f"{TEMP_PREFIX}{dead_pid}@{host_prefix}abc.dng"
    dead_dir = tmp_path / f"{TEMP_PREFIX}{dead_pid}@{host_prefix}stage"
    live_file = tmp_path / f"{temp_prefix()}live.dng"  # this process: alive
    other_host = tmp_path / f"{TEMP_PREFIX}{dead_pid}@elsewhere-xyz.dng"  # cannot judge its PID
    legacy_old = tmp_path / f"{TEMP_PREFIX}oldstyle.dng"
    legacy_new = tmp_path / f"{TEMP_PREFIX}newstyle.dng"
    for p in (dead_file, live_file, other_host, legacy_old, legacy_new):
        p.write_bytes(b"x")
    dead_dir.mkdir()
    (dead_dir / "model.onnx").write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(legacy_old, (two_hours_ago, two_hours_ago))
    assert clean_stale_temporaries(tmp_path, max_age_s=3600) == 3
    assert temporaries(tmp_path) == sorted(p.name for p in (live_file, other_host, legacy_new))


# --- full disk, file-size limit, read-only directory ----------------------------------------------------
def _in_mount_namespace(mount_options: str, directory: Path, command: str) -> subprocess.CompletedProcess:
    """Run ``command`` (sh) with a private tmpfs mounted on ``directory`` (needs root and unshare)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to mount a private tmpfs")
    script = f"mount -t tmpfs -o {mount_options} rawedge-test {directory} || exit 97\n{command}"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    if proc.returncode == 97:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    return proc


def test_full_disk_gives_a_clear_error_and_no_partial_file(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    rawedge = " ".join(RAWEDGE)
    proc = _in_mount_namespace("size=256k", disk, f"""
        {rawedge} unprocess {SAMPLE_JPEG} -o {disk}/boxes.dng; echo "status=$?"
        ls -A {disk}; echo "listed"
    """)
    assert "status=1" in proc.stdout, proc.stdout + proc.stderr
    assert f"rawedge: error: {disk}/boxes.dng: cannot write: no space left on device" in proc.stderr
    listing = proc.stdout.split("status=1", 1)[1].split("listed")[0].split()
    assert listing == []  # neither the DNG nor a temporary


def test_file_size_limit_gives_a_clear_error(tmp_path):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    out = tmp_path / "boxes.dng"
    proc = subprocess.run([*RAWEDGE, "unprocess", str(SAMPLE_JPEG), "-o", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False, preexec_fn=limit)
    assert proc.returncode == 1, proc.stderr
    assert "cannot write: file too large for the file system or the file-size limit" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_read_only_output_directory_gives_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    rawedge = " ".join(RAWEDGE)
    proc = _in_mount_namespace("ro,size=64k", ro, f"""
        {rawedge} unprocess {SAMPLE_JPEG} -o {ro}/boxes.dng; echo "status=$?"
    """)
    assert "status=1" in proc.stdout, proc.stdout + proc.stderr
    assert f"rawedge: error: {ro}/boxes.dng: output directory {ro} is not writable" in proc.stderr


@pytest.fixture
def public_dir():
    """A directory user nobody can enter (pytest's tmp_path lives under a root-only 0700 folder)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="rawedge-public-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unwritable_directory_for_an_ordinary_user(public_dir):
    """The same without mounts: as user nobody (root ignores permission bits)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as another user")
    tmp_path = public_dir
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                            "import rawedge"], cwd=ROOT, capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot run this Python: {probe.stderr.strip()[-200:]}")
    photo = tmp_path / "photo.jpg"
    shutil.copy(SAMPLE_JPEG, photo)
    photo.chmod(0o644)
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *RAWEDGE, "unprocess",
                           str(photo), "-o", str(locked / "boxes.dng")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 1 and "is not writable" in proc.stderr, proc.stderr
    assert list(locked.iterdir()) == []


# --- giant inputs ------------------------------------------------------------------------------------------
def png_claiming(width: int, height: int, complete: bool = True) -> bytes:
    """A PNG whose header says width x height RGB, with the data of one row: a complete zlib stream
    (Pillow fills the rest with zeros) or a cut one (Pillow reports a truncated image)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    row = zlib.compress(b"\x00" * (3 * width + 1))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", row if complete else row[:-4])
            + chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A JPEG cut after its frame header (SOF0), which claims width x height."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data[:sof + 20])


# The child's own peak: VmHWM of its address space. ru_maxrss is not it: Linux carries the parent's
# high-water mark across fork/exec, so a child of a large test worker would report the worker's memory.
MEASURED = ("import atexit, resource, sys\n"
            "def peak():\n"
            "    try:\n"
            "        return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
            "    except (OSError, StopIteration):\n"
            "        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "atexit.register(lambda: sys.stderr.write(f'\\npeak_rss_kb={peak()}\\n'))\n"
            "from rawedge.cli import main; main(sys.argv[1:], prog_name='rawedge')")


def peak_rss_mb(args, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """Run rawedge with ``args``; its own peak resident memory (MB), reported at exit."""
    proc = subprocess.run([sys.executable, "-c", MEASURED, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False, **kwargs)
    peak = [line for line in proc.stderr.splitlines() if line.startswith("peak_rss_kb=")]
    assert peak, proc.stderr
    return proc, int(peak[-1].split("=")[1]) / 1024


@pytest.mark.parametrize("command", ["infer", "unprocess"])
def test_100_megapixel_header_is_refused_before_allocation(model, tmp_path, command):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(10_000, 10_000))
    assert bomb.stat().st_size < 20_000
    extra = ["--model", model[0]] if command == "infer" else []
    proc = subprocess.run([*RAWEDGE, command, str(bomb), *extra, "--max-pixels", "50000000", "-o",
                           str(tmp_path / "x.dng")], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)))
    assert proc.returncode == 1, proc.stderr
    assert "image is 10000x10000 (100 MP), over the 50 MP limit (raise it with --max-pixels" in proc.stderr
    assert not (tmp_path / "x.dng").exists()


def test_default_limit_refuses_a_jpeg_claiming_4_gigapixels(tmp_path):
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(jpeg_claiming(65_000, 65_000))
    proc, peak = peak_rss_mb(["unprocess", bomb, "-o", tmp_path / "x.dng"])
    assert proc.returncode == 1 and "over the 120 MP limit" in proc.stderr, proc.stderr
    assert peak < 1000  # refused from the header: 4 GP of pixels would be 12 GB


def test_a_100_megapixel_claim_within_the_limit_fails_in_bounded_memory(tmp_path):
    """Allowed through (100 MP < the 120 MP default), the PNG's data runs out: Pillow's 300 MB buffer is
    the only large allocation, and the error is one line. (With a complete stream the 100 MP photo is
    converted: `rawedge unprocess` peaks near 690 MB, about 7 bytes per pixel, in strips.)"""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(10_000, 10_000, complete=False))
    proc, peak = peak_rss_mb(["unprocess", bomb, "-o", tmp_path / "x.dng"],
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)))
    assert proc.returncode == 1 and "cannot decode image" in proc.stderr, proc.stderr
    assert peak < 1200
    assert not (tmp_path / "x.dng").exists()


def test_unprocess_in_strips_matches_the_whole_image(tmp_path, monkeypatch):
    """`rawedge unprocess` works on strips of rows (bounded memory); the result is the same DNG."""
    from click.testing import CliRunner

    from rawedge.cli import core, main
    from rawedge.io.photo import read_photo, write_png
    from rawedge.io.raw import read_raw
    from rawedge.isp.pipeline import unprocess
    from rawedge.profiles import resolve_profile
    from rawedge.types import RawImage

    photo = read_photo(SAMPLE_JPEG)
    small = tmp_path / "small.png"
    write_png(small, np.ascontiguousarray(photo.srgb[:67, :45]), photo.exif)
    monkeypatch.setattr(core, "UNPROCESS_STRIP_ROWS", 8)
    result = CliRunner().invoke(main, ["unprocess", str(small), "-o", str(tmp_path / "s.dng")])
    assert result.exit_code == 0, result.output
    src = read_photo(small)
    profile, _, _ = resolve_profile(src.exif)
    gains = profile.typical_wb_gains()
    whole = RawImage.from_normalized(unprocess(src.to_float(), profile, gains), profile, gains, src.exif)
    np.testing.assert_array_equal(read_raw(tmp_path / "s.dng").bayer, whole.bayer)
