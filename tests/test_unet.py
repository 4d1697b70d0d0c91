"""U-Net options: the EXIF embedding and the global tone on the analytic prior."""
import math

import numpy as np
import pytest
import torch

from rawedge.models.base import analytic_packed
from rawedge.models.registry import create_model
from tests.test_paramisp import _inputs, _run

NAN = float("nan")
TONED = {"width": 8, "depth": 2, "exif_dim": 8, "global_tone": True}


def test_untrained_toned_unet_is_the_analytic_reverse_isp():
    model = create_model("unet", **TONED).eval()
    feed = _inputs()
    want = analytic_packed(feed["srgb"], feed["wb"], feed["rgb2cam"])
    assert float((_run(model, feed) - want).abs().max()) < 1e-5


def test_global_tone_scales_the_prior_and_exif_changes_the_output():
    torch.manual_seed(0)
    model = create_model("unet", **TONED).eval()
    with torch.no_grad():
        model.tone.bias.copy_(torch.tensor([math.log(1.5)] * 4 + [0.0] * 4))  # gain 1.5, gamma 1
    feed = _inputs()
    prior = analytic_packed(feed["srgb"], feed["wb"], feed["rgb2cam"])
    np.testing.assert_allclose(_run(model, feed), (1.5 * prior.clamp(min=1e-6)).clamp(0, 1), atol=1e-5)
    with torch.no_grad():
        model.tone.weight.normal_(std=0.5)
    a = _run(model, feed)
    b = _run(model, {**feed, "exif": torch.tensor([[1 / 4000, 3200.0, 1.8, 6.0]])})
    c = _run(model, {**feed, "exif": torch.tensor([[NAN, NAN, NAN, NAN]])})
    assert float((a - b).abs().max()) > 1e-3 and torch.isfinite(c).all()


def test_toned_unet_gradients_reach_exif_and_tone():
    model = create_model("unet", **TONED).train()
    with torch.no_grad():
        model.tail.weight.normal_(std=0.05)
        model.tone.weight.normal_(std=0.1)
    model(**_inputs(n=2))["raw"].mean().backward()
    for name in ("tone.weight", "exif_proj.weight", "paramnet.mlp.1.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_global_tone_does_not_depend_on_the_tile():
    """The gains and gammas come from thumb and EXIF only: with the local residual off, a tile's output
    equals the crop of the whole-image output everywhere, borders included."""
    torch.manual_seed(0)
    model = create_model("unet", **TONED).eval()
    with torch.no_grad():
        model.tone.weight.normal_(std=0.5)
        model.tone.bias.normal_(std=0.2)
    feed = _inputs(h=128, w=160)
    full = _run(model, feed)
    y0, x0, h, w = 32, 32, 64, 96
    tile = _run(model, {**feed, "srgb": feed["srgb"][:, :, y0:y0 + h, x0:x0 + w]})
    crop = full[:, :, y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2]
    assert float((tile - crop).abs().max()) < 1e-6
    prior = analytic_packed(feed["srgb"], feed["wb"], feed["rgb2cam"])
    assert float((full - prior).abs().max()) > 1e-2  # the tone did change the output


@pytest.mark.filterwarnings("ignore")  # the TorchScript exporter's deprecation and tracer notes
def test_toned_unet_exports_with_exif_facts(tmp_path):
    import onnxruntime as ort
    from rawedge.export import export_checkpoint

    from rawedge.models.checkpoint import load_checkpoint
    from tests.test_export import random_feed, save_tiny, torch_run

    ckpt = save_tiny(tmp_path / "toned.pt", "unet", **TONED)
    meta = export_checkpoint(ckpt, tmp_path / "toned.onnx")
    assert meta.exif_facts["order"] == ["exposure_time", "iso", "f_number", "focal_length"]
    model, _ = load_checkpoint(ckpt)
    feed = random_feed(2, 64, 96, seed=5)  # its EXIF has a missing focal length (NaN)
    sess = ort.InferenceSession(str(tmp_path / "toned.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, feed)[0]
    np.testing.assert_allclose(got, torch_run(model, feed)["raw"], atol=1e-5)
