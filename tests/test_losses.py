"""Edit-aware and soft-supervision losses: sampling, rendering, zero/positive cases, gradients."""
import numpy as np
import pytest
import torch

from rawedge.errors import RawedgeError
from rawedge.isp import torch_ops as T
from rawedge.losses import create_loss, list_losses
from rawedge.losses.edit_aware import fixed_edits, render_edit
from rawedge.losses.edit_isp import (
    STYLE_NAMES,
    Edit,
    bernstein,
    default_looks,
    elevate,
    random_monotone_curves,
)
from rawedge.losses.soft import unwrap_variance_head, with_variance_head
from rawedge.models.checkpoint import load_checkpoint, save_checkpoint
from rawedge.models.registry import create_model

torch.set_num_threads(1)
CAM2RGB = torch.tensor([[1.7, -0.5, -0.2], [-0.25, 1.45, -0.2], [0.05, -0.55, 1.5]])


def _batch(n=2, h=16, w=16, seed=0, scale=0.6):
    g = torch.Generator().manual_seed(seed)
    c2r = CAM2RGB.expand(n, 3, 3).clone()
    return {"raw": torch.rand(n, 4, h, w, generator=g) * scale, "wb": torch.tensor([[2.0, 1.0, 1.5]] * n),
            "cam2rgb": c2r, "rgb2cam": torch.linalg.inv(c2r), "srgb": torch.rand(n, 3, 2 * h, 2 * w, generator=g),
            "thumb": torch.rand(n, 3, 256, 256, generator=g), "exif": torch.tensor([[0.01, 100.0, 4.0, 30.0]] * n)}


def test_losses_are_registered():
    assert {"edit_aware", "soft", "raw_l1"} <= set(list_losses())


def test_edit_aware_is_zero_for_a_perfect_prediction_and_positive_otherwise():
    loss = create_loss("edit_aware")
    batch = _batch()
    for _ in range(3):  # fresh random edits each call; identical inputs must still render identically
        total, logs = loss({"raw": batch["raw"].clone()}, batch)
        assert float(total) == 0.0 and logs["srgb_l1"] == 0.0
    pred = (batch["raw"] + 0.02 * torch.randn_like(batch["raw"])).clamp(0, 1).requires_grad_(True)
    total, logs = loss({"raw": pred}, batch)
    assert logs["srgb_l1"] > 0 and logs["raw_l1"] > 0
    assert float(total.detach()) == pytest.approx(logs["raw_l1"] + logs["srgb_l1"], rel=1e-5)
    total.backward()
    assert torch.isfinite(pred.grad).all() and float(pred.grad.abs().sum()) > 0


def test_edit_aware_weights_and_srgb_only_mode():
    batch = _batch()
    pred = {"raw": (batch["raw"] + 0.05).clamp(0, 1)}
    only_srgb = create_loss("edit_aware", raw_weight=0.0, srgb_weight=2.0, seed=3)
    total, logs = only_srgb(pred, batch)
    assert float(total) == pytest.approx(2.0 * logs["srgb_l1"], rel=1e-5)


def test_sampled_white_balance_follows_the_prior():
    mean, cov = [0.55, 0.35], [[0.02, 0.006], [0.006, 0.01]]
    edits = create_loss("edit_aware", wb_prior_mean=mean, wb_prior_cov=cov, seed=1).sample(20000)
    logs = torch.stack([torch.log(edits.wb_gains[:, 0] / edits.wb_gains[:, 1]),
                        torch.log(edits.wb_gains[:, 2] / edits.wb_gains[:, 1])], 1).double().numpy()
    assert np.allclose(logs.mean(0), mean, atol=0.005)
    assert np.allclose(np.cov(logs.T), cov, atol=0.001)
    ev = edits.exposure_ev.numpy()
    assert abs(ev.mean()) < 0.03 and abs(ev.std() - 0.75) < 0.03
    assert set(edits.style.tolist()) == set(range(len(STYLE_NAMES)))


def test_as_shot_mode_jitters_around_the_batch_white_balance():
    edits = create_loss("edit_aware", wb_mode="as_shot", seed=2).sample(5000)
    assert edits.wb_gains is None
    assert abs(float(torch.log(edits.wb_scale[:, 0]).mean())) < 0.01
    assert float(torch.log(edits.wb_scale[:, 2]).std()) == pytest.approx(0.2, abs=0.01)


def test_a_camera_profile_supplies_the_prior_and_bad_priors_are_rejected():
    from rawedge.types import CameraProfile

    prof = CameraProfile(name="cam", wb_prior_mean=[0.3, 0.9], wb_prior_cov=[[0.01, 0.0], [0.0, 0.01]])
    edits = create_loss("edit_aware", camera_profile=prof.to_dict()).sample(4000)
    assert float(torch.log(edits.wb_gains[:, 2]).mean()) == pytest.approx(0.9, abs=0.01)
    with pytest.raises(RawedgeError):
        create_loss("edit_aware", wb_prior_cov=[[0.01, 0.02], [0.02, 0.01]])  # not positive-definite
    with pytest.raises(RawedgeError):
        create_loss("edit_aware", wb_mode="daylight")


def test_random_tone_curves_are_monotonic_and_pinned():
    curves = random_monotone_curves(300, torch.Generator().manual_seed(0))
    x = torch.linspace(0, 1, 257).reshape(1, 1, 1, -1).expand(300, 1, 1, -1)
    y = bernstein(x, curves)[:, 0, 0]
    assert float(torch.diff(y, dim=1).min()) >= -1e-6
    assert torch.allclose(y[:, 0], torch.zeros(300), atol=1e-6)
    assert torch.allclose(y[:, -1], torch.ones(300), atol=1e-6)
    assert float((y - x[:, 0, 0]).abs().max()) > 0.05  # not all identity
    low = torch.tensor([[0.0, 0.7, 1.0]])  # degree elevation keeps the polynomial
    assert torch.allclose(bernstein(x[:1], low), bernstein(x[:1], elevate(low, 5)), atol=1e-6)


def test_fixed_edits_and_default_render_match_the_analytic_isp():
    edits = fixed_edits()
    assert [e.name for e in edits] == ["default", "bright", "cool_flat", "warm_contrast", "strong_tone"]
    batch = _batch(scale=0.3)  # no clipping, so the analytic ISP's intermediate clamps do not act
    renders = {e.name: render_edit(batch["raw"], batch["wb"], batch["cam2rgb"], e) for e in edits}
    ref = T.process(T.unpack(batch["raw"], "RGGB"), "RGGB", batch["wb"], batch["cam2rgb"])
    assert torch.allclose(renders["default"], ref, atol=1e-5)
    assert float(renders["bright"].mean()) > float(renders["default"].mean()) + 0.05
    for name in ("cool_flat", "warm_contrast", "strong_tone"):
        assert float((renders[name] - renders["default"]).abs().mean()) > 0.01, name
    warm, cool = renders["warm_contrast"], renders["cool_flat"]
    assert float((warm[:, 0] - warm[:, 2]).mean()) > float((cool[:, 0] - cool[:, 2]).mean())
    with pytest.raises(RawedgeError):
        Edit("bad", tone_curve=(0.0, 0.8, 0.5, 1.0))  # not monotonic


def test_colour_looks_are_fitted_and_distinct():
    looks = default_looks()
    assert max(looks.fit_errors.values()) < 0.03
    rgb = torch.rand(1, 3, 8, 8)
    outs = [looks(rgb, torch.tensor([i])) for i in range(len(STYLE_NAMES))]
    assert torch.equal(outs[0], rgb)  # neutral
    for i in range(1, len(outs)):
        assert float((outs[i] - rgb).abs().mean()) > 0.005, STYLE_NAMES[i]


def test_soft_loss_reduces_to_l1_without_noise_and_softens_with_it():
    batch = _batch()
    pred = {"raw": (batch["raw"] + 0.05 * torch.randn_like(batch["raw"])).clamp(0, 1)}
    plain, _ = create_loss("raw_l1")(pred, batch)
    soft0, _ = create_loss("soft", z_scale=0.0)(pred, batch)
    assert float(soft0) == float(plain)
    torch.manual_seed(0)
    soft1, logs = create_loss("soft")(pred, batch)
    assert float(soft1) != pytest.approx(float(plain), rel=1e-3)
    assert logs["raw_l1"] == pytest.approx(float(plain), rel=1e-6)
    perfect, _ = create_loss("soft")({"raw": batch["raw"].clone()}, batch)
    assert float(perfect) == 0.0  # no error, no softening


@pytest.mark.parametrize("term", ["l1", "nll"])
def test_variance_head_is_training_only_and_learns_from_the_soft_loss(term, tmp_path):
    torch.manual_seed(0)
    inner = create_model("unet", width=4, depth=1)
    model = with_variance_head(inner)
    assert model.output_names == ("raw",) and model.align == inner.align and model.model_name == "unet"
    batch = _batch(h=8, w=8)
    feed = {k: batch[k] for k in ("srgb", "thumb", "exif", "wb", "cam2rgb", "rgb2cam")}
    model.train()
    out = model(**feed)
    assert out["log_var"].shape == out["raw"].shape == (2, 4, 8, 8)
    loss, logs = create_loss("soft", variance_term=term, alpha=1.0)(out, batch)
    assert "variance" in logs
    loss.backward()
    head_grads = [p.grad for p in model.variance_head.parameters()]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in head_grads)
    model.eval()
    with torch.no_grad():
        out_eval = model(**feed)
        assert set(out_eval) == {"raw"} and torch.equal(out_eval["raw"], inner(**feed)["raw"])
    assert unwrap_variance_head(model) is inner and unwrap_variance_head(inner) is inner
    save_checkpoint(tmp_path / "u.pt", unwrap_variance_head(model))
    loaded, _ = load_checkpoint(tmp_path / "u.pt")
    with torch.no_grad():
        assert torch.equal(loaded(**feed)["raw"], out_eval["raw"])
