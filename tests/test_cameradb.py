"""The camera database generated from LibRaw's colour table: parsing, matching, the profile policy, the CLI."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rawedge import cameradb
from rawedge.cameradb.build import TableError, parse_table, render
from rawedge.cameradb.match import normalise_make
from rawedge.cli import main
from rawedge.errors import RawedgeError
from rawedge.profiles import resolve_profile
from rawedge.types import Exif
from tests.conftest import ROOT

COLORDATA = ROOT.parent / "shared" / "data" / "camera-tables" / "colordata.cpp"
needs_table = pytest.mark.skipif(not COLORDATA.is_file(), reason="../shared/data/camera-tables is absent")
NIKON = Exif(make="NIKON CORPORATION", model="NIKON D850", iso=200.0)


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def entry(name):
    return next(e for e in cameradb.entries() if e.name == name)


# --- the generator ----------------------------------------------------------------------------------
@needs_table
def test_bundled_asset_is_the_generated_one():
    from rawedge.cameradb.build import build

    bundled = resources.files("rawedge").joinpath("assets/camera_db.json").read_text(encoding="utf-8")
    assert build(COLORDATA) == bundled  # regenerate: python -m rawedge.cameradb.build COLORDATA -o ...
    header = json.loads(bundled)
    assert header["count"] == len(header["entries"]) > 800
    assert header["libraw_commit"] == "e419de08001de28ae6988ecb22df47e52b9c5eaa" and "LibRaw" in header["licence"]


def test_parser_handles_comments_ifdef_hex_and_split_rows():
    source = """
    static const struct { unsigned m_idx; const char *prefix; int t_black, t_maximum, trans[12]; } table[] = {
      { LIBRAW_CAMERAMAKER_Canon, "EOS 5D Mark II", 0, 0x3cf0, // a comment with { braces }
        { 4716,603,-830,-7798,15474,2480,-1496,1937,6651 } },
    /* { LIBRAW_CAMERAMAKER_Canon, "commented", 0, 0, { 1,2,3,4,5,6,7,8,9 } }, */
    #ifdef USE_SOMETHING
      { LIBRAW_CAMERAMAKER_RaspberryPi, "RP_imx", 66, 0x3ff, { 1,2,3,4,5,6,7,8,9 } },
    #endif
      { LIBRAW_CAMERAMAKER_Sony, "DSC-F828", -12, 4095,
        { 7924,-1910,-777,-8226,15459,2998,-1517,2199,6818,-7242,11401,3481 } },
    };
    """
    rows = parse_table(source)
    assert [(r["maker"], r["prefix"], r["black"], r["white"]) for r in rows] == [
        ("Canon", "EOS 5D Mark II", 0, 0x3CF0), ("Sony", "DSC-F828", 12, 4095)]
    assert rows[1]["xyz_to_cam"] == [[0.7924, -0.191, -0.0777], [-0.8226, 1.5459, 0.2998], [-0.1517, 0.2199, 0.6818]]
    assert len(parse_table(source, frozenset({"USE_SOMETHING"}))) == 3
    text = render(rows, None)
    assert text.count('\n["') == 2 and json.loads(text)["entries"][0][:2] == ["Canon", "EOS 5D Mark II"]  # a row a line
    with pytest.raises(TableError, match="could be parsed"):
        parse_table(source.replace('"EOS 5D Mark II"', "EOS_5D"))  # a row the parser cannot read
    with pytest.raises(TableError, match="not an integer"):
        parse_table(source.replace("{ 4716", "{ 0x"))
    with pytest.raises(TableError):
        parse_table("int x;")


# --- the table and matching -------------------------------------------------------------------------
def test_known_entries():
    assert len(cameradb.entries()) > 800
    d850 = entry("Nikon D850")
    assert d850.xyz_to_cam[0] == (1.0405, -0.3755, -0.127) and (d850.black, d850.white) == (0, 0)
    assert entry("Canon EOS 5D Mark III").white == 0x3C80
    assert entry("Sony ILCE-7M3").xyz_to_cam[1][1] == 1.3162
    assert cameradb.find("GoPro", "HERO5 Black").name == "GoPro HERO5 Black"
    # The table's own G2/S40 matrices are those of the bundled profiles (fitted on the shared RAW files).
    from rawedge.profiles import bundled_profiles

    for name in ("Canon PowerShot G2", "Canon PowerShot S40"):
        np.testing.assert_allclose(entry(name).xyz_to_cam, bundled_profiles()[name].color_matrix, atol=1e-4)


@pytest.mark.parametrize("make, maker", [
    ("NIKON CORPORATION", "Nikon"), ("NIKON", "Nikon"), ("OLYMPUS IMAGING CORP.", "Olympus"),
    ("OM Digital Solutions", "Olympus"), ("Canon", "Canon"), ("SONY", "Sony"), ("FUJIFILM", "Fujifilm"),
    ("Panasonic", "Panasonic"), ("LEICA CAMERA AG", "Leica"), ("Eastman Kodak Company", "Kodak"),
    ("KODAK", "Kodak"), ("PENTAX Corporation", "Pentax"), ("RICOH IMAGING COMPANY, LTD.", "Ricoh"),
    ("SAMSUNG", "Samsung"), ("Hasselblad", "Hasselblad"), ("Phase One", "Phase One"), ("GoPro", "GoPro"),
    ("DJI", "DJI"), ("Apple", "Apple"), ("Google", "Google"), ("HUAWEI", "Huawei"), ("Xiaomi", "Xiaomi"),
    ("KONICA MINOLTA", "Minolta"), ("  Acme Cam\x00 ", "Acme Cam"), ("", None), (None, None),
])
def test_maker_normalisation(make, maker):
    assert normalise_make(make) == maker


@pytest.mark.parametrize("make, model, name", [
    ("Canon", "Canon EOS 5D Mark III", "Canon EOS 5D Mark III"),
    ("Canon", "Canon EOS 5D Mark II", "Canon EOS 5D Mark II"),  # listed before the shorter "EOS 5D"
    ("Canon", "Canon EOS 5D", "Canon EOS 5D"),
    ("Canon", "Canon EOS REBEL T3i", "Canon EOS 600D"), ("Canon", "Canon EOS Kiss X7", "Canon EOS 100D"),
    ("NIKON CORPORATION", "NIKON D850", "Nikon D850"), ("NIKON CORPORATION", "NIKON Z 6_2", "Nikon Z 6"),
    (None, "NIKON D850", "Nikon D850"),  # no Make: the model's first word names the maker
    ("SONY", "ILCE-7M3", "Sony ILCE-7M3"), ("OLYMPUS IMAGING CORP.", "E-M1MarkII", "Olympus E-M1 Mark II"),
    ("OM Digital Solutions", "OM-1", "Olympus OM-1"),
    ("RICOH IMAGING COMPANY, LTD.", "PENTAX K-3 Mark III", "Pentax K-3 Mark III"),
    ("RICOH IMAGING COMPANY, LTD.", "RICOH GR III", "Ricoh GR III"),
    ("EASTMAN KODAK COMPANY", "KODAK DCS Pro 14N DIGITAL CAMERA", "Kodak DCS Pro 14"),
    ("SONY", "XYZ", None), ("Google", "Pixel 7", None), ("NIKON", "", None), ("", "", None),
    ("\x00\x01", "\xff\xfe\x00", None), ("Canon", "   ", None),
])
def test_model_matching(make, model, name):
    found = cameradb.find(make, model)
    assert (found and found.name) == name


def test_profile_and_daylight_wb_prior():
    p = cameradb.lookup("NIKON CORPORATION", "NIKON D850")
    assert p.name == "Nikon D850" and p.make == "Nikon" and p.cfa == "RGGB" and p.calibration_illuminant == 21
    assert p.white_level == 16383 and p.black_level == [0.0] * 4  # table says 0: the 14-bit default
    assert cameradb.lookup("Canon", "Canon EOS 5D Mark III").white_level == 0x3C80
    assert cameradb.get("canon powershot g2").white_level == 4095  # a compact: 12-bit default
    # The prior's gains neutralise daylight white seen through the matrix.
    from rawedge.isp.illuminant import REFERENCE_CCT, illuminant_gains

    np.testing.assert_allclose(p.typical_wb_gains(), illuminant_gains(p.color_matrix, REFERENCE_CCT))
    for make, model in [("Canon", "Canon EOS 5D Mark III"), ("NIKON", "NIKON D850"), ("SONY", "ILCE-7M3"),
                        ("FUJIFILM", "X-T3"), ("OLYMPUS", "E-M1MarkII"), ("Panasonic", "DC-GH5"),
                        ("PENTAX", "PENTAX K-1"), ("GoPro", "HERO5 Black"), ("Canon", "Canon PowerShot S40")]:
        r, g, b = cameradb.lookup(make, model).typical_wb_gains()
        assert 1.0 < r < 4.0 and 1.0 < b < 4.0 and g == 1.0, (model, r, b)


@needs_table
@pytest.mark.parametrize("camera", ["Canon_PowerShot_G2", "Canon_PowerShot_S40"])
def test_matrix_white_response_is_libraw_daylight_balance(camera):
    """The matrix -> gains path of the prior reproduces LibRaw's own daylight multipliers (D65 white)."""
    import rawpy

    from rawedge.isp.illuminant import illuminant_gains

    path = next((COLORDATA.parents[1] / "raw").glob(f"{camera}_*"))
    with rawpy.imread(str(path)) as raw:
        daylight = np.asarray(raw.daylight_whitebalance[:3], dtype=np.float64)
    gains = illuminant_gains(cameradb.get(camera.replace("_", " ")).color_matrix, 6504.0)
    np.testing.assert_allclose(gains, daylight / daylight[1], rtol=2e-3)


def test_search_get_and_close_matches():
    names = [e.name for e in cameradb.search("nikon d8")]
    assert names == ["Nikon D800", "Nikon D810A", "Nikon D810", "Nikon D850", "Nikon D80"]  # table order
    assert all("nikon" in n.lower() and "d8" in n.lower() for n in names)
    assert len(cameradb.search(None)) == len(cameradb.entries())
    assert cameradb.get("NIKON D850").name == "Nikon D850"
    with pytest.raises(RawedgeError, match="close matches: .*Nikon D850"):
        cameradb.get("Nikon D85")


def test_runtimes_stay_numpy_only():
    import subprocess
    import sys

    code = ("import sys, rawedge.runtimes, rawedge.cameradb as c; c.lookup('NIKON', 'NIKON D850'); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=120).returncode == 0


# --- the one profile policy -------------------------------------------------------------------------
def test_policy_precedence_and_how_strings(tmp_path):
    profile, gains, how = resolve_profile(NIKON)
    assert profile.name == "Nikon D850" and gains is None
    assert how == "camera database: Nikon D850 (LibRaw table, D65 matrix)"
    # Bundled (fitted on RAW files) beats the database for the same camera.
    s40 = Exif(make="Canon", model="Canon PowerShot S40")
    profile, _, how = resolve_profile(s40)
    assert profile.white_level == 1023 and how == "bundled profile for Canon PowerShot S40"
    # A model's embedded profile beats both.
    mine = cameradb.get("Nikon D850")
    mine.name, mine.model, mine.white_level = "NIKON D850", "NIKON D850", 4000.0
    assert resolve_profile(NIKON, embedded={mine.name: mine})[0].white_level == 4000
    # --camera beats the EXIF, by database name in any case, and says when the EXIF disagrees.
    profile, _, how = resolve_profile(Exif(make="Canon", model="Canon EOS 5D"), camera="nikon d850")
    assert profile.name == "Nikon D850" and how == "camera Nikon D850 (given; the EXIF says Canon EOS 5D)"
    assert resolve_profile(NIKON, camera="Nikon D850")[2] == "camera Nikon D850"
    assert resolve_profile(Exif(), camera="Nikon D850")[2] == "camera Nikon D850"
    with pytest.raises(RawedgeError, match="unknown camera 'Nikon D85'; close matches: Nikon D850"):
        resolve_profile(NIKON, camera="Nikon D85")
    # An explicit JSON beats everything.
    path = tmp_path / "p.json"
    cameradb.get("Sony ILCE-7M3").save(path)
    assert resolve_profile(NIKON, profile_json=path, camera="Nikon D850")[0].name == "Sony ILCE-7M3"


@pytest.mark.parametrize("exif, how", [
    (Exif(make="SONY", model="XYZ"), "generic profile: camera 'SONY XYZ' is not in the camera database"),
    (Exif(make="Google", model="Pixel 7"), "generic profile: camera 'Google Pixel 7' is not in the camera database"),
    (Exif(), "generic profile (no camera in the EXIF)"),
    (Exif(make=" ", model="\x00\x00"), "generic profile (no camera in the EXIF)"),
    (Exif(make="Canon", model=""), "generic profile: camera 'Canon' is not in the camera database"),
])
def test_unknown_camera_notice(exif, how):
    profile, _, said = resolve_profile(exif)
    assert profile.name == "generic" and said == how


def test_reconstructor_uses_the_same_policy():
    from rawedge.runtimes import Reconstructor

    with Reconstructor.open(ROOT / "rawedge" / "assets" / "default.onnx", runtime="ort", threads=1) as rec:
        profile, how = rec.choose_profile(NIKON)
        assert profile.name == "Nikon D850" and how.startswith("camera database: Nikon D850")
        assert rec.choose_profile(Exif(make="SONY", model="XYZ"))[1].endswith("'SONY XYZ' is not in the camera database")
        assert rec.choose_profile(NIKON, camera="Sony ILCE-7M3")[1] == "camera Sony ILCE-7M3 (given; the EXIF says NIKON D850)"


# --- the CLI ----------------------------------------------------------------------------------------
def test_profile_list_and_show():
    code, text = run("profile", "list", "nikon")
    assert code == 0, text
    lines = text.strip().splitlines()
    assert lines[0].split() == ["name", "black", "white", "source"]
    assert any(line.split()[:3] == ["Nikon", "D850", "0"] and "LibRaw" in line for line in lines)
    assert all("nikon" in line.lower() for line in lines[1:-1])
    assert lines[-1].startswith(f"{len(lines) - 2} camera profiles matching 'nikon'")
    code, text = run("profile", "list")
    assert code == 0 and "Canon PowerShot S40" in text and "bundled" in text
    code, text = run("profile", "show", "nikon d850")
    assert code == 0, text
    shown = json.loads(text)
    assert shown["name"] == "Nikon D850" and shown["color_matrix"][0] == [1.0405, -0.3755, -0.127]
    code, text = run("profile", "show", "Nikon D85")
    assert code == 1 and "close matches: Nikon D850" in text and len(text.strip().splitlines()) == 1


def test_profile_from_raw_still_works(canon_raw, tmp_path):
    code, text = run("profile", canon_raw, "-o", tmp_path / "p.json")
    assert code == 0 and "profile Canon PowerShot S40" in text, text
    assert json.loads((tmp_path / "p.json").read_text())["name"] == "Canon PowerShot S40"


@pytest.fixture
def nikon_jpeg(tmp_path) -> Path:
    from rawedge.io.photo import write_jpeg

    path = tmp_path / "nikon.jpg"
    rng = np.random.default_rng(0)
    write_jpeg(path, rng.integers(40, 220, (48, 64, 3), dtype=np.uint8), NIKON)
    return path


def _dng_color_matrix(path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags[50721]  # ColorMatrix1
        values = np.asarray(tag.value, dtype=np.float64).reshape(-1, 2)
    return (values[:, 0] / values[:, 1]).reshape(3, 3)


def test_unprocess_nikon_jpeg_uses_the_database(nikon_jpeg, tmp_path):
    out = tmp_path / "n.dng"
    code, text = run("unprocess", nikon_jpeg, "-o", out)
    assert code == 0, text
    assert "profile Nikon D850 (camera database: Nikon D850 (LibRaw table, D65 matrix)" in text
    np.testing.assert_allclose(_dng_color_matrix(out), cameradb.get("Nikon D850").color_matrix, atol=1e-4)
    code, text = run("unprocess", nikon_jpeg, "-o", out, "--camera", "Sony ILCE-7M3", "--overwrite")
    assert code == 0 and "camera Sony ILCE-7M3 (given; the EXIF says NIKON D850)" in text, text
    np.testing.assert_allclose(_dng_color_matrix(out), cameradb.get("Sony ILCE-7M3").color_matrix, atol=1e-4)


def test_infer_nikon_jpeg_uses_the_database(nikon_jpeg, tmp_path):
    out = tmp_path / "n.dng"
    code, text = run("infer", nikon_jpeg, "--model", ROOT / "rawedge" / "assets" / "default.onnx", "-o", out,
                     "--threads", 1)
    assert code == 0, text
    assert "profile Nikon D850 (camera database: Nikon D850" in text
    np.testing.assert_allclose(_dng_color_matrix(out), cameradb.get("Nikon D850").color_matrix, atol=1e-4)
