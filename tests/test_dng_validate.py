"""Adobe's DNG SDK (dng_validate 1.7.1, the code inside Lightroom and Camera Raw) on a corpus of rawedge DNGs:
every CFA phase, white levels 255..16383, non-square pixels, odd sizes, orientations 1-8, known cameras and
the generic profile; each file exit 0 with no "*** Error" and no "*** Warning". The validator is built once
into ~/.cache/rawedge/dng_validate (about 10-30 s with g++); the test skips, saying why, where it cannot be."""
from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import tifffile

from tests.conftest import RAW_FILES, ROOT, SAMPLE_JPEG, needs_shared

if str(ROOT) not in sys.path:  # the interop package lives beside tests/, outside the installed package
    sys.path.insert(0, str(ROOT))

from interop.corpus import build_corpus, find_or_build_validator, validate
from rawedge.io.dng import CROP_MARGIN, THUMBNAIL_SIZE, camera_identity, write_dng
from rawedge.io.raw import read_raw
from rawedge.types import CameraProfile, Exif, RawImage


@pytest.fixture(scope="session")
def dng_validate():
    binary, why = find_or_build_validator()
    if binary is None:
        pytest.skip(f"Adobe's dng_validate is not available: {why}")
    return binary


@pytest.fixture(scope="module")
def corpus():
    return build_corpus()


def _check(binary, path) -> list[str]:
    code, stars, _ = validate(binary, path)
    return ([f"exit {code}"] if code else []) + stars


def test_corpus_passes_dng_validate(dng_validate, corpus, tmp_path):
    failures = {}
    for i, case in enumerate(corpus):
        out = tmp_path / f"{case.name}.dng"
        write_dng(out, case.raw, preview=case.photo if i % 2 else None)  # both thumbnail sources
        problems = _check(dng_validate, out)
        if problems:
            failures[case.name] = problems
    assert not failures, failures


def test_adobe_rendering_matches_the_photo(dng_validate, corpus, tmp_path):
    """Size, orientation and brightness (BaselineExposure) of Adobe's default rendering."""
    from interop.corpus import orient

    for case in [c for c in corpus if c.name.startswith(("orientation-", "generic", "aspect-"))]:
        out = tmp_path / f"{case.name}.dng"
        write_dng(out, case.raw, preview=case.photo)
        code, stars, _ = validate(dng_validate, out, tif=tmp_path / f"{case.name}.tif")
        assert code == 0 and not stars, (case.name, stars)
        image = tifffile.imread(tmp_path / f"{case.name}.tif")
        expected = orient(case.photo, case.orientation)
        if case.pixel_aspect == 1.0:
            assert image.shape == expected.shape, case.name
            assert np.corrcoef(image.mean(axis=2).ravel(), expected.mean(axis=2).ravel())[0, 1] > 0.9, case.name
        else:
            h, w = expected.shape[:2]
            wide = image.shape[1] / image.shape[0] / (w / h)
            assert wide == pytest.approx(case.pixel_aspect, rel=0.02), case.name
        assert abs(float(image.mean()) - float(expected.mean())) < 12, case.name


def test_cli_unprocess_output_passes(dng_validate, tmp_path):
    from click.testing import CliRunner

    from rawedge.cli import main

    args = ["unprocess", str(SAMPLE_JPEG), "-o", str(tmp_path / "u.dng")]
    if RAW_FILES:  # --like a RAW of another camera than the photo's (a Kodak DC120: white 255, no matrix)
        args += ["--like", str(RAW_FILES[-10])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert _check(dng_validate, tmp_path / "u.dng") == []


def test_cli_infer_output_passes(dng_validate, tmp_path):
    """What users get from the learned model: the bundled model's DNG of the sample (a known camera) and of
    a photo with no camera in its EXIF (the generic profile)."""
    from click.testing import CliRunner

    from rawedge.cli import main
    from rawedge.io.photo import read_photo, write_jpeg

    anonymous = tmp_path / "anonymous.jpg"
    write_jpeg(anonymous, read_photo(SAMPLE_JPEG).srgb[:301, :457])  # no EXIF, odd size
    for photo, out in ((SAMPLE_JPEG, tmp_path / "s.dng"), (anonymous, tmp_path / "a.dng")):
        result = CliRunner().invoke(main, ["infer", str(photo), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert _check(dng_validate, out) == [], out.name


@needs_shared
@pytest.mark.parametrize("index", [0, 4, 12, 22], ids=lambda i: RAW_FILES[i].name if i < len(RAW_FILES) else str(i))
def test_shared_raw_round_trip_passes(dng_validate, index, tmp_path):
    write_dng(tmp_path / "r.dng", read_raw(RAW_FILES[index]))
    assert _check(dng_validate, tmp_path / "r.dng") == []


# --- the layout, without the validator ----------------------------------------------------------------
def _raw(profile: CameraProfile, exif: Exif, shape=(34, 50)) -> RawImage:
    mosaic = np.random.default_rng(0).random(shape).astype(np.float32)
    return RawImage.from_normalized(mosaic, profile, np.array([2.0, 1.0, 1.6]), exif)


def test_layout_thumbnail_subifd_crop_exif(tmp_path):
    p = CameraProfile(name="Test Cam", cfa="GBRG", black_level=[64] * 4, white_level=4095, make="Test", model="Cam",
                      calibration_illuminant=17)
    exif = Exif(exposure_time=1 / 60, iso=400, f_number=2.8, focal_length=35, make="Test", model="Cam",
                orientation=6, datetime="2024-05-06 07:08:09", light_source=3)
    raw = _raw(p, exif, (301, 517))
    write_dng(tmp_path / "t.dng", raw)
    with tifffile.TiffFile(tmp_path / "t.dng") as tif:
        ifd0 = tif.pages[0]
        assert ifd0.tags["NewSubfileType"].value == 1 and ifd0.photometric == 2
        assert max(ifd0.shape[:2]) == THUMBNAIL_SIZE and ifd0.shape[2] == 3
        assert ifd0.tags["Orientation"].value == 6 and ifd0.tags["CalibrationIlluminant1"].value == 17
        assert ifd0.tags["BaselineExposure"].value == (-75, 100)
        assert len(ifd0.pages) == 1  # one SubIFD
        cfa = ifd0.pages[0]
        assert cfa.tags["NewSubfileType"].value == 0 and cfa.photometric == 32803
        assert cfa.shape == (301 + 2 * CROP_MARGIN, 517 + 2 * CROP_MARGIN)
        assert cfa.tags["DefaultCropOrigin"].value == (CROP_MARGIN, CROP_MARGIN)
        assert cfa.tags["DefaultCropSize"].value == (517, 301)
        assert cfa.tags["BlackLevelRepeatDim"].value == (1, 1)
        data = cfa.asarray()
        assert np.array_equal(data[CROP_MARGIN:-CROP_MARGIN, CROP_MARGIN:-CROP_MARGIN], raw.bayer)
        # the margin keeps the CFA colours: the padded pixel (y, x) repeats one of the same 2x2 position
        assert np.array_equal(data[:CROP_MARGIN:2, CROP_MARGIN], raw.bayer[CROP_MARGIN:0:-2, 0])
        exif_ifd = ifd0.tags["ExifTag"].value
        assert exif_ifd["ExposureTime"] == (1, 60) and exif_ifd["ISOSpeedRatings"] == 400
        assert exif_ifd["FNumber"] == (14, 5) and exif_ifd["FocalLength"] == (35, 1)
        assert exif_ifd["DateTimeOriginal"] == "2024:05:06 07:08:09" and exif_ifd["LightSource"] == 3
        assert 33434 not in ifd0.tags and 33434 not in cfa.tags  # EXIF values only in the EXIF IFD
    back = read_raw(tmp_path / "t.dng")
    assert np.array_equal(back.bayer, raw.bayer) and back.cfa == "GBRG"
    assert back.exif.iso == 400 and back.exif.orientation == 6 and back.exif.datetime == "2024-05-06 07:08:09"


def test_black_levels_single_pattern_and_small_range(tmp_path):
    def dim_and_levels(black, white):
        p = CameraProfile(name="B", black_level=black, white_level=white)
        raw = _raw(p, Exif())
        write_dng(tmp_path / "b.dng", raw)
        with tifffile.TiffFile(tmp_path / "b.dng") as tif:
            t = tif.pages[0].pages[0].tags
            return t["BlackLevelRepeatDim"].value, t["BlackLevel"].value, raw, tif.pages[0].pages[0].asarray()

    assert dim_and_levels([64] * 4, 4095)[:2] == ((1, 1), (64, 1))
    assert dim_and_levels([60, 62, 64, 66], 4095)[0] == (2, 2)  # the range is large enough for the SDK
    dim, level, raw, _ = dim_and_levels([4, 5, 6, 7], 255)  # 2x2 black below 512 levels: SDK overflow
    assert dim == (1, 1) and level == (0, 1)  # rescaled to black 0, white 65535, each position on its own
    back = read_raw(tmp_path / "b.dng")
    assert back.white_level == 65535 and np.allclose(back.normalized(), raw.normalized(), atol=1e-5)


def test_camera_identity_follows_the_colour_data():
    sony = Exif(make="SONY", model="ILCE-7M3")
    generic = _raw(CameraProfile.generic(), sony)
    make, model, unique = camera_identity(generic)
    assert (make, model) == ("SONY", "ILCE-7M3") and unique == "rawedge generic (SONY ILCE-7M3)"
    canon = CameraProfile(name="Canon PowerShot S40", make="Canon", model="Canon PowerShot S40")
    like = _raw(canon, sony)  # --like a RAW of another camera: the colour data is the Canon's
    assert camera_identity(like) == ("SONY", "ILCE-7M3", "Canon PowerShot S40")
    assert camera_identity(_raw(dataclasses.replace(canon, model="S40"), Exif()))[2] == "Canon S40"


def test_thumbnail_from_preview_or_mosaic(tmp_path):
    from rawedge.io.photo import read_photo
    from rawedge.isp.illuminant import estimate_wb
    from rawedge.isp.pipeline import unprocess

    photo = read_photo(SAMPLE_JPEG)
    profile = CameraProfile.generic()
    gains, _ = estimate_wb(profile, photo.exif)
    raw = RawImage.from_normalized(unprocess(photo.to_float(), profile, gains), profile, gains, photo.exif)
    thumbs = []
    for preview in (photo.srgb, None):
        write_dng(tmp_path / "p.dng", raw, preview=preview)
        thumbs.append(tifffile.TiffFile(tmp_path / "p.dng").pages[0].asarray().astype(float))
    assert thumbs[0].shape == thumbs[1].shape == (192, 256, 3)
    assert np.abs(thumbs[0] - thumbs[1]).mean() < 6  # the forward ISP renders the photo back
    from rawedge.errors import RawedgeError

    with pytest.raises(RawedgeError, match="preview"):
        write_dng(tmp_path / "x.dng", raw, preview=np.zeros((4, 4), np.uint8))


def test_linear_tone_curve_variant_only_changes_the_look(tmp_path):
    """``make interop`` measures Adobe's colour on this variant: identity ProfileToneCurve, BaselineExposure 0."""
    raw = _raw(CameraProfile.generic(), Exif())
    write_dng(tmp_path / "l.dng", raw, linear_tone_curve=True)
    with tifffile.TiffFile(tmp_path / "l.dng") as tif:
        tags = tif.pages[0].tags
        assert tags["BaselineExposure"].value == (0, 100)
        assert tuple(tags["ProfileToneCurve"].value) == (0.0, 0.0, 1.0, 1.0)
        assert np.array_equal(tif.pages[0].pages[0].asarray()[CROP_MARGIN:-CROP_MARGIN, CROP_MARGIN:-CROP_MARGIN],
                              raw.bayer)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("aspect", [1.0, 1.5, 0.75])
def test_interop_libraw_crop_follows_flip_and_stretch(orientation, aspect):
    """interop.run crops LibRaw's rendered DefaultCrop margin in its flipped, stretched frame (orientations
    5 and 7, LibRaw flips 4 and 7, were cropped wrongly before)."""
    from types import SimpleNamespace

    from interop.corpus import orient
    from interop.run import LIBRAW_FLIP, libraw_default_crop

    h, w, m = 30, 40, 4
    sx, sy = (aspect, 1.0) if aspect >= 1 else (1.0, 1.0 / aspect)
    frame = np.zeros((round((h + 2 * m) * sy), round((w + 2 * m) * sx), 3), np.uint8)
    frame[round(m * sy):round((m + h) * sy), round(m * sx):round((m + w) * sx)] = 255
    sizes = SimpleNamespace(height=h + 2 * m, width=w + 2 * m, crop_top_margin=m, crop_left_margin=m,
                            crop_height=h, crop_width=w, pixel_aspect=aspect, flip=LIBRAW_FLIP[orientation])
    cropped = libraw_default_crop(orient(frame, orientation), sizes)
    assert cropped.min() == 255 and cropped.shape[:2] == orient(frame[round(m * sy):round((m + h) * sy),
                                                                      round(m * sx):round((m + w) * sx)],
                                                                orientation).shape[:2]
