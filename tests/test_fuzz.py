"""Short fuzz campaigns (a few hundred hypothesis cases per target, in an isolated worker with a memory
limit and a time bound; the long run is `make fuzz`), and regression tests for what fuzzing found."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from rawedge.errors import RawedgeError
from tests.conftest import RAW_FILES, ROOT

pytest.importorskip("hypothesis")
if str(ROOT) not in sys.path:  # the fuzz package lives beside tests/, outside the installed package
    sys.path.insert(0, str(ROOT))

from fuzz.campaign import MEMORY_MB, TIMEOUT_S, run_campaign
from fuzz.isolation import Worker

CASES = {"photo": 300, "raw": 250, "dng": 150, "meta": 300, "profile": 300, "model": 60, "cli": 150}


@pytest.fixture(scope="module")
def model_worker():
    """One worker for the targets that need an exported model (it is made once, with torch)."""
    pytest.importorskip("torch")
    with Worker(memory_mb=MEMORY_MB["cli"], timeout_s=TIMEOUT_S["cli"]) as worker:
        yield worker


def _campaign(target: str, worker=None):
    report = run_campaign(target, CASES[target], seed=20240, worker=worker)
    details = "\n\n".join(f"{f['signature']}\ncase: {f['case']!r}\n{f['detail']}" for f in report.findings)
    assert not report.findings, f"{target}: {len(report.findings)} finding(s)\n{details}"
    assert report.cases >= CASES[target]
    return report


def test_fuzz_photo_reader():
    counts = _campaign("photo").counts
    assert counts["ok"] > 20 and counts["refused"] > 20, counts  # both paths were exercised


@pytest.mark.skipif(not RAW_FILES, reason="shared RAW files not found")
def test_fuzz_raw_reader():
    counts = _campaign("raw").counts
    assert counts["ok"] > 0 and counts["refused"] > 50, counts


def test_fuzz_dng_round_trip():
    counts = _campaign("dng").counts
    assert counts["ok"] == sum(counts.values()), counts  # every generated RawImage reads back equal


def test_fuzz_model_metadata():
    counts = _campaign("meta").counts
    assert counts["ok"] > 10 and counts["refused"] > 50, counts


def test_fuzz_camera_profile_json():
    counts = _campaign("profile").counts
    assert counts["ok"] >= 3 and counts["refused"] > 50, counts  # most perturbations break a profile


@pytest.mark.slow
def test_fuzz_command_line(model_worker):
    counts = _campaign("cli", model_worker).counts
    assert counts["ok"] > 0 and counts["refused"] > 10 and counts["usage"] > 10, counts


@pytest.mark.slow
def test_fuzz_exported_model_file(model_worker):
    counts = _campaign("model", model_worker).counts
    assert counts["refused"] > 10, counts  # mutated files: refused with one line (mostly by the weights hash)


# --- what fuzzing found --------------------------------------------------------------------------------------
def test_rawpy_failures_while_interpreting_become_rawedge_errors(monkeypatch, tmp_path):
    """LibRaw opened a mutated Kodak file, then rawpy raised NotImplementedError ('filters: 97') for its
    CFA: it must reach the user as one line, not a traceback."""
    import rawedge.io.raw as raw_io

    if not RAW_FILES:
        pytest.skip("shared RAW files not found")

    def rawpy_refuses_the_cfa(raw):  # fault injection: the exception rawpy raised on the fuzzed file
        raise NotImplementedError("filters: 97")

    monkeypatch.setattr(raw_io, "_cfa_string", rawpy_refuses_the_cfa)
    with pytest.raises(RawedgeError, match="cannot interpret this RAW file .*filters: 97"):
        raw_io.read_raw(RAW_FILES[-1])


def test_dng_writer_sanitises_text_and_dates(tmp_path):
    """A photo's EXIF may carry non-ASCII text (TIFF ASCII tags cannot) and malformed dates."""
    from rawedge.io.dng import write_dng
    from rawedge.io.raw import read_raw
    from rawedge.types import CameraProfile, Exif, RawImage

    profile = CameraProfile.generic()
    exif = Exif(make="Nikon™ é\x00", model="Z 9", datetime="garbage-date", exposure_time=1e12, iso=0.2, orientation=70000)
    raw = RawImage.from_normalized(np.full((24, 26), 0.5, np.float32), profile, np.array([2.0, 1.0, 1.5]), exif)
    write_dng(tmp_path / "a.dng", raw)
    back = read_raw(tmp_path / "a.dng")
    assert back.exif.make == "Nikon? ?" and back.exif.model == "Z 9"
    assert back.exif.datetime is None  # neither the garbage nor LibRaw's 1970 placeholder
    assert back.exif.exposure_time is None and back.exif.iso is None and back.exif.orientation == 1
    raw.as_shot_neutral = np.array([np.nan, 1.0, 1.0])
    with pytest.raises(RawedgeError, match="as_shot_neutral"):
        write_dng(tmp_path / "b.dng", raw)
    assert not (tmp_path / "b.dng").exists()


def test_dng_keeps_the_colour_matrix_of_cameras_libraw_does_not_know(tmp_path):
    """LibRaw reports a DNG's ColorMatrix only for cameras in its own table; rawedge reads the tag."""
    from rawedge.io.dng import write_dng
    from rawedge.io.raw import read_raw
    from rawedge.types import CameraProfile, RawImage

    matrix = [[0.9, -0.2, -0.1], [-0.8, 1.6, 0.3], [-0.3, 0.3, 0.8]]
    for m in (matrix, None):
        profile = CameraProfile(name="Unknown Cam", white_level=1023, color_matrix=m)
        raw = RawImage.from_normalized(np.full((24, 24), 0.25, np.float32), profile, np.array([2.0, 1.0, 1.5]))
        write_dng(tmp_path / "m.dng", raw)
        back = read_raw(tmp_path / "m.dng").profile.color_matrix
        assert back == m if m is None else np.allclose(back, m, atol=1e-4)


@pytest.mark.parametrize("field, value", [("schema_version", "2"), ("tile", "512"), ("fusion", []),
                                          ("camera_profiles", {}), ("align", True), ("precision", "bf16"),
                                          ("static_tile", 12), ("model_name", "")])
def test_model_metadata_with_wrong_types_is_refused(field, value):
    from rawedge.metadata.schema import ModelMeta

    doc = json.loads(ModelMeta(model_name="unet", config={}, align=8).to_json())
    doc[field] = value
    with pytest.raises(RawedgeError, match="rawedge metadata"):
        ModelMeta.from_json(json.dumps(doc), "m.onnx")


@pytest.mark.parametrize("field, value", [("black_level", "abcd"), ("color_matrix", [["a"] * 3] * 3),
                                          ("pixel_aspect", 0), ("white_level", 1e9), ("wb_prior_mean", [1]),
                                          ("calibration_illuminant", 2.5), ("name", 3), ("make", ["x"])])
def test_camera_profile_with_wrong_values_is_refused(tmp_path, field, value):
    from rawedge.types import CameraProfile

    doc = CameraProfile.generic().to_dict()
    doc[field] = value
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(RawedgeError) as info:
        CameraProfile.load(tmp_path / "p.json")
    assert info.value.path == str(tmp_path / "p.json")


def test_exif_vector_never_holds_infinity():
    from rawedge.types import Exif

    vec = Exif(exposure_time=1e300, iso=float("inf"), f_number=2.8).to_vector()
    assert np.isnan(vec[0]) and np.isnan(vec[1]) and vec[2] == np.float32(2.8) and np.isnan(vec[3])


def test_cli_turns_file_system_refusals_into_one_line(tmp_path):
    from click.testing import CliRunner

    from rawedge.cli import main

    result = CliRunner().invoke(main, ["info", str(tmp_path / ("x" * 300))])
    assert result.exit_code == 1 and "File name too long" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for command in (["infer", "x.jpg"], ["bench"], ["calibrate", "x.onnx", "--data", "."],
                    ["prior", "build", "priorraw", "--refs", ".", "-o", "x.pt"]):
        result = CliRunner().invoke(main, [*command, "--threads", "100000"])
        assert result.exit_code == 2 and "100000" in result.output, command  # bounded: no minutes creating threads


def test_damaged_png_data_is_an_error_not_a_partial_image(tmp_path):
    """PNG's getexif() decodes the pixels itself; its decode error used to be swallowed with the EXIF,
    and the half-decoded image then came back as if nothing had happened."""
    import io

    from PIL import Image

    from rawedge.io.photo import read_photo

    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    idat = data.index(b"IDAT")
    data[idat + 6:idat + 12] = b"\xff" * 6
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(RawedgeError, match="cannot decode image"):
        read_photo(tmp_path / "bad.png")


def test_model_whose_metadata_is_not_utf8_is_refused(tmp_path):
    """A flipped bit in the metadata text made ONNX Runtime (and onnx) raise UnicodeDecodeError."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    from rawedge.runtimes import Reconstructor

    from rawedge.cli.model_info import describe_model
    from rawedge.metadata.read import read_model_metadata as read_metadata
    from rawedge.metadata.schema import ModelMeta

    graph = helper.make_graph([helper.make_node("Identity", ["srgb"], ["raw"])], "g",
                              [helper.make_tensor_value_info("srgb", TensorProto.FLOAT, [1, 4, 2, 2])],
                              [helper.make_tensor_value_info("raw", TensorProto.FLOAT, [1, 4, 2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"rawedge": ModelMeta(model_name="unet", config={}, align=8).to_json()})
    data = bytearray(model.SerializeToString())
    data[data.index(b"unet")] = 0xFD
    path = tmp_path / "damaged.onnx"
    path.write_bytes(bytes(data))
    for read in (describe_model, Reconstructor.open, read_metadata):
        with pytest.raises(RawedgeError, match="not valid"):
            read(path)
