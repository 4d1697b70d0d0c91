"""Issue 17, a CLI photographers can trust: never overwrite (case-insensitively), resumable batches, paths
and formats, --camera-profile on infer, colour-managed input, info on checkpoints and INT8 IRs, hints that
run as printed, a closed pipe, the OpenVINO cache key, --preview and the round-trip figure."""
from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rawedge.cli import main
from rawedge.io.photo import read_photo, write_png
from tests.conftest import ROOT, SAMPLE_JPEG


@pytest.fixture(scope="module")
def model(tiny_unet):
    return tiny_unet[:2]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def small_photo(path: Path, rows: int = 24, cols: int = 32, offset: int = 0) -> Path:
    photo = read_photo(SAMPLE_JPEG)
    write_png(path, np.ascontiguousarray(photo.srgb[offset:offset + rows, offset:offset + cols]), photo.exif)
    return path


# --- 1. never overwrite -----------------------------------------------------------------------------
def test_infer_refuses_an_existing_output_in_any_case(model, tmp_path):
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    shutil.copy(SAMPLE_JPEG, shoot / "IMG_0001.JPG")
    camera_dng = shoot / "IMG_0001.DNG"  # the camera's own RAW of a RAW+JPEG pair
    camera_dng.write_bytes(b"the camera's DNG")
    code, text = run("infer", shoot / "IMG_0001.JPG", "--model", model[0], "--tile", 128)
    assert code == 1 and text.count("\n") == 1
    assert f"{camera_dng}: already exists" in text and "--overwrite" in text
    assert camera_dng.read_bytes() == b"the camera's DNG"
    assert sorted(p.name for p in shoot.iterdir()) == ["IMG_0001.DNG", "IMG_0001.JPG"]
    # a directory run skips it (its output exists) instead of replacing it
    code, text = run("infer", shoot, "--model", model[0], "--tile", 128)
    assert code == 0 and "skipped 1 of 1 photos" in text and camera_dng.read_bytes() == b"the camera's DNG"
    # an explicit -o, with --confidence's map as part of the output
    out = tmp_path / "x.dng"
    out.write_bytes(b"old")
    code, text = run("infer", shoot / "IMG_0001.JPG", "--model", model[0], "-o", out)
    assert code == 1 and "x.dng: already exists" in text and out.read_bytes() == b"old"
    code, text = run("infer", shoot / "IMG_0001.JPG", "--model", model[0], "-o", out, "--overwrite", "--tile", 128)
    assert code == 0, text
    assert out.read_bytes()[:2] in (b"II", b"MM")


def test_infer_directory_resumes_exactly_the_missing_photos(model, tmp_path):
    src, out = tmp_path / "batch", tmp_path / "raws"
    src.mkdir()
    out.mkdir()
    for i in range(20):
        small_photo(src / f"p{i:02d}.png", offset=2 * i)
    for i in range(0, 20, 2):  # half done by an interrupted run (atomic writes: present = complete)
        (out / f"p{i:02d}.dng").write_bytes(b"done")
    code, text = run("infer", src, "--model", model[0], "-o", out)
    assert code == 0, text
    assert "skipped 10 of 20 photos whose output exists" in text and "converted 10 photos" in text
    assert len(re.findall(r"^wrote ", text, flags=re.M)) == 10
    assert all((out / f"p{i:02d}.dng").read_bytes() == b"done" for i in range(0, 20, 2))
    assert all((out / f"p{i:02d}.dng").read_bytes()[:2] == b"II" for i in range(1, 20, 2))
    code, text = run("infer", src, "--model", model[0], "-o", out)  # nothing left to do
    assert code == 0 and "skipped 20 of 20" in text and "wrote" not in text
    code, text = run("infer", src, "--model", model[0], "-o", out, "--overwrite")
    assert code == 0 and "converted 20 photos" in text and "skipped" not in text
    assert all((out / f"p{i:02d}.dng").read_bytes()[:2] == b"II" for i in range(20))


def test_other_commands_refuse_an_existing_output(model, tmp_path):
    taken = tmp_path / "TAKEN.DNG"
    taken.write_bytes(b"keep")
    code, text = run("unprocess", SAMPLE_JPEG, "-o", tmp_path / "taken.dng")
    assert code == 1 and f"{taken}: already exists" in text and taken.read_bytes() == b"keep"
    code, text = run("unprocess", SAMPLE_JPEG, "-o", tmp_path / "taken.dng", "--overwrite")
    assert code == 0 and "round trip" in text
    for args in (["render", SAMPLE_JPEG, "-o"], ["profile", "build", SAMPLE_JPEG, "-o"], ["profile", SAMPLE_JPEG, "-o"]):
        target = tmp_path / "Existing.JSON"
        target.write_text("keep")
        code, text = run(*args, tmp_path / "existing.json")
        assert code == 1 and "already exists" in text and target.read_text() == "keep", (args, text)
    onnx = tmp_path / "m.onnx"
    onnx.write_text("keep")
    code, text = run("export", model[1], "-o", onnx, "--no-check")
    assert code == 1 and "m.onnx: already exists" in text and onnx.read_text() == "keep"


def test_train_refuses_a_run_folder_that_is_not_empty(tmp_path):
    from rawedge.cli.train import check_run_folder
    from rawedge.errors import RawedgeError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(b"x")
    (run_dir / "log.jsonl").write_text("{}\n")
    (run_dir / "notes.txt").write_text("mine")
    code, text = run("train", "--model", "unet", "--data", tmp_path / "nodata", "--out", run_dir, "--no-progress")
    assert code == 1 and "run folder is not empty" in text and "--resume" in text and "--overwrite" in text
    check_run_folder(run_dir, resume=str(run_dir / "last.pt"), overwrite=False)  # resuming is fine
    check_run_folder(tmp_path / "fresh", resume=None, overwrite=False)  # a new folder is fine
    with pytest.raises(RawedgeError):
        check_run_folder(run_dir, resume=None, overwrite=False)
    check_run_folder(run_dir, resume=None, overwrite=True)  # afresh: the old run's files go, others stay
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]


# --- 2. paths and formats ---------------------------------------------------------------------------
def test_output_directory_and_extension_choose_where_and_what(model, tmp_path):
    photo = small_photo(tmp_path / "small.png")
    code, text = run("infer", photo, "--model", model[0], "-o", str(tmp_path / "newdir") + "/")
    assert code == 0, text
    assert (tmp_path / "newdir").is_dir() and (tmp_path / "newdir" / "small.dng").is_file()
    code, text = run("infer", photo, "--model", model[0], "-o", tmp_path / "x.tiff")
    assert code == 0, text
    import tifffile

    assert tifffile.imread(tmp_path / "x.tiff").shape == (24, 32, 3)
    code, text = run("infer", photo, "--model", model[0], "-o", tmp_path / "m.NPY")
    assert code == 0 and np.load(tmp_path / "m.NPY").shape == (24, 32)
    code, text = run("infer", photo, "--model", model[0], "--format", "tiff", "-o", tmp_path / "y.dng")
    assert code == 1 and "--format is tiff" in text and not (tmp_path / "y.dng").exists()
    code, text = run("infer", photo, "--model", model[0], "-o", tmp_path / "z.jpg")
    assert code == 1 and "unknown output extension" in text
    code, text = run("infer", photo, photo.with_name("small.png"), "--model", model[0], "-o", tmp_path / "two.dng")
    assert code == 1 and "several photos need an output directory" in text and not (tmp_path / "two.dng").exists()
    code, text = run("infer", "--help")
    flat = " ".join(text.split())
    assert "chosen by the -o file's extension" in flat and "a name ending in /" in flat


# --- 3. --camera-profile ----------------------------------------------------------------------------
def test_infer_takes_a_camera_profile_json(model, tmp_path):
    code, text = run("profile", "show", "Nikon D850")
    assert code == 0
    profile = tmp_path / "d850.json"
    profile.write_text(text)
    code, text = run("infer", small_photo(tmp_path / "s.png"), "--model", model[0], "--camera-profile", profile)
    assert code == 0, text
    assert "profile Nikon D850" in text and f"profile {profile}" in text
    from rawedge.io.raw import read_raw

    raw = read_raw(tmp_path / "s.dng")  # the EXIF says Canon PowerShot S40 (white level 1023)
    assert raw.white_level == json.loads(profile.read_text())["white_level"] == 16383


# --- 4. colour-managed input ------------------------------------------------------------------------
D50 = (0.9642, 1.0, 0.8249)
ADOBE_RGB_D50 = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
ADOBE_TO_SRGB = np.array([[1.3982, -0.3982, 0.0], [0.0, 1.0, 0.0], [0.0, -0.0429, 1.0429]])  # linear, D65


def matrix_icc(description: str, colorants=ADOBE_RGB_D50, gamma: float = 563 / 256) -> bytes:
    """A minimal ICC v2 RGB display profile: D50 colorants (rXYZ, gXYZ, bXYZ) and one gamma curve (Adobe RGB
    (1998)'s by default)."""
    def s15(v):
        return struct.pack(">i", int(round(v * 65536)))

    def xyz(v):
        return b"XYZ " + bytes(4) + b"".join(s15(c) for c in v)

    text = description.encode("ascii")
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text) + 1) + text + b"\0" + bytes(8 + 3 + 67)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, int(round(gamma * 256))) + bytes(2)
    tags = [(b"desc", desc), (b"wtpt", xyz(D50)), (b"rXYZ", xyz(colorants[0])), (b"gXYZ", xyz(colorants[1])),
            (b"bXYZ", xyz(colorants[2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"text" + bytes(4) + b"none\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + bytes(-len(body) % 4)
    header = (struct.pack(">I", offset + len(data)) + bytes(4) + bytes.fromhex("02100000") + b"mntrRGB XYZ "
              + bytes(12) + b"acsp" + bytes(28) + b"".join(s15(c) for c in D50) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + data


def adobe_to_srgb_levels(rgb8) -> np.ndarray:
    lin = (np.asarray(rgb8, np.float64) / 255.0) ** (563 / 256)
    out = np.clip(ADOBE_TO_SRGB @ lin, 0.0, 1.0)
    enc = np.where(out <= 0.0031308, 12.92 * out, 1.055 * out ** (1 / 2.4) - 0.055)
    return enc * 255.0


def test_adobe_rgb_photo_is_converted_to_srgb_keeping_exif(model, tmp_path):
    from PIL import Image

    from rawedge.io.exif import pillow_exif
    from rawedge.types import Exif

    patches = [(128, 128, 128), (100, 160, 100), (180, 90, 60)]
    arr = np.zeros((16, 16 * len(patches), 3), np.uint8)
    for i, colour in enumerate(patches):
        arr[:, 16 * i:16 * (i + 1)] = colour
    exif = Exif(make="Canon", model="Canon PowerShot S40", iso=100)
    path = tmp_path / "adobe.jpg"
    Image.fromarray(arr).save(path, quality=100, subsampling=0, icc_profile=matrix_icc("Test Adobe RGB"),
                              exif=pillow_exif(exif))
    photo = read_photo(path)
    assert photo.converted_from == "Test Adobe RGB" and photo.exif.model == "Canon PowerShot S40"
    got = photo.srgb[8, 8::16].astype(float)
    assert abs(got[0] - 128).max() <= 3 and np.ptp(got[0]) <= 2  # a neutral grey stays grey
    for colour, pixel in zip(patches[1:], got[1:]):
        assert np.abs(pixel - adobe_to_srgb_levels(colour)).max() <= 4, (colour, pixel)
        assert np.abs(pixel - np.array(colour)).max() >= 15  # and it did change: wider gamut, more saturated
    # an sRGB-tagged photo is left as stored
    from PIL import ImageCms

    srgb_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(arr).save(tmp_path / "srgb.png", icc_profile=srgb_icc)
    same = read_photo(tmp_path / "srgb.png")
    assert same.converted_from is None and np.array_equal(same.srgb, arr)
    # the CLI says so in one line, and the DNG keeps the EXIF
    code, text = run("infer", path, "--model", model[0])
    assert code == 0, text
    assert "converted from its embedded ICC profile 'Test Adobe RGB' to sRGB" in text
    from rawedge.io.raw import read_raw

    assert read_raw(tmp_path / "adobe.dng").exif.model == "Canon PowerShot S40"


# --- 5. info, help, pipes, hints, packaging --------------------------------------------------------
def test_info_describes_a_checkpoint(model):
    code, text = run("info", model[1])
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0].startswith(f"{model[1]}: rawedge checkpoint of model 'unet'") and "parameters" in lines[0]
    assert any(line.startswith("config") and "width=" in line for line in lines)
    assert any(line.startswith("weights") and "(match)" in line for line in lines)
    assert any(line.startswith("metrics") for line in lines)


def test_info_reports_the_int8_of_an_openvino_ir(model, tmp_path):
    ov = pytest.importorskip("openvino")
    from rawedge.metadata.onnx import read_onnx_metadata
    from rawedge.metadata.schema import METADATA_KEY, ModelMeta

    ir = ov.Core().read_model(str(model[0]))  # keeps the ONNX's (FP32) metadata under "framework"
    meta = read_onnx_metadata(model[0])
    meta.precision = "int8"
    meta.calibration = {"runtime": "openvino"}
    ir.set_rt_info(meta.to_json(), METADATA_KEY)  # as `rawedge calibrate` writes it
    xml = tmp_path / "net.openvino.int8.xml"
    ov.save_model(ir, str(xml), compress_to_fp16=False)
    code, text = run("info", xml)
    assert code == 0, text
    assert "rawedge model 'unet' (int8)" in text.splitlines()[0]
    assert isinstance(meta, ModelMeta)


def test_help_starts_with_infer():
    code, text = run("--help")
    quick = text.split("Quick start:")[1].strip().splitlines()
    assert quick[0].strip().startswith("rawedge infer ")


def test_closed_pipe_ends_quietly(model):
    proc = subprocess.Popen([sys.executable, "-m", "rawedge.cli", "info", str(model[1])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # `| head -0`: the reader is gone before the first line
    _, err = proc.communicate(timeout=120)
    assert b"Broken pipe" not in err and b"Traceback" not in err, err.decode()
    assert err.strip() == b""


def test_hints_run_as_printed(model, tmp_path):
    from rawedge.errors import install_command

    command = install_command("train")
    assert command == f"pip install -e '{ROOT}[train]'"  # the README's editable install, from anywhere
    code, text = run("infer", small_photo(tmp_path / "s.png"), "--model", model[0], "--precision", "int8")
    assert code == 1
    hint = re.search(r"`(rawedge calibrate [^`]*)`", text).group(1)
    assert "--data" in hint and str(model[0]) in hint
    # the calibrate command accepts the hint's options (PHOTO_DIR stands for the user's folder)
    from rawedge.cli.calibrate import calibrate

    names = {opt for p in calibrate.params for opt in p.opts}
    assert {"--runtime", "--data"} <= names


def test_pyproject_lists_every_package():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {name: ROOT / path for name, path in config["package-dir"].items()}

    def where(pkg):
        for name in sorted(dirs, key=len, reverse=True):
            if pkg == name or pkg.startswith(name + "."):
                return dirs[name].joinpath(*pkg[len(name):].strip(".").split(".")) if pkg != name else dirs[name]
        return ROOT.joinpath(*pkg.split("."))

    found = set()
    for name, base in dirs.items():
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base).parts
            found.add(".".join((name, *rel)))
    found |= {"rawedge.assets"}  # data-only package: the bundled model and camera tables
    assert found <= set(config["packages"]), sorted(found - set(config["packages"]))
    assert all(where(p).is_dir() for p in config["packages"])


# --- 6. OpenVINO cache key ----------------------------------------------------------------------------
def test_openvino_cache_key_has_precision_device_and_model(model, tmp_path):
    pytest.importorskip("openvino")
    from rawedge.runtimes.openvino import OpenVinoRunner

    cache = tmp_path / "cache"
    other = tmp_path / "other.onnx"
    shutil.copy(model[0], other)
    with open(other, "ab") as fh:
        fh.write(b"\0")  # same path name elsewhere would not do: the content differs
    dirs = {(p, d, m): OpenVinoRunner(m, device=d, precision=p, cache_dir=cache)._config()["CACHE_DIR"]
            for p in ("fp32", "fp16") for d in ("CPU", "GPU") for m in (model[0], other)}
    assert len(set(dirs.values())) == len(dirs)
    assert all(Path(d).parent == cache for d in dirs.values())


def test_openvino_fp32_after_fp16_is_fp32(model, tmp_path):
    ov = pytest.importorskip("openvino")
    if "FP16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no FP16 inference in OpenVINO")
    from rawedge.runtimes import open_runner

    from tests.test_runtimes import contract_feed

    cache = tmp_path / "cache"
    feed = contract_feed()
    with open_runner(model[0], "openvino", precision="fp16", cache_dir=cache, threads=1) as r16:
        half = r16.infer(feed)["raw"]
    with open_runner(model[0], "openvino", precision="fp32", cache_dir=cache, threads=1) as r32:
        cached = r32.infer(feed)["raw"]
    with open_runner(model[0], "openvino", precision="fp32", cache_dir=False, threads=1) as fresh:
        expected = fresh.infer(feed)["raw"]
    np.testing.assert_array_equal(cached, expected)
    assert not np.array_equal(half, expected)  # the FP16 compilation really was another one


# --- 7. preview and round trip ----------------------------------------------------------------------
def test_preview_and_round_trip_figure(model, tmp_path):
    from PIL import Image

    photo = small_photo(tmp_path / "s.png", rows=40, cols=56)
    code, text = run("infer", photo, "--model", model[0], "--preview")
    assert code == 0, text
    figure = float(re.search(r"round trip (\d+\.\d) dB", text).group(1))
    sheet = np.asarray(Image.open(tmp_path / "s.preview.png"))
    assert sheet.shape == (40, 56 * 3, 3)  # photo | rendered back | difference (no confidence output)
    assert np.abs(sheet[:, :56].astype(int) - read_photo(photo).srgb.astype(int)).max() <= 1
    # the figure is the PSNR of the DNG rendered back by rawedge's ISP against the photo
    from rawedge.io.raw import read_raw
    from rawedge.isp.pipeline import process
    from rawedge.metrics import psnr

    raw = read_raw(tmp_path / "s.dng")
    back = process(raw.normalized(), raw.cfa, raw.wb_gains(), raw.profile.cam2rgb())
    assert figure == pytest.approx(psnr(back, read_photo(photo).to_float()), abs=0.06)
    diff = np.abs(np.round(back[:, :] * 255) - read_photo(photo).srgb) * 4
    assert np.abs(sheet[:, 112:].astype(int) - np.clip(diff, 0, 255)).max() <= 4
    # the preview is part of the output: a rerun refuses, a batch skips it
    code, text = run("infer", photo, "--model", model[0], "--preview")
    assert code == 1 and "already exists" in text


def test_round_trip_in_strips_equals_the_whole_image():
    from rawedge.isp.pipeline import process
    from rawedge.metrics import psnr
    from rawedge.roundtrip import round_trip
    from rawedge.types import CameraProfile, RawImage

    rng = np.random.default_rng(0)
    mosaic = rng.random((70, 38)).astype(np.float32)
    raw = RawImage.from_normalized(mosaic, CameraProfile.generic(), np.array([2.0, 1.0, 1.5]))
    photo = (rng.random((70, 38, 3)) * 255).astype(np.uint8)
    whole = process(raw.normalized(), raw.cfa, raw.wb_gains(), raw.profile.cam2rgb())
    figure, small = round_trip(raw, photo, step=3, rows=16)
    assert figure == pytest.approx(psnr(whole, photo / 255.0), abs=1e-6)
    np.testing.assert_allclose(small, whole[::3, ::3], atol=1e-6)


def test_makefile_demo_overwrites_its_own_output():
    demo = (ROOT / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0]
    assert "rawedge infer --runtime ort --overwrite samples/boxes_s40.jpg" in demo


def test_a_batch_photo_with_part_of_its_outputs_is_an_error(tmp_path):
    from rawedge.errors import RawedgeError
    from rawedge.outputs import output_parts, plan_outputs

    files = [tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"]
    targets = [f.with_suffix(".dng") for f in files]
    for t in targets[:2]:
        t.write_bytes(b"x")
    (tmp_path / "A.CONFIDENCE.PNG").write_bytes(b"x")  # a's map, in another case

    def parts(t):
        return output_parts(t, confidence=True)

    with pytest.raises(RawedgeError, match=r"b\.dng: already exists but b\.confidence\.png does not"):
        plan_outputs(files, targets, parts, many=True, overwrite=False)
    (tmp_path / "b.confidence.png").write_bytes(b"x")
    todo, skipped = plan_outputs(files, targets, parts, many=True, overwrite=False)
    assert todo == [(files[2], targets[2])] and skipped == files[:2]
    assert len(plan_outputs(files, targets, parts, many=True, overwrite=True)[0]) == 3


def test_auto_precision_takes_the_int8_artefact_when_there_is_one(tmp_path):
    from rawedge.runtimes.factory import auto_precision, int8_artefact_path

    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    assert auto_precision(model, "ort")[0] == "fp32" and auto_precision(model, "trt")[0] == "fp16"
    int8_artefact_path(model, "ort").write_bytes(b"")
    precision, why = auto_precision(model, "ort")
    assert precision == "int8" and int8_artefact_path(model, "ort").name in why
    assert auto_precision(model, "openvino")[0] == "fp32"  # another runtime's artefact does not count


@pytest.mark.parametrize("speedup, want", [(0.83, "fp32"), (1.6, "int8"), (None, "int8")])
def test_auto_precision_skips_an_int8_artefact_measured_slower(tiny_unet, tmp_path, speedup, want):
    import dataclasses

    import onnx
    from rawedge.runtimes.factory import auto_precision, int8_artefact_path

    from rawedge.metadata.onnx import embed_onnx_metadata, read_onnx_metadata
    from rawedge.metadata.schema import CalibrationMeta

    model = tmp_path / "m.onnx"
    model.write_bytes(Path(tiny_unet[0]).read_bytes())
    proto = onnx.load(model)
    meta = dataclasses.replace(read_onnx_metadata(model), precision="int8",
                               calibration=CalibrationMeta(runtime="ort", drop_db=0.2, speedup=speedup))
    embed_onnx_metadata(proto, meta)
    onnx.save(proto, int8_artefact_path(model, "ort"))
    precision, why = auto_precision(model, "ort")
    assert precision == want
    if want == "fp32":
        assert "0.83x" in why and "--precision int8" in why
