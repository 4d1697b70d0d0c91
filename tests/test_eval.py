"""Evaluation (JSON report and figure, model next to analytic), metrics, tiled inference, fine-tuning."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rawedge.errors import RawedgeError
from rawedge.metrics import delta_e2000, psnr, raw_ssim, srgb_metrics


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    from rawedge.data.pairs import make_toy_data

    path = tmp_path_factory.mktemp("toy") / "pairs"
    make_toy_data(path, count=6, size=(64, 96), seed=1)
    return path


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny U-Net that is *not* the analytic model (its output is offset), as a checkpoint file."""
    from rawedge.models.checkpoint import save_checkpoint
    from rawedge.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("unet", width=4, depth=1)
    with torch.no_grad():
        model.tail.bias.fill_(0.01)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, recipe={"name": "test"})
    return path


def test_metrics_definitions():
    rng = np.random.default_rng(0)
    a = rng.random((4, 16, 16))
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    assert psnr(a, a) == 100.0
    assert raw_ssim(a, a) == pytest.approx(1.0)
    assert raw_ssim(a, np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)) < 0.9
    img = rng.random((32, 32, 3))
    assert delta_e2000(img, img)[0] == pytest.approx(0.0, abs=1e-9)
    shifted = np.clip(img + [0.1, 0.0, 0.0], 0, 1)
    m = srgb_metrics(shifted, img)
    assert m["delta_e2000"] > 1.0 and m["psnr"] < 30 and m["delta_e_stride"] == 1
    assert delta_e2000(rng.random((1200, 1000, 3)), rng.random((1200, 1000, 3)))[1] == 3  # sub-grid on big images


def test_predict_full_tiles_match_one_pass():
    from rawedge.models.registry import create_model
    from rawedge.training.tiling import predict_full

    torch.manual_seed(0)
    x = {"srgb": torch.rand(1, 3, 70, 90), "thumb": torch.rand(1, 3, 256, 256), "exif": torch.full((1, 4), np.nan),
         "wb": torch.tensor([[2.0, 1.0, 1.5]]), "cam2rgb": torch.eye(3)[None], "rgb2cam": torch.eye(3)[None]}
    analytic = create_model("analytic")
    whole = predict_full(analytic, x, tile=4096)["raw"]
    tiled = predict_full(analytic, x, tile=32, overlap=8)["raw"]
    assert whole.shape == (1, 4, 35, 45)
    torch.testing.assert_close(tiled, whole)  # a per-pixel model: tiling changes nothing
    unet = create_model("unet", width=4, depth=2).eval()  # align 8: 70x90 is padded
    with torch.no_grad():
        unet.tail.bias.fill_(0.02)
    out = predict_full(unet, x, tile=48, overlap=16)["raw"]
    assert out.shape == (1, 4, 35, 45) and torch.isfinite(out).all()
    torch.testing.assert_close(out, (whole + 0.02).clamp(0, 1), atol=0.02, rtol=0)


def test_eval_report_and_figure(toy_dir, checkpoint, tmp_path):
    from rawedge.cli import main
    from rawedge.data.dataset import PairDataset
    from rawedge.models.registry import create_model

    report_path, figure_path = tmp_path / "report.json", tmp_path / "report.png"
    result = CliRunner().invoke(main, ["eval", str(checkpoint), str(toy_dir), "-o", str(report_path),
                                       "--figure", str(figure_path), "--tile", "32", "--overlap", "8"])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["model"]["name"] == "unet" and report["data"]["split"] == "val"
    val = PairDataset(toy_dir, "val", crop=None)
    assert report["data"]["images"] == len(report["images"]) == len(val.samples) == 2
    edits = [e["name"] for e in report["edits"]]
    assert len(edits) == 5 and edits[0] == "default"
    for who in ("model", "analytic"):
        s = report["summary"][who]
        assert 0 < s["raw"]["psnr"] < 100 and 0 < s["raw"]["ssim"] <= 1
        assert list(s["srgb"]) == edits
        assert all(s["srgb"][e]["delta_e2000"] >= 0 and s["srgb"][e]["psnr"] > 0 for e in edits)
    assert report["summary"]["model"]["raw"]["psnr"] != report["summary"]["analytic"]["raw"]["psnr"]
    assert set(report["by_kind"]) == {"synthetic"} and set(report["by_camera"]) == {"generic"}
    assert "packed RGGB" in report["conventions"]["raw"]
    # the analytic number is what the analytic model gives on the same image
    item = val.full_item(0)
    inputs = {k: item[k][None] for k in ("srgb", "thumb", "exif", "wb", "cam2rgb", "rgb2cam")}
    pred = create_model("analytic")(**inputs)["raw"][0].numpy()
    assert report["images"][0]["analytic"]["raw"]["psnr"] == pytest.approx(psnr(pred, item["raw"].numpy()))
    assert figure_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure_path.stat().st_size > 20_000
    assert "RAW PSNR / SSIM" in result.output and "per camera" in result.output


def test_eval_analytic_by_name_and_errors(toy_dir, tmp_path):
    from rawedge.cli import main

    out = tmp_path / "a.json"
    result = CliRunner().invoke(main, ["eval", "analytic", str(toy_dir), "--split", "train", "--max-images", "1",
                                       "--crop", "32", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "central 32x32 of 1 images (train)" in result.output
    report = json.loads(out.read_text())
    assert report["settings"]["center_crop"] == 32
    assert report["summary"]["model"] == report["summary"]["analytic"]  # the analytic model scored against itself
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "missing.pt"), str(toy_dir)])
    assert result.exit_code == 1 and "no such file" in result.output


def test_parse_edit():
    from rawedge.training.finetune import parse_edit

    edit = parse_edit("ev=+0.5")
    assert edit.exposure_ev == 0.5 and edit.style == "neutral" and edit.name == "ev=+0.5"
    combined = parse_edit("strong_tone,ev=0.7,wb=1.1:1:0.9")
    assert combined.exposure_ev == 0.7 and combined.style == "teal_orange" and combined.wb_scale == (1.1, 1.0, 0.9)
    for bad in ("brightest", "gain=2", "wb=1:2", "ev=abc", "style=sepia"):
        with pytest.raises(RawedgeError):
            parse_edit(bad)


def test_finetune_improves_the_sample_and_writes_a_checkpoint(toy_dir, checkpoint, tmp_path):
    """Fine-tune on a RAW sample (.npz) of a photo, for a +0.5 EV edit, through the CLI."""
    from rawedge.cli import main
    from rawedge.data.dataset import PairDataset
    from rawedge.models.checkpoint import load_checkpoint, read_checkpoint
    from rawedge.training.finetune import RawSample, load_raw_sample

    ds = PairDataset(toy_dir, "train", crop=None)
    arrays = ds.arrays(0)
    photo = tmp_path / "photo.png"
    from rawedge.io.photo import write_png

    write_png(photo, arrays.srgb)
    # a sample whose top-left is not a red site of the RGGB photo: the phase is handled
    sample = RawSample(mosaic=arrays.mosaic[21:53, 31:71], top=21, left=31, cfa="RGGB", wb=arrays.wb,
                       cam2rgb=arrays.cam2rgb)
    sample.save(tmp_path / "sample.npz")
    loaded = load_raw_sample(tmp_path / "sample.npz")
    assert (loaded.top, loaded.left, loaded.cfa) == (21, 31, "RGGB")
    np.testing.assert_allclose(loaded.mosaic, sample.mosaic)
    out = tmp_path / "tuned.pt"
    result = CliRunner().invoke(main, ["finetune", str(checkpoint), str(photo), "--sample", str(tmp_path / "sample.npz"),
                                       "--edit", "ev=+0.5", "--steps", "15", "--lr", "3e-3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = read_checkpoint(out)["extra"]["finetune"]
    assert report["edit"]["exposure_ev"] == 0.5 and report["steps"] == 15
    assert report["after"]["loss"] < 0.8 * report["before"]["loss"]
    assert report["after"]["srgb_psnr"] > report["before"]["srgb_psnr"]
    assert report["sample"]["height"] == 32 - 2 and report["sample"]["width"] == 40 - 2  # cut to RGGB phase
    tuned, _ = load_checkpoint(out)
    base, _ = load_checkpoint(checkpoint)
    assert not torch.equal(tuned.tail.weight, base.tail.weight)
    # a sample outside the photo is refused with a clear error
    RawSample(mosaic=np.zeros((16, 16), np.float32), top=60, left=90, cfa="RGGB", wb=np.ones(3),
              cam2rgb=np.eye(3)).save(tmp_path / "outside.npz")
    result = CliRunner().invoke(main, ["finetune", str(checkpoint), str(photo), "--sample",
                                       str(tmp_path / "outside.npz"), "-o", str(tmp_path / "x.pt")])
    assert result.exit_code == 1 and "not inside" in result.output


def test_eval_infer_and_validation_blend_alike(tiny_unet):
    """`rawedge eval`'s path (the Reconstructor on the checkpoint through the PyTorch runner) and `rawedge
    infer`'s (the same Reconstructor on the exported ONNX through ONNX Runtime) feed the same tiles and
    give the same mosaic for the same photo and camera; predict_full (validation) blends the same way."""
    from rawedge.export.torch_runner import TorchRunner
    from rawedge.runtimes import Reconstructor

    from rawedge.io.photo import read_photo
    from rawedge.isp.ops import pack
    from rawedge.models.checkpoint import load_checkpoint
    from rawedge.training.tiling import predict_full
    from rawedge.types import CameraProfile
    from tests.conftest import SAMPLE_JPEG

    onnx_path, ckpt_path = tiny_unet[0], tiny_unet[1]
    model, ckpt = load_checkpoint(ckpt_path)
    photo = read_photo(SAMPLE_JPEG)
    img = np.ascontiguousarray(photo.srgb[:150, :226])
    profile = CameraProfile(name="test", cfa="RGGB", black_level=[0.0] * 4, white_level=65535.0)
    mosaics, plans = {}, {}
    with Reconstructor(TorchRunner.from_model(model, ckpt, device="cpu"), tile=64, overlap=16) as torch_rec, \
            Reconstructor.open(onnx_path, tile=64, overlap=16, threads=1) as ort_rec:
        for name, rec in (("torch", torch_rec), ("ort", ort_rec)):
            plans[name] = rec.plan(img, photo.exif, rec.camera_options(profile=profile, wb=[2.0, 1.0, 1.5]))
            mosaics[name] = rec.blend(plans[name], rec.run(plans[name])).mosaic()
        for a, b in zip(plans["torch"].batches(), plans["ort"].batches()):
            assert a.positions == b.positions
            for k in set(a.feed) & set(b.feed):
                np.testing.assert_array_equal(a.feed[k], b.feed[k])
        written = ort_rec.reconstruct(plans["ort"]).normalized()  # what `rawedge infer` writes
    assert np.abs(mosaics["torch"] - mosaics["ort"]).max() < 1e-4
    assert np.abs(written - np.clip(mosaics["torch"], 0, 1)).max() < 1e-4
    inputs = {k: torch.from_numpy(v) for k, v in plans["torch"].constants.items()}
    inputs["srgb"] = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
    packed = predict_full(model, inputs, tile=64, overlap=16)["raw"][0].numpy()
    np.testing.assert_allclose(packed, pack(mosaics["torch"], "RGGB"), atol=1e-5, rtol=0)


def test_heldout_accuracy_from_a_report_goes_into_the_export(toy_dir, checkpoint, tmp_path):
    from rawedge.metadata.read import read_model_metadata
    from rawedge.models.checkpoint import read_checkpoint
    from rawedge.training.evaluate import evaluate, heldout_accuracy, write_report

    report, _ = evaluate(str(checkpoint), toy_dir)
    scores = [im["model"]["raw"]["psnr"] for im in report["images"]]
    acc = heldout_accuracy(report)
    assert acc["heldout_raw_psnr_p90"] == pytest.approx(float(np.percentile(scores, 90)))
    assert min(scores) <= acc["heldout_raw_psnr_mean"] <= acc["heldout_raw_psnr_p90"] <= max(scores)
    with pytest.raises(RawedgeError, match="not this checkpoint"):
        heldout_accuracy(report, "0" * 64)
    with pytest.raises(RawedgeError, match="not a rawedge eval report"):
        heldout_accuracy({"format": "other"})
    path = tmp_path / "report.json"
    write_report(report, path)
    from rawedge.export import export_checkpoint

    export_checkpoint(checkpoint, tmp_path / "m.onnx", check=False, accuracy=path)
    metrics = read_model_metadata(tmp_path / "m.onnx").metrics
    assert metrics["heldout_raw_psnr_p90"] == pytest.approx(acc["heldout_raw_psnr_p90"])
    assert read_checkpoint(checkpoint)["metrics"].get("heldout_raw_psnr_p90") is None  # the checkpoint is untouched
    other = dict(report, model={**report["model"], "weights_sha256": "f" * 64})
    write_report(other, tmp_path / "other.json")
    with pytest.raises(RawedgeError, match="not this checkpoint"):
        export_checkpoint(checkpoint, tmp_path / "n.onnx", check=False, accuracy=tmp_path / "other.json")
    assert not (tmp_path / "n.onnx").exists()
