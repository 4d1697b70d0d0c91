"""The DNG corpus both tests/test_dng_validate.py and ``make interop`` write: every case the writer must get
right (the four CFA phases, white levels 255..16383, unequal black levels in a small range, non-square
pixels, odd sizes, orientations 1-8, a known camera, the generic profile), each made from an sRGB photo
by rawedge's analytic reverse ISP so that a reader's rendering can be compared with the photo."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "boxes_s40.jpg"
VALIDATOR_CACHE = Path.home() / ".cache" / "rawedge" / "dng_validate"
BUILD_SCRIPT = ROOT.parent / "shared" / "tools" / "dng-validate" / "build"


@dataclass
class Case:
    name: str
    photo: np.ndarray  # HxWx3 uint8 sRGB the DNG was made from, as stored (not rotated)
    raw: object  # rawedge.types.RawImage
    orientation: int = 1
    pixel_aspect: float = 1.0


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` as displayed under EXIF ``orientation`` (1..8)."""
    ops = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: a.swapaxes(0, 1)[:, ::-1],
           7: lambda a: a.swapaxes(0, 1)[::-1, ::-1], 8: lambda a: a.swapaxes(0, 1)[::-1]}
    return np.ascontiguousarray(ops[orientation](image))


def _photo(size: tuple[int, int] | None) -> tuple[np.ndarray, object]:
    from PIL import Image

    from rawedge.io.photo import read_photo

    photo = read_photo(SAMPLE)
    srgb, exif = photo.srgb, photo.exif
    if size:
        srgb = np.asarray(Image.fromarray(srgb).resize(size, Image.Resampling.BOX))
    return srgb, exif


def _make(name, srgb, exif, profile, orientation=1) -> Case:
    from rawedge.isp.illuminant import estimate_wb
    from rawedge.isp.pipeline import unprocess
    from rawedge.types import RawImage

    exif = dataclasses.replace(exif, orientation=orientation)
    gains, _ = estimate_wb(profile, exif)
    mosaic = unprocess(srgb.astype(np.float32) / 255.0, profile, gains)
    raw = RawImage.from_normalized(mosaic, profile, gains, exif)
    return Case(name, srgb, raw, orientation, float(profile.pixel_aspect))


def build_corpus(size: tuple[int, int] | None = (200, 150)) -> list[Case]:
    """The cases, from the bundled sample photo scaled to ``size`` (width, height; None = full size)."""
    from rawedge.profiles import bundled_profiles
    from rawedge.types import CameraProfile

    srgb, exif = _photo(size)
    generic = CameraProfile.generic()
    profiles = bundled_profiles()
    cases = [_make("generic", srgb, exif, generic)]
    for cfa in ("RGGB", "GRBG", "GBRG", "BGGR"):
        cases.append(_make(f"cfa-{cfa}", srgb, exif, dataclasses.replace(generic, name=f"generic {cfa}", cfa=cfa)))
    for white in (255, 1023, 4095, 16383):
        black = [0.0] * 4 if white == 255 else [64.0] * 4
        cases.append(_make(f"white-{white}", srgb, exif,
                           dataclasses.replace(generic, name=f"generic {white}", white_level=float(white),
                                               black_level=black)))
    cases.append(_make("black-2x2-small-range", srgb, exif,
                       dataclasses.replace(generic, name="generic 2x2 black", white_level=255.0,
                                           black_level=[4.0, 5.0, 6.0, 7.0])))
    cases.append(_make("black-2x2", srgb, exif,
                       dataclasses.replace(generic, name="generic 2x2 black 12-bit", white_level=4095.0,
                                           black_level=[60.0, 62.0, 64.0, 66.0])))
    for aspect in (1.5345911949685533, 0.75):
        cases.append(_make(f"aspect-{aspect:.2f}", srgb, exif,
                           dataclasses.replace(generic, name=f"generic aspect {aspect:.2f}", pixel_aspect=aspect)))
    h, w = srgb.shape[:2]
    odd = srgb[: h - 1 if h % 2 == 0 else h, : w - 1 if w % 2 == 0 else w][:137, :191]
    cases.append(_make("odd-size", np.ascontiguousarray(odd), exif, generic))
    cases.append(_make("odd-size-grbg", np.ascontiguousarray(odd[1:, 1:]), exif,
                       dataclasses.replace(generic, name="generic GRBG", cfa="GRBG")))
    for o in range(1, 9):
        cases.append(_make(f"orientation-{o}", srgb, exif, generic, orientation=o))
    for name, profile in profiles.items():  # known cameras: Canon (matrix, black 32), Kodak (no matrix, DC120 aspect)
        cases.append(_make("camera-" + name.replace(" ", "_"), srgb, exif, profile))
    return cases


def validator_dir() -> Path:
    import os

    return Path(os.environ.get("RAWEDGE_DNG_VALIDATE_DIR") or VALIDATOR_CACHE)


def find_or_build_validator(timeout: float = 900) -> tuple[Path | None, str]:
    """(path of Adobe's dng_validate, "") built once into ~/.cache/rawedge/dng_validate (or
    $RAWEDGE_DNG_VALIDATE_DIR) with ../shared/tools/dng-validate/build, or (None, why not)."""
    import fcntl
    import shutil
    import subprocess

    out = validator_dir()
    binary = out / "dng_validate"

    def works() -> bool:
        try:
            return subprocess.run([str(binary)], check=False, capture_output=True, timeout=60).returncode in (0, 1) and \
                binary.is_file()
        except (OSError, subprocess.SubprocessError):
            return False

    if binary.is_file() and works():
        return binary, ""
    if not BUILD_SCRIPT.is_file():
        return None, f"Adobe DNG SDK build script not found: {BUILD_SCRIPT}"
    if shutil.which("g++") is None:
        return None, "g++ is not installed (apt-get install g++); dng_validate cannot be built"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".build.lock", "w") as lock:  # xdist workers: one builds, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file() and works():
            return binary, ""
        try:
            done = subprocess.run(["bash", str(BUILD_SCRIPT), str(out)], check=False, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"building dng_validate took over {timeout:.0f} s"
        if done.returncode != 0 or not works():
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            hint = " (the SDK headers need libjxl-dev: apt-get install libjxl-dev)" if "jxl/" in tail else ""
            return None, f"building dng_validate failed (exit {done.returncode}){hint}: {tail}"
    return binary, ""


def validate(binary: Path, dng: Path, tif: Path | None = None) -> tuple[int, list[str], str]:
    """(exit status, the '***' lines (errors and warnings), all output) of dng_validate on ``dng``."""
    import subprocess

    args = [str(binary)] + (["-tif", str(tif.with_suffix(""))] if tif else []) + [str(dng)]
    done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=300)
    text = done.stdout + done.stderr
    return done.returncode, [line.strip() for line in text.splitlines() if "***" in line], text
