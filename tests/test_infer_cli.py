"""`rawedge infer` and `rawedge bench` end to end, and the README's embedding example."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rawedge.cli import main
from rawedge.io.atomic import TEMP_PREFIX
from rawedge.io.photo import read_photo
from tests.conftest import ROOT, SAMPLE_JPEG


@pytest.fixture(scope="module")
def model(tiny_unet):
    return tiny_unet[:2]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output  # stdout and stderr as a terminal shows them


def test_infer_one_photo_to_dng(model, tmp_path):
    from rawedge.io.raw import read_raw

    out = tmp_path / "boxes.dng"
    code, text = run("infer", SAMPLE_JPEG, "--model", model[0], "-o", out, "--tile", 128, "--overlap", 32)
    assert code == 0, text
    assert f"wrote {out}: 800x600 RGGB mosaic, profile Canon PowerShot S40" in text
    raw = read_raw(out)
    assert raw.bayer.shape == (600, 800) and raw.cfa == "RGGB"
    assert raw.exif.model == "Canon PowerShot S40" and raw.exif.iso == 50


def test_infer_formats_and_camera_choice(model, tmp_path):
    crop = tmp_path / "crop.png"
    from rawedge.io.photo import write_png

    photo = read_photo(SAMPLE_JPEG)
    write_png(crop, np.ascontiguousarray(photo.srgb[:41, :67]), photo.exif)
    code, text = run("infer", crop, "--model", model[0], "--format", "npy", "--camera", "Kodak DC120 ZOOM Digital Camera",
                     "-o", tmp_path / "m.npy")
    assert code == 0, text
    mosaic = np.load(tmp_path / "m.npy")
    assert mosaic.shape == (41, 67) and mosaic.dtype == np.float32 and 0 <= mosaic.min() <= mosaic.max() <= 1
    assert "GRBG mosaic" in text
    code, text = run("infer", crop, "--model", model[0], "--format", "tiff", "-o", tmp_path / "t.tiff")
    assert code == 0, text
    import tifffile

    with tifffile.TiffFile(tmp_path / "t.tiff") as tif:
        rgb = tif.asarray()
        info = json.loads(tif.pages[0].description)
    assert rgb.shape == (41, 67, 3) and rgb.dtype == np.uint16 and rgb.max() > 0
    assert info["cfa"] == "RGGB" and len(info["wb_gains"]) == 3
    code, text = run("infer", crop, "--model", model[0], "--camera", "No Such Camera")
    assert code == 1 and "unknown camera" in text


def test_infer_directory_with_a_bad_file(model, tmp_path):
    src = tmp_path / "shoot"
    src.mkdir()
    shutil.copy(SAMPLE_JPEG, src / "a.jpg")
    (src / "b.jpg").write_bytes(SAMPLE_JPEG.read_bytes()[:4000])  # truncated JPEG
    photo = read_photo(SAMPLE_JPEG)
    from rawedge.io.photo import write_png

    write_png(src / "c.png", np.ascontiguousarray(photo.srgb[:33, :45]), photo.exif)
    out = tmp_path / "raws"
    code, text = run("infer", src, "--model", model[0], "-o", out, "--keep-going")
    assert code == 1
    assert "1 of 3 photos failed" in text and re.search(r"b\.jpg: .*truncated", text)
    assert sorted(p.name for p in out.iterdir()) == ["a.dng", "c.dng"]  # no partial b.dng, no temporaries
    # without --keep-going the run stops at the failure and says what was not attempted
    shutil.rmtree(out)
    code, text = run("infer", src, "--model", model[0], "-o", out)
    assert code == 1 and "1 not attempted" in text and "--keep-going" in text
    assert sorted(p.name for p in out.iterdir()) == ["a.dng"]
    assert not [p for p in out.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_infer_errors_are_one_line(model, tmp_path):
    code, text = run("infer", SAMPLE_JPEG, "--model", tmp_path / "none.onnx")
    assert code == 1 and "no such model file" in text
    code, text = run("infer", SAMPLE_JPEG, "--model", model[0], "--precision", "int8")
    assert code == 1 and "rawedge calibrate" in text
    code, text = run("infer", SAMPLE_JPEG, "--model", model[0], "--max-pixels", 1000)
    assert code == 1 and "limit" in text
    if not Path(__file__).resolve().parents[1].joinpath("rawedge/assets/default.onnx").is_file():
        code, text = run("infer", SAMPLE_JPEG)
        assert code == 1 and "--model" in text
    twins = tmp_path / "twins"
    twins.mkdir()
    shutil.copy(SAMPLE_JPEG, twins / "x.jpg")
    shutil.copy(SAMPLE_JPEG, twins / "x.jpeg")
    code, text = run("infer", twins, "--model", model[0])
    assert code == 1 and "would write it" in text and not list(twins.glob("*.dng"))


def test_bench_runs_on_a_tiny_size(model, tmp_path):
    report = tmp_path / "bench.json"
    code, text = run("bench", "--model", model[0], "--checkpoint", model[1], "--size", "0.01mp", "--runtimes",
                     "torch,ort", "--precisions", "fp32,int8", "--repeat", 1, "--threads", 1, "-o", report)
    assert code == 0, text
    data = json.loads(report.read_text())
    rows = {(r["backend"], r["precision"]): r for r in data["results"]}
    assert data["reference"] == "torch fp32" and 0.008 < data["megapixels"] < 0.012
    assert rows[("torch", "fp32")]["status"] == "ok" and rows[("torch", "fp32")]["identical"]
    ort = rows[("ort", "fp32")]
    assert ort["status"] == "ok" and ort["ms_per_mp"] > 0 and ort["peak_rss_mb"] > 10
    assert ort["identical"] or ort["psnr_db"] > 60
    assert rows[("ort", "int8")]["status"] == "skipped" and "rawedge calibrate" in rows[("ort", "int8")]["reason"]
    # compute efficiency (issue 14): FLOPs from the graph, the measured sgemm peak, ratio to eager, start-up
    assert data["flops"]["per_pixel"] > 0 and data["peak_gflops"] > 0
    assert ort["achieved_gflops"] > 0 and ort["peak_fraction"] == pytest.approx(ort["achieved_gflops"] / data["peak_gflops"])
    assert 0 < ort["compute_s"] <= ort["seconds"] and ort["tiles"] >= 1 and 0 < ort["startup_s"] < 60
    assert rows[("torch", "fp32")]["vs_torch_eager"] == 1.0 and ort["vs_torch_eager"] > 0


def test_readme_embedding_example_runs(model, tmp_path, monkeypatch):
    """The README's camera-pipeline example, extracted and executed as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Embedding API", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copy(model[0], tmp_path / "model.onnx")
    shutil.copy(SAMPLE_JPEG, tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    from rawedge.io.raw import read_raw

    raw = read_raw(tmp_path / "frame.dng")
    assert raw.bayer.shape == (600, 800) and raw.exif.iso == 200
    assert namespace["mosaic"].shape == (600, 800) and namespace["mosaic"].dtype == np.float32


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked in this test')
sys.meta_path.insert(0, Block())
from rawedge.cli import main
main(sys.argv[1:])
"""


def test_infer_works_without_torch(model, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "nt.dng"
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH, "infer", str(SAMPLE_JPEG), "--model", str(model[0]),
                           "-o", str(out), "--runtime", "ort"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and "800x600" in proc.stdout
