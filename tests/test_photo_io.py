import numpy as np
import pytest
from PIL import Image

from rawedge.errors import RawedgeError
from rawedge.io.photo import read_photo, write_jpeg
from rawedge.types import Exif


def test_jpeg_exif_round_trip(tmp_path, rng):
    img = (rng.random((20, 30, 3)) * 255).astype(np.uint8)
    exif = Exif(exposure_time=1 / 250, iso=800, f_number=5.6, focal_length=35.0, make="Canon",
                model="Canon PowerShot G2", orientation=6, datetime="2021-03-26 21:16:32")
    write_jpeg(tmp_path / "a.jpg", img, exif)
    photo = read_photo(tmp_path / "a.jpg")
    assert photo.srgb.shape == (20, 30, 3) and photo.srgb.dtype == np.uint8
    e = photo.exif
    assert e.exposure_time == pytest.approx(1 / 250) and e.iso == 800 and e.f_number == pytest.approx(5.6)
    assert e.focal_length == pytest.approx(35.0) and e.make == "Canon" and e.orientation == 6
    assert e.datetime == "2021-03-26 21:16:32"


def test_missing_exif_fields_are_none(tmp_path, rng):
    Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(tmp_path / "b.png")
    e = read_photo(tmp_path / "b.png").exif
    assert e == Exif()


def test_16bit_tiff_and_cmyk(tmp_path, rng):
    import tifffile

    arr = (rng.random((10, 12, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", arr, photometric="rgb")
    photo = read_photo(tmp_path / "c.tif")
    assert photo.srgb.dtype == np.uint16 and np.array_equal(photo.srgb, arr)
    Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).convert("CMYK").save(tmp_path / "d.jpg")
    assert read_photo(tmp_path / "d.jpg").srgb.shape == (8, 8, 3)


@pytest.mark.parametrize("case", ["gray", "tiny", "truncated", "text", "missing", "empty"])
def test_bad_photos_are_clear_errors(tmp_path, rng, case):
    f = tmp_path / f"{case}.jpg"
    if case == "gray":
        Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(f)
    elif case == "tiny":
        Image.fromarray(np.zeros((1, 5, 3), np.uint8)).save(f)
    elif case == "truncated":
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(f)
        f.write_bytes(f.read_bytes()[:300])
    elif case == "text":
        f.write_text("hello")
    elif case == "empty":
        f.write_bytes(b"")
    with pytest.raises(RawedgeError) as e:
        read_photo(f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def test_pixel_limit_refuses_before_decoding(tmp_path):
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(RawedgeError, match="limit"):
        read_photo(tmp_path / "big.png", max_pixels=5000)
