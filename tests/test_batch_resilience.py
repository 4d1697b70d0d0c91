"""Batch resilience: `rawedge infer DIR --keep-going` over 100 photos of which 10 are broken converts the
90 (odd but valid ones included), names each broken file with its reason, and exits 1; without
--keep-going it stops at the first failure and says how many were not attempted."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rawedge.cli import main
from rawedge.io.atomic import TEMP_PREFIX
from rawedge.io.photo import read_photo, write_jpeg, write_png
from tests.conftest import SAMPLE_JPEG
from tests.test_faults import png_claiming

# name -> (bytes maker, what the failure line must say)
BROKEN = {
    "b00_truncated.jpg": (lambda ok: ok[:200], "cannot decode image"),
    "b01_empty.jpg": (lambda ok: b"", "not an image Pillow can read"),
    "b02_text.jpg": (lambda ok: b"Hello, I am not a photo.\n" * 10, "not an image Pillow can read"),
    "b03_grayscale.png": (lambda ok: _png(np.zeros((20, 20), np.uint8)), "grayscale image"),
    "b04_one_pixel.png": (lambda ok: _png(np.zeros((1, 1, 3), np.uint8)), "at least 2x2 is needed"),
    "b05_giant_header.png": (lambda ok: png_claiming(20_000, 20_000), "over the 1 MP limit"),
    "b06_truncated.tif": (lambda ok: _tiff()[:150], "cannot decode TIFF"),
    "b07_gray16.png": (lambda ok: _png(np.zeros((20, 20), np.uint16)), "grayscale image"),
    "b08_bad_data.png": (lambda ok: _png_bad_data(), "cannot decode image (broken data stream"),
    "b09_noise.jpg": (lambda ok: bytes(np.random.default_rng(9).integers(0, 256, 4000, dtype=np.uint8)),
                      "not an image Pillow can read"),
}


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _tiff() -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((20, 20, 3), np.uint8), photometric="rgb")
    return buf.getvalue()


def _png_bad_data() -> bytes:
    """Damaged compressed pixel data. (Pillow does not check IDAT CRCs, so a flipped bit that leaves the
    zlib stream decodable goes unnoticed; a broken stream is caught.)"""
    data = bytearray(_png(np.full((20, 20, 3), 128, np.uint8)))
    idat = data.index(b"IDAT")
    data[idat + 6:idat + 12] = b"\xff" * 6
    return bytes(data)


@pytest.fixture(scope="module")
def model(tiny_unet):
    return tiny_unet[0]


@pytest.fixture(scope="module")
def shoot(tmp_path_factory):
    """100 tiny photos: 90 good (JPEG, PNG, 16-bit TIFF, RGBA, CMYK, odd sizes, garbage EXIF), 10 broken."""
    import tifffile

    d = tmp_path_factory.mktemp("shoot")
    photo = read_photo(SAMPLE_JPEG)
    good = []
    for i in range(90):
        y, x = (i * 37) % 500, (i * 53) % 700
        px = np.ascontiguousarray(photo.srgb[y:y + 24 + i % 5, x:x + 32 + i % 7])
        kind = i % 6
        name = f"g{i:02d}"
        if kind == 0:
            write_jpeg(d / f"{name}.jpg", px, photo.exif)
        elif kind == 1:
            write_png(d / f"{name}.png", px, photo.exif)
        elif kind == 2:
            tifffile.imwrite(d / f"{name}.tif", px.astype(np.uint16) * 257, photometric="rgb")
        elif kind == 3:
            Image.fromarray(np.dstack([px, np.full(px.shape[:2], 200, np.uint8)]), "RGBA").save(d / f"{name}.png")
        elif kind == 4:
            Image.fromarray(px).convert("CMYK").save(d / f"{name}.jpg")
        else:  # pixels fine, EXIF nonsense: the photo converts, the EXIF is dropped
            exif = Image.Exif()
            exif[271] = "Nikon™ é"
            exif[274] = 77
            exif.get_ifd(0x8769)[33434] = (1, 0)
            Image.fromarray(px).save(d / f"{name}.jpg", exif=exif)
        good.append(name)
    ok = (d / "g00.jpg").read_bytes()
    for name, (make, _) in BROKEN.items():
        (d / name).write_bytes(make(ok))
    (d / "notes.txt").write_text("not a photo suffix: ignored")
    (d / "subfolder.jpg").mkdir()  # a directory with a photo's name: ignored
    return d, good


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_keep_going_converts_the_good_ones_and_reports_each_broken_one(model, shoot, tmp_path):
    src, good = shoot
    out = tmp_path / "raws"
    code, text = run("infer", src, "--model", model, "-o", out, "--keep-going", "--max-pixels", 1_000_000,
                     "--tile", 64, "--overlap", 16, "--threads", 1)
    assert code == 1
    assert "rawedge: 10 of 100 photos failed:" in text and "not attempted" not in text
    for name, (_, reason) in BROKEN.items():
        lines = [line for line in text.splitlines() if line.strip().startswith(str(src / name) + ":")]
        assert len(lines) == 1 and reason in lines[0], (name, lines)
    assert "Traceback" not in text
    written = sorted(p.stem for p in out.iterdir())
    assert written == good  # the 90, and nothing for the broken ones
    assert not [p for p in out.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert len(re.findall(r"^wrote ", text, re.MULTILINE)) == 90
    from rawedge.io.raw import read_raw

    back = read_raw(out / "g05.dng")  # garbage EXIF: converted, orientation dropped, make made ASCII
    assert back.exif.orientation == 1 and back.exif.make == "Nikon? ?"


def test_without_keep_going_the_run_stops_at_the_first_failure(model, shoot, tmp_path):
    src, _ = shoot
    out = tmp_path / "raws"
    code, text = run("infer", src, "--model", model, "-o", out, "--max-pixels", 1_000_000, "--tile", 64,
                     "--overlap", 16, "--threads", 1)
    assert code == 1
    # files are sorted: b00_truncated.jpg comes first and fails; nothing after it is attempted
    assert "rawedge: 1 of 100 photos failed, 99 not attempted (use --keep-going to go on after a failure):" in text
    assert "b00_truncated.jpg: cannot decode image" in text
    assert not out.exists() or list(out.iterdir()) == []
