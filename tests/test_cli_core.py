"""The foundation commands as a user runs them, and their one-line errors."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLE_JPEG


def rawedge(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "rawedge.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_help_teaches_every_command():
    out = rawedge("--help")
    assert out.returncode == 0
    for cmd in ("info", "render", "unprocess", "profile"):
        assert cmd in out.stdout
        sub = rawedge(cmd, "--help")
        assert sub.returncode == 0 and "Example" in sub.stdout


def test_sample_unprocess_then_info(tmp_path):
    out = rawedge("unprocess", SAMPLE_JPEG, "-o", tmp_path / "s.dng")
    assert out.returncode == 0, out.stderr
    assert "Canon PowerShot S40" in out.stdout  # profile chosen from the EXIF model
    info = rawedge("info", tmp_path / "s.dng")
    assert info.returncode == 0 and "CFA RGGB" in info.stdout and "ISO 50" in info.stdout
    import rawpy

    with rawpy.imread(str(tmp_path / "s.dng")) as raw:
        assert raw.raw_image_visible.shape == (616, 816)  # the DNG's 8 px crop margin (rawedge.io.dng)
        assert (raw.sizes.crop_height, raw.sizes.crop_width) == (600, 800)


def test_render_and_profile(canon_raw, tmp_path):
    out = rawedge("render", canon_raw, "-o", tmp_path / "r.jpg")
    assert out.returncode == 0, out.stderr
    from rawedge.io.photo import read_photo

    photo = read_photo(tmp_path / "r.jpg")
    assert photo.srgb.shape == (1720, 2312, 3) and photo.exif.iso == 50
    assert rawedge("profile", canon_raw, "-o", tmp_path / "p.json").returncode == 0
    like = rawedge("unprocess", tmp_path / "r.jpg", "-o", tmp_path / "r.dng", "--camera-profile", tmp_path / "p.json")
    assert like.returncode == 0, like.stderr


@pytest.mark.parametrize("case", ["not-image", "missing", "bad-dir", "tiny"])
def test_bad_input_one_line_no_output(tmp_path, case):
    src = tmp_path / "in.jpg"
    dst = tmp_path / "out.dng"
    if case == "not-image":
        src.write_text("not an image")
    elif case == "tiny":
        from PIL import Image

        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(src)
    elif case == "bad-dir":
        src = SAMPLE_JPEG
        dst = tmp_path / "nowhere" / "out.dng"
    out = rawedge("unprocess", src, "-o", dst)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rawedge: error:") and str(src if case != "bad-dir" else dst) in lines[0]
    assert not dst.exists()
    assert not [p for p in Path(tmp_path).rglob("*.dng")]


def test_unsupported_raw(tmp_path):
    f = tmp_path / "fake.CRW"
    f.write_bytes(b"II\x1a\x00\x00\x00HEAPCCDR" + bytes(100))
    out = rawedge("info", f)
    assert out.returncode == 1 and str(f) in out.stderr and "Traceback" not in out.stderr
