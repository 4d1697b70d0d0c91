"""White-balance estimate: CCT -> xy against colour-science, EXIF LightSource round trips, the shift."""
import numpy as np
import pytest
from PIL import Image

from rawedge.io.exif import exif_from_tags
from rawedge.io.photo import read_photo, write_jpeg
from rawedge.isp.illuminant import LIGHT_SOURCES, REFERENCE_CCT, cct_to_xy, estimate_wb, illuminant_gains
from rawedge.profiles import bundled_profiles
from rawedge.types import CameraProfile, Exif


@pytest.mark.parametrize("cct", [4000.0, 5003.0, 6504.0, 7000.0, 7504.0, 12000.0, 25000.0])
def test_daylight_locus_matches_colour_science(cct):
    colour = pytest.importorskip("colour")
    np.testing.assert_allclose(cct_to_xy(cct), colour.temperature.CCT_to_xy_CIE_D(cct), atol=1e-6)


@pytest.mark.parametrize("cct", [1667.0, 2000.0, 2856.0, 3200.0, 3999.0])
def test_planckian_locus_matches_colour_science(cct):
    colour = pytest.importorskip("colour")
    np.testing.assert_allclose(cct_to_xy(cct), colour.temperature.CCT_to_xy_Kang2002(cct), atol=1e-6)


def test_generic_sensor_is_neutral_under_d65_and_wants_blue_under_tungsten():
    generic = CameraProfile.generic()  # sRGB primaries: D65 white is (1, 1, 1)
    np.testing.assert_allclose(illuminant_gains(generic.color_matrix, 6504.0), [1, 1, 1], atol=4e-3)
    r, g, b = illuminant_gains(generic.color_matrix, 2856.0)
    assert g == 1.0 and r < 0.8 and b > 2.0


def test_estimate_is_typical_without_a_light_source_and_shifts_with_one():
    profile = next(p for p in bundled_profiles().values() if p.color_matrix is not None)
    typical = profile.typical_wb_gains()
    for exif in (None, Exif(), Exif(light_source=255), Exif(light_source="3")):
        gains, how = estimate_wb(profile, exif)
        np.testing.assert_array_equal(gains, typical)
        assert "typical" in how
    day, _ = estimate_wb(profile, Exif(light_source=1))  # daylight is the reference: unchanged
    np.testing.assert_allclose(day, typical, rtol=1e-12)
    tungsten, how = estimate_wb(profile, Exif(light_source=3))
    assert "tungsten" in how and tungsten[1] == 1.0
    assert tungsten[2] / tungsten[0] > 1.5 * typical[2] / typical[0]  # much more blue gain than red
    shade, _ = estimate_wb(profile, Exif(light_source=11))
    assert shade[2] / shade[0] < typical[2] / typical[0]
    no_matrix = CameraProfile(name="x", color_matrix=None)
    gains, how = estimate_wb(no_matrix, Exif(light_source=3))
    np.testing.assert_array_equal(gains, no_matrix.typical_wb_gains())
    assert "no colour matrix" in how


def test_every_light_source_gives_finite_positive_gains():
    for profile in [CameraProfile.generic(), *bundled_profiles().values()]:
        for code in LIGHT_SOURCES:
            gains, _ = estimate_wb(profile, Exif(light_source=code))
            assert np.all(np.isfinite(gains)) and np.all(gains > 0) and gains[1] == 1.0
    assert REFERENCE_CCT == LIGHT_SOURCES[1][1]


def test_light_source_is_parsed_and_written(tmp_path):
    assert exif_from_tags({37384: 3}).light_source == 3
    assert exif_from_tags({37384: 0}).light_source is None
    assert exif_from_tags({37384: "x"}).light_source is None and exif_from_tags({37384: 999}).light_source is None
    path = tmp_path / "t.jpg"
    write_jpeg(path, np.full((16, 16, 3), 128, np.uint8), Exif(iso=100, light_source=3))
    assert read_photo(path).exif.light_source == 3
    assert Image.open(path).getexif().get_ifd(0x8769)[37384] == 3


def test_unprocess_uses_the_light_source_for_the_dng_white_balance(tmp_path):
    from click.testing import CliRunner

    from rawedge.cli import main as cli
    from rawedge.io.raw import read_raw

    rgb = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    gains = {}
    for code in (None, 3):
        src = tmp_path / f"p{code}.jpg"
        write_jpeg(src, rgb, Exif(make="Canon", model="Canon PowerShot G2", light_source=code))
        result = CliRunner().invoke(cli, ["unprocess", str(src), "-o", str(tmp_path / f"p{code}.dng")])
        assert result.exit_code == 0, result.output
        assert ("tungsten" in result.output) == (code == 3)
        gains[code] = read_raw(tmp_path / f"p{code}.dng").wb_gains()
    assert gains[3][2] / gains[3][0] > 1.5 * gains[None][2] / gains[None][0]
