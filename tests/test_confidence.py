"""The confidence path of issue 13: gate to the analytic prior, sigma output, its loss, its blending in
the runtimes, ``rawedge infer --confidence``, and the metrics that judge exposure and calibration."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

CONF_UNET = {"width": 4, "depth": 2, "exif_dim": 8, "global_tone": True, "prior_stats": True, "confidence": True}


def _inputs(n=1, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    eye = torch.eye(3).expand(n, 3, 3)
    return {"srgb": torch.rand(n, 3, size, size, generator=g), "thumb": torch.rand(n, 3, 256, 256, generator=g),
            "exif": torch.tensor([[1 / 60, 100.0, 4.0, 7.0]] * n), "wb": torch.tensor([[2.0, 1.0, 1.5]] * n),
            "cam2rgb": eye, "rgb2cam": eye}


def _model(seed=0):
    from rawedge.models.registry import create_model

    torch.manual_seed(seed)
    return create_model("unet", **CONF_UNET).eval()


def test_confidence_model_outputs_and_gate_falls_back_to_the_analytic_prior():
    from rawedge.models.base import analytic_packed

    model, x = _model(), _inputs()
    assert model.output_names == ("raw", "sigma")
    torch.nn.init.normal_(model.tail.weight, std=0.3)
    out = model(**x)
    assert out["raw"].shape == out["sigma"].shape == (1, 4, 16, 16)
    assert float(out["sigma"].detach().min()) > 0
    analytic = analytic_packed(x["srgb"], x["wb"], x["rgb2cam"])
    assert float((out["raw"] - analytic).abs().max()) > 1e-3  # the refinement matters...
    with torch.no_grad():
        model.tail.bias[4] = -60.0  # ...until the gate closes: then the output is the analytic inverse
    closed = model(**x)["raw"]
    assert torch.allclose(closed, analytic.clamp(0, 1), atol=1e-6)


def test_prior_statistics_are_exposure_facts():
    from rawedge.models.unet import prior_statistics

    grey = torch.full((1, 3, 256, 256), 0.5)
    stats = prior_statistics(grey, torch.ones(1, 3), torch.eye(3)[None])
    linear = 0.2140  # sRGB 0.5 -> linear
    assert stats.shape == (1, 5)
    assert stats[0, 0].item() == pytest.approx(np.log2(linear), abs=1e-3)
    assert stats[0, 1].item() == pytest.approx(np.log2(linear), abs=1e-3)
    assert stats[0, 3].item() == 0.0 and stats[0, 4].item() == 0.0
    bright = prior_statistics(grey * 2, torch.ones(1, 3), torch.eye(3)[None])
    assert bright[0, 3].item() == 1.0 and bright[0, 0] > stats[0, 0]
    with pytest.raises(ValueError, match="divisible by 8"):
        prior_statistics(torch.rand(1, 3, 30, 30), torch.ones(1, 3), torch.eye(3)[None])


def test_confidence_nll_is_lowest_at_the_true_error():
    from rawedge.losses.confidence import confidence_nll

    raw, target = torch.zeros(1, 4, 8, 8), torch.full((1, 4, 8, 8), 0.05)
    losses = {s: float(confidence_nll(torch.full_like(raw, s), raw, target)) for s in (0.01, 0.05, 0.2)}
    assert losses[0.05] < losses[0.01] and losses[0.05] < losses[0.2]
    with pytest.raises(ValueError):
        confidence_nll(torch.ones(1, 4, 8, 8), raw, target[:, :, :4])


def test_training_teaches_sigma_the_error(torch_one_thread):
    """A few steps on a fixed error: sigma moves towards it (the term reaches the head, not the RAW)."""
    from rawedge.losses.confidence import confidence_nll

    model, x = _model(1), _inputs(2, 32, 1)
    with torch.no_grad():
        noise = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
        target = model(**x)["raw"] + 0.08 * noise  # an error of about 0.08 to learn
    opt = torch.optim.Adam(model.tail.parameters(), lr=5e-2)  # the head that reads the decoder features
    start = float(model(**x)["sigma"].mean())
    for _ in range(150):
        out = model(**x)
        loss = confidence_nll(out["sigma"], out["raw"], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = model(**x)
    rms = float(((out["raw"] - target) ** 2).mean().sqrt())
    assert rms == pytest.approx(0.08, rel=0.1)  # the detached error: the RAW itself did not move
    assert abs(float(out["sigma"].mean()) - rms) < 0.25 * abs(start - rms)


def test_prior_pull_keeps_the_prior_where_the_data_disagree():
    """L1 + w * prior_pull, minimised over a free output: with targets split 60/40 around the prior the
    output stays at the prior (odds below 2:1 for w = 1/3); with 80/20 it moves to the majority."""
    from rawedge.losses.confidence import prior_pull

    prior = torch.full((1, 4, 1, 1), 0.2)
    with pytest.raises(ValueError):
        prior_pull(torch.zeros(1, 4, 2, 2), prior)
    for share_up, expect in ((0.6, 0.2), (0.8, 0.3)):
        ups = int(share_up * 10)
        targets = torch.cat([torch.full((ups, 4, 1, 1), 0.3), torch.full((10 - ups, 4, 1, 1), 0.1)])
        out = prior.clone().requires_grad_(True)
        opt = torch.optim.SGD([out], lr=2e-2)
        for _ in range(400):
            loss = (out - targets).abs().mean() + (1 / 3) * prior_pull(out, prior)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert float(out.mean()) == pytest.approx(expect, abs=0.01)


def test_metrics_for_exposure_scale_and_calibration():
    from rawedge.metrics import exposure_error_stops, psnr, scale_invariant_psnr, sigma_calibration

    rng = np.random.default_rng(0)
    truth = rng.uniform(0.05, 0.5, (4, 32, 32))
    assert exposure_error_stops(truth * 2, truth) == pytest.approx(1.0)
    assert exposure_error_stops(truth / 4, truth) == pytest.approx(-2.0)
    assert scale_invariant_psnr(truth * 2, truth) > 90 and psnr(truth * 2, truth) < 20
    sigma = rng.uniform(0.001, 0.1, 50_000)
    bins = sigma_calibration(sigma, rng.normal(0.0, sigma))
    assert len(bins) == 10 and all(abs(b["rms_error"] / b["sigma"] - 1) < 0.15 for b in bins)
    overconfident = sigma_calibration(sigma, rng.normal(0.0, 3 * sigma))
    assert all(b["rms_error"] > 2 * b["sigma"] for b in overconfident)


@pytest.fixture(scope="module")
def confidence_onnx(tmp_path_factory):
    from rawedge.export import export_checkpoint

    from rawedge.models.checkpoint import save_checkpoint

    d = tmp_path_factory.mktemp("conf")
    model = _model(2)
    torch.nn.init.normal_(model.tail.weight, std=0.2)
    save_checkpoint(d / "conf.pt", model)
    export_checkpoint(d / "conf.pt", d / "conf.onnx", check=False)
    return d / "conf.onnx", d / "conf.pt"


def test_reconstructor_blends_sigma_like_raw_and_tiling_does_not_show(confidence_onnx):
    from rawedge.runtimes import Reconstructor

    photo = np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    with Reconstructor.open(confidence_onnx[0], tile=0) as whole, \
            Reconstructor.open(confidence_onnx[0], tile=64, overlap=32) as tiled:
        assert whole.has_confidence
        a, b = whole(photo, confidence=True), tiled(photo, confidence=True)
        assert a.sigma.shape == a.bayer.shape == (90, 130) and a.sigma.dtype == np.float32
        assert float(a.sigma.min()) > 0
        assert np.abs(a.sigma - b.sigma).max() < 0.05 * float(a.sigma.mean()) + 1e-4
        assert whole(photo).sigma is None  # only when asked


def test_openvino_skips_the_confidence_head_when_not_asked(confidence_onnx):
    """confidence=False prunes sigma on OpenVINO (less work per tile); raw is unchanged, asking is an error."""
    pytest.importorskip("openvino")
    from rawedge.runtimes import Reconstructor

    from rawedge.errors import RawedgeError

    photo = np.random.default_rng(0).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    with Reconstructor.open(confidence_onnx[0], runtime="openvino", tile=64, overlap=32) as full, \
            Reconstructor.open(confidence_onnx[0], runtime="openvino", tile=64, overlap=32, confidence=False) as lean:
        assert full.runner.output_names == ["raw", "sigma"] and lean.runner.output_names == ["raw"]
        assert not lean.has_confidence
        np.testing.assert_array_equal(full(photo).bayer, lean(photo).bayer)
        with pytest.raises(RawedgeError, match="opened without its confidence output"):
            lean(photo, confidence=True)


def test_infer_confidence_writes_a_16_bit_map_or_refuses(confidence_onnx, tiny_unet, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from rawedge.cli import main
    from rawedge.io.photo import write_jpeg

    photo = tmp_path / "p.jpg"
    write_jpeg(photo, np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    result = CliRunner().invoke(main, ["infer", str(photo), "--model", str(confidence_onnx[0]), "--confidence",
                                       "-o", str(tmp_path / "p.dng")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "p.confidence.png") as im:
        levels = np.asarray(im)
    assert levels.shape == (40, 60) and levels.dtype == np.uint16 and levels.max() > 0
    assert "confidence map" in result.output
    refused = CliRunner().invoke(main, ["infer", str(photo), "--model", str(tiny_unet[0]), "--confidence",
                                        "-o", str(tmp_path / "q.dng")])
    assert refused.exit_code != 0 and "no confidence output" in refused.output
    assert not (tmp_path / "q.dng").exists()


def test_implausible_exif_is_dropped_with_a_notice(tmp_path):
    from rawedge.io.exif import TAG_EXPOSURE_BIAS, TAG_EXPOSURE_TIME, TAG_F_NUMBER, TAG_ISO, exif_from_tags
    from rawedge.io.photo import read_photo, write_jpeg
    from rawedge.types import Exif

    exif = exif_from_tags({TAG_ISO: 0, TAG_EXPOSURE_TIME: (-1, 60), TAG_EXPOSURE_BIAS: (100, 1), TAG_F_NUMBER: (28, 10)})
    assert exif.iso is None and exif.exposure_time is None and exif.exposure_bias is None and exif.f_number == 2.8
    assert len(exif.notes) == 3 and any("ISO 0 is implausible" in n for n in exif.notes)
    assert np.isnan(exif.to_vector()[:2]).all() and "notes" not in exif.to_dict()
    good = Exif(exposure_time=1 / 250, iso=200, exposure_bias=-0.7, brightness_value=7.5, make="X", model="Y")
    write_jpeg(tmp_path / "e.jpg", np.zeros((8, 8, 3), np.uint8), good)
    back = read_photo(tmp_path / "e.jpg").exif
    assert back.exposure_bias == pytest.approx(-0.7) and back.brightness_value == pytest.approx(7.5)
    assert back.notes == [] and back == good


def test_cli_says_which_exif_values_it_refused(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from rawedge.cli import main
    from rawedge.io.exif import EXIF_IFD_POINTER, TAG_EXPOSURE_BIAS, TAG_ISO

    exif = Image.Exif()
    sub = exif.get_ifd(EXIF_IFD_POINTER)
    sub[TAG_ISO] = 0
    from PIL import TiffImagePlugin

    sub[TAG_EXPOSURE_BIAS] = TiffImagePlugin.IFDRational(-100, 1)
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "odd.jpg", exif=exif)
    result = CliRunner().invoke(main, ["unprocess", str(tmp_path / "odd.jpg"), "-o", str(tmp_path / "odd.dng")])
    assert result.exit_code == 0, result.output
    assert "EXIF ISO 0 is implausible" in result.output and "exposure bias -100 EV is implausible" in result.output
