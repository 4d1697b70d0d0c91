"""Every shared RAW file: read -> DNG -> read back by rawpy gives the same mosaic, levels, CFA, WB."""
import numpy as np
import pytest
import rawpy

from rawedge.io.dng import write_dng
from rawedge.io.raw import read_raw
from tests.conftest import RAW_FILES, needs_shared


@needs_shared
def test_shared_files_cover_phases_depths_and_missing_matrices():
    raws = [read_raw(p) for p in RAW_FILES]
    assert len(raws) == 28
    assert {r.cfa for r in raws} >= {"RGGB", "GRBG"}
    assert {int(r.white_level) for r in raws} >= {255, 1023, 16383}
    assert any(not r.profile.has_color_matrix for r in raws) and any(r.profile.has_color_matrix for r in raws)


@needs_shared
@pytest.mark.parametrize("path", RAW_FILES, ids=[p.name for p in RAW_FILES])
def test_dng_round_trip(path, tmp_path):
    src = read_raw(path)
    out = tmp_path / (path.stem + ".dng")
    write_dng(out, src)
    back = read_raw(out)
    assert np.array_equal(back.bayer, src.bayer)
    assert back.cfa == src.cfa
    assert np.allclose(back.black_level, src.black_level) and back.white_level == src.white_level
    assert np.allclose(back.as_shot_neutral, src.as_shot_neutral, rtol=1e-5)
    assert back.profile.has_color_matrix == src.profile.has_color_matrix
    if src.profile.has_color_matrix:
        assert np.allclose(back.profile.color_matrix, src.profile.color_matrix, atol=1e-4)
    assert back.profile.pixel_aspect == pytest.approx(src.profile.pixel_aspect, rel=1e-5)
    for key in ("exposure_time", "iso", "f_number", "focal_length", "make", "model"):
        a, b = getattr(src.exif, key), getattr(back.exif, key)
        assert (a == pytest.approx(b, rel=1e-3)) if isinstance(a, float) else a == b, key
    with rawpy.imread(str(out)) as raw:
        rgb = raw.postprocess(half_size=True, user_flip=0)
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.std() > 1.0


@pytest.mark.parametrize("cfa", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_synthetic_dng_all_phases(cfa, tmp_path, rng):
    from rawedge.types import CameraProfile, Exif, RawImage

    p = CameraProfile(name="Test Cam", cfa=cfa, black_level=[64, 65, 66, 67], white_level=4095, make="Test",
                      model="Cam", color_matrix=np.linalg.inv(np.diag([1.0, 0.9, 1.1])).tolist())
    mosaic = rng.random((34, 50)).astype(np.float32)
    raw = RawImage.from_normalized(mosaic, p, np.array([2.0, 1.0, 1.6]), Exif(exposure_time=1 / 60, iso=400))
    write_dng(tmp_path / "s.dng", raw)
    back = read_raw(tmp_path / "s.dng")
    assert back.cfa == cfa and np.array_equal(back.bayer, raw.bayer)
    assert np.allclose(back.black_level, raw.black_level) and back.exif.iso == 400
    assert np.allclose(back.wb_gains(), [2.0, 1.0, 1.6], rtol=1e-5)


@pytest.mark.parametrize("illuminant", [17, 21])
def test_calibration_illuminant_round_trips(illuminant, tmp_path, rng):
    """CalibrationIlluminant1 is read back from the DNG tag (LibRaw reports none): a matrix calibrated
    under illuminant A (17) stays labelled A, not D65."""
    from rawedge.types import CameraProfile, Exif, RawImage

    matrix = [[0.9, -0.2, -0.1], [-0.3, 1.2, 0.1], [-0.05, 0.2, 0.6]]
    p = CameraProfile(name="Tungsten Cam", cfa="RGGB", black_level=[64] * 4, white_level=4095, make="Test",
                      model="Tungsten Cam", color_matrix=matrix, calibration_illuminant=illuminant)
    raw = RawImage.from_normalized(rng.random((34, 50)).astype(np.float32), p, np.array([1.5, 1.0, 2.5]), Exif())
    write_dng(tmp_path / "a.dng", raw)
    back = read_raw(tmp_path / "a.dng")
    assert back.profile.calibration_illuminant == illuminant
    assert np.allclose(back.profile.color_matrix, matrix, atol=1e-4)


def test_no_matrix_reads_back_as_d65_default(tmp_path, rng):
    from rawedge.types import ILLUMINANT_D65, CameraProfile, Exif, RawImage

    p = CameraProfile(name="No Matrix", black_level=[0] * 4, white_level=1023, calibration_illuminant=17)
    raw = RawImage.from_normalized(rng.random((34, 50)).astype(np.float32), p, np.array([2.0, 1.0, 1.5]), Exif())
    write_dng(tmp_path / "n.dng", raw)
    back = read_raw(tmp_path / "n.dng")
    assert back.profile.color_matrix is None and back.profile.calibration_illuminant == ILLUMINANT_D65
