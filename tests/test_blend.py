"""The hedge toward the analytic inverse (rawedge.training.blend, UNet ``prior_blend``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rawedge.training.blend import GRID, camera_gains, choose, sweep, with_blend

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    from rawedge.data.pairs import make_toy_data

    path = tmp_path_factory.mktemp("toy") / "pairs"
    make_toy_data(path, count=4, size=(64, 96), seed=3)
    return path


@pytest.fixture(scope="module")
def offset_unet(tmp_path_factory):
    """A tiny confidence U-Net whose output is offset from the analytic inverse."""
    from rawedge.models.checkpoint import save_checkpoint
    from rawedge.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("unet", width=4, depth=1, confidence=True)
    with torch.no_grad():
        model.tail.bias[:4].fill_(0.03)
    path = tmp_path_factory.mktemp("ckpt") / "offset.pt"
    save_checkpoint(path, model, recipe={"name": "test"})
    return path


def _rows(camera_gain_slopes):
    """Sweep rows whose PSNR is a made-up function of lambda per camera (analytic = 30 dB)."""
    rows = []
    for cam, curve in camera_gain_slopes.items():
        values = [30.0 + curve(lam) for lam in GRID]
        rows.append({"id": cam, "camera": cam, "kind": "libraw", "family": "f", "raw": values, "srgb": values})
    return rows


def test_choose_maximises_the_worst_camera():
    rows = _rows({"good": lambda lam: 4.0 * lam,  # the model helps this camera more the more it is trusted
                  "bad": lambda lam: 2.0 * lam - 4.0 * lam**2})  # a gain up to lambda 0.25, a loss beyond 0.5
    lam, evidence = choose(rows)
    assert lam in (0.2, 0.3)  # the worst camera peaks at 0.25
    assert evidence["worst_camera_gain_db"][0] == 0.0  # lambda 0 is the analytic inverse itself
    assert evidence["cameras"]["bad"]["raw"][10] == pytest.approx(-2.0)
    assert choose(_rows({"good": lambda lam: 4.0 * lam}))[0] == 1.0
    assert choose(_rows({"hurt": lambda lam: -lam}))[0] == 0.0
    # with the bar's tolerance: the best mean among the lambdas that cost no camera more than 0.3 dB
    slight = _rows({"good": lambda lam: 4.0 * lam, "slight": lambda lam: -0.25 * lam})
    assert choose(slight)[0] == 0.0 and choose(slight, floor=-0.3)[0] == 1.0
    assert choose(_rows({"good": lambda lam: 4.0 * lam, "bad": lambda lam: -lam}), floor=-0.35)[0] == 0.3
    assert choose(_rows({"hurt": lambda lam: -lam}), floor=-0.3)[0] in (0.0, 0.1, 0.2, 0.3)


def test_camera_gains_are_relative_to_the_analytic_inverse():
    rows = _rows({"a": lambda lam: lam})
    rows[0]["raw"] = [25.0 + lam for lam in GRID]  # another analytic level: gains are differences
    gains = camera_gains(rows)
    np.testing.assert_allclose(gains["a"]["raw"], np.asarray(GRID), atol=1e-12)
    with pytest.raises(ValueError, match="at least one image"):
        choose([])


def test_blended_checkpoint_is_the_linear_hedge(offset_unet, tmp_path):
    from rawedge.models.checkpoint import load_checkpoint
    from rawedge.models.registry import create_model

    out = tmp_path / "hedged.pt"
    with_blend(offset_unet, 0.3, out, {"grid": [0.0, 0.3]})
    hedged, ckpt = load_checkpoint(out)
    full, _ = load_checkpoint(offset_unet)
    assert ckpt["config"]["prior_blend"] == 0.3 and ckpt["extra"]["prior_blend"]["value"] == 0.3
    g = torch.Generator().manual_seed(1)
    inputs = (torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 256, 256, generator=g),
              torch.tensor([[0.01, 100.0, 4.0, 7.0]]), torch.tensor([[2.0, 1.0, 1.5]]), torch.eye(3)[None],
              torch.eye(3)[None])
    with torch.no_grad():
        a, m, h = full(*inputs)["analytic"], full(*inputs)["raw"], hedged(*inputs)["raw"]
    assert (m - a).abs().max() > 0.01  # the model does differ from its prior
    torch.testing.assert_close(h, a + 0.3 * (m - a))
    with pytest.raises(ValueError, match="prior_blend"):
        create_model("unet", width=4, depth=1, prior_blend=1.5)


def test_sweep_scores_every_lambda_from_one_pass(toy_dir, offset_unet):
    from rawedge.training.evaluate import evaluate

    rows = sweep(offset_unet, toy_dir, grid=(0.0, 0.5, 1.0))
    report, _ = evaluate(str(offset_unet), toy_dir)
    assert [r["id"] for r in rows] == [im["id"] for im in report["images"]]
    for r, im in zip(rows, report["images"]):
        assert len(r["raw"]) == 3
        assert r["raw"][0] == pytest.approx(im["analytic"]["raw"]["psnr"], abs=1e-3)  # lambda 0: analytic
        assert r["raw"][2] == pytest.approx(im["model"]["raw"]["psnr"], abs=1e-3)  # lambda 1: the model
        assert r["srgb"][2] == pytest.approx(im["model"]["srgb"]["default"]["psnr"], abs=1e-3)
        assert r["raw"][1] != pytest.approx(r["raw"][2], abs=1e-3)
    with pytest.raises(ValueError, match="global tone"):
        sweep(offset_unet, toy_dir, tone=0.5)  # nothing to hedge: an error, not a silent lambda-only sweep


def test_hedge_grid_joins_tone_sweeps_with_the_analytic_inverse_once():
    from rawedge.training.blend import hedge_grid

    full = _rows({"a": lambda lam: 2.0 * lam, "b": lambda lam: -3.0 * lam})  # the global tone hurts camera b
    untoned = _rows({"a": lambda lam: 1.0 * lam, "b": lambda lam: 1.0 * lam})
    rows, pairs = hedge_grid({1.0: full, 0.0: untoned})
    assert pairs[0] == (1.0, 0.0) and len(pairs) == 1 + 2 * (len(GRID) - 1)
    assert all(len(r["raw"]) == len(pairs) for r in rows)
    assert rows[0]["raw"][pairs.index((0.0, 1.0))] == pytest.approx(31.0)
    assert rows[1]["raw"][pairs.index((1.0, 1.0))] == pytest.approx(27.0)
    point, evidence = choose(rows, pairs)
    assert point == (0.0, 1.0)  # no tone, full refinement: both cameras gain 1 dB
    assert evidence["grid"][0] == [1.0, 0.0]
    assert choose(rows, pairs, floor=-0.3)[0] == (0.0, 1.0)
    with pytest.raises(ValueError, match="other images"):
        hedge_grid({1.0: full, 0.0: untoned[:1]})
    with pytest.raises(ValueError, match="at least one"):
        hedge_grid({})


def test_tone_blend_scales_the_global_tone_toward_none(tmp_path):
    from rawedge.models.checkpoint import load_checkpoint, save_checkpoint
    from rawedge.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("unet", width=4, depth=1, global_tone=True, prior_stats=True, tone_input="stats")
    with torch.no_grad():
        model.tone.bias.copy_(torch.tensor([0.5, 0.4, 0.4, 0.3, -0.2, -0.2, -0.2, -0.2]))
    path = tmp_path / "toned.pt"
    save_checkpoint(path, model, recipe={"name": "test"})
    prior = torch.full((1, 4, 8, 8), 0.25)
    g = torch.zeros(1, model.tone.in_features)
    with torch.no_grad():
        full = model.toned_prior(prior, g)
        model.tone_blend = 0.0
        assert torch.equal(model.toned_prior(prior, g), prior)  # mu 0: the analytic inverse's own tone
        model.tone_blend = 0.5
        half = model.toned_prior(prior, g)
    gain, gamma = torch.exp(model.tone.bias[:4] * 0.5), torch.exp(model.tone.bias[4:] * 0.5)
    torch.testing.assert_close(half[0, :, 0, 0], gain * 0.25 ** gamma)
    assert not torch.allclose(half, full)
    out = tmp_path / "hedged.pt"
    with_blend(path, 0.8, out, tone=0.5)
    hedged, ckpt = load_checkpoint(out)
    assert hedged.tone_blend == 0.5 and ckpt["config"]["tone_blend"] == 0.5
    assert ckpt["extra"]["prior_blend"]["tone_blend"] == 0.5
    with pytest.raises(ValueError, match="tone_blend"):
        create_model("unet", width=4, depth=1, tone_blend=0.5)  # no global tone to hedge
    with pytest.raises(ValueError, match="tone_blend"):
        create_model("unet", width=4, depth=1, global_tone=True, tone_blend=-0.1)


def test_exposure_blend_keeps_the_curve_and_the_analytic_level(tmp_path):
    """eta 0: the toned prior is the full tone's output times one gain, chosen so that its mean green level
    over the thumbnail's unclipped pixels is the prior's own; eta 0.5 lands between, in log. The metering
    weight moves the prior toward ISO 12232's metered level by one gain."""
    from rawedge.models.checkpoint import load_checkpoint, save_checkpoint
    from rawedge.models.registry import create_model

    model = create_model("unet", width=4, depth=1, global_tone=True, prior_stats=True, tone_input="stats")
    with torch.no_grad():  # a brightening gain and a flattening gamma, as a fold model learns
        model.tone.bias.copy_(torch.tensor([0.6, 0.5, 0.5, 0.4, -0.3, -0.3, -0.3, -0.3]))
    prior = torch.rand(1, 4, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.4  # the tone clips none
    g = torch.zeros(1, model.tone.in_features)
    levels = {}
    with torch.no_grad():
        full = model.toned_prior(prior, g, prior)
        for eta in (0.0, 0.5):
            model.exposure_blend = eta
            levels[eta] = model.toned_prior(prior, g, prior)
    ratio = levels[0.0] / full
    torch.testing.assert_close(ratio, ratio.flatten()[0].expand_as(ratio))  # one gain: the curve is kept
    assert float(ratio.flatten()[0]) < 0.8  # the tone's brightening is taken out
    assert float(levels[0.0][:, 1:3].mean()) == pytest.approx(float(prior[:, 1:3].mean()), rel=0.02)
    assert float(prior.mean()) < float(levels[0.5].mean()) < float(full.mean())
    torch.testing.assert_close(levels[0.5] / full, ratio.sqrt())  # half of the log change
    from rawedge.models.base import ISO_METERED_LEVEL

    with torch.no_grad():  # the metering weight moves the prior itself toward ISO 12232's metered level
        model.metering_weight = 1.0
        metered = model.metered(prior, prior)
        model.metering_weight = 0.5
        between = model.metered(prior, prior)
        model.metering_weight = 0.0
        assert torch.equal(model.metered(prior, prior), prior)
    assert float(metered[:, 1:3].mean()) == pytest.approx(ISO_METERED_LEVEL, rel=1e-4)
    geometric = (float(prior[:, 1:3].mean()) * ISO_METERED_LEVEL) ** 0.5
    assert float(between[:, 1:3].mean()) == pytest.approx(geometric, rel=1e-4)
    torch.testing.assert_close(between / prior, (between / prior).flatten()[0].expand_as(prior))  # one gain
    path, out = tmp_path / "toned.pt", tmp_path / "hedged.pt"
    save_checkpoint(path, model, recipe={"name": "test"})
    with_blend(path, 0.9, out, fixed={"exposure_blend": 0.0})
    hedged, ckpt = load_checkpoint(out)
    assert hedged.exposure_blend == 0.0 and ckpt["config"]["exposure_blend"] == 0.0
    assert ckpt["extra"]["prior_blend"]["exposure_blend"] == 0.0
    with_blend(out, 1.0, tmp_path / "kept.pt")  # no exposure given: the checkpoint's own stays
    assert load_checkpoint(tmp_path / "kept.pt")[0].exposure_blend == 0.0
    with pytest.raises(ValueError, match="exposure_blend"):
        create_model("unet", width=4, depth=1, exposure_blend=0.0)  # no global tone to hedge
    with pytest.raises(ValueError, match="exposure_blend"):
        create_model("unet", width=4, depth=1, global_tone=True, exposure_blend=1.5)


def test_a_metered_model_hedges_toward_its_metered_prior(toy_dir, tmp_path):
    """With a metering weight, lambda 0 is the metered prior (the model's fallback), and the sweep scores
    the analytic inverse beside it so gains stay gains over ``rawedge unprocess``."""
    from rawedge.models.checkpoint import save_checkpoint
    from rawedge.models.registry import create_model
    from rawedge.training.blend import baseline

    model = create_model("unet", width=4, depth=1, metering_weight=0.5)  # zero tail: output = its prior
    path = tmp_path / "metered.pt"
    save_checkpoint(path, model, recipe={"name": "test"})
    rows = sweep(path, toy_dir, grid=(0.0, 0.5, 1.0))
    assert all("analytic" in r for r in rows)
    for r in rows:  # the network adds nothing: every lambda is the metered prior
        assert r["raw"][0] == pytest.approx(r["raw"][2], abs=1e-3)
    assert any(abs(r["raw"][0] - baseline(r, "raw")) > 0.05 for r in rows)  # the metered prior is not the analytic
    gains = camera_gains(rows)
    for g in gains.values():
        np.testing.assert_allclose(g["raw"][0], np.mean([r["raw"][0] - baseline(r, "raw") for r in rows]), atol=1e-6)
    with torch.no_grad():  # prior_blend 0: the output is the metered prior, not the analytic inverse
        model.prior_blend = 0.0
        srgb = torch.rand(1, 3, 32, 32)
        thumb = torch.nn.functional.interpolate(srgb, size=(256, 256), mode="bilinear")
        wb, eye = torch.tensor([[2.0, 1.0, 1.5]]), torch.eye(3)[None]
        out = model(srgb, thumb, torch.full((1, 4), float("nan")), wb, eye, eye)["raw"]
        from rawedge.models.base import analytic_packed

        metered = model.metered(analytic_packed(srgb, wb, eye), analytic_packed(thumb, wb, eye))
        torch.testing.assert_close(out, metered)
        assert not torch.allclose(out, analytic_packed(srgb, wb, eye))
