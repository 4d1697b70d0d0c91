"""Overexposure mask fusion: torch twins of runtimes/fusion.py, the two-branch model, the region loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rawedge.runtimes import fusion

from rawedge.losses import create_loss
from rawedge.models.oefusion import (
    box_blur_torch,
    feather_torch,
    fuse_torch,
    overexposure_mask_torch,
    packed_mask_torch,
)
from rawedge.models.registry import create_model

torch.set_num_threads(1)
TINY_UNET = {"width": 4, "depth": 1}


def bright_srgb(n=1, h=32, w=48, seed=0):
    """Random sRGB with a clipped highlight (a white square) and a few near-threshold pixels."""
    g = torch.Generator().manual_seed(seed)
    srgb = torch.rand(n, 3, h, w, generator=g) * 0.9
    srgb[:, :, 4:16, 6:20] = 1.0
    srgb[:, :, 20:22, 30:40] = 0.978  # exactly at the threshold: counts as over-exposed
    return srgb


def contract_inputs(srgb):
    n = srgb.shape[0]
    eye = torch.eye(3)[None].repeat(n, 1, 1)
    return (srgb, torch.rand(n, 3, 256, 256, generator=torch.Generator().manual_seed(1)),
            torch.full((n, 4), float("nan")), torch.tensor([[2.0, 1.0, 1.5]]).repeat(n, 1), eye, eye.clone())


def tiny_fusion(**overrides):
    torch.manual_seed(0)
    return create_model("oefusion", **{"branch": "unet", "branch_config": TINY_UNET, "refine_width": 4, **overrides})


# ---- numpy vs torch twins ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["luma", "max"])
def test_mask_matches_numpy(mode):
    srgb = bright_srgb(h=30, w=44)
    hwc = srgb[0].permute(1, 2, 0).numpy()
    expected = fusion.overexposure_mask(hwc, mode=mode)
    got = overexposure_mask_torch(srgb, mode=mode)[0, 0].numpy()
    assert expected.sum() > 100  # the highlight is found...
    np.testing.assert_array_equal(got, expected)  # ...identically
    with pytest.raises(ValueError):
        overexposure_mask_torch(srgb, mode="median")


@pytest.mark.parametrize("radius", [0, 1, 4, 9])
def test_blur_feather_packed_and_fuse_match_numpy(radius, rng):
    mask = (rng.random((26, 38)) > 0.8).astype(np.float32)  # non-square, radius wider than some runs
    t = torch.from_numpy(mask)[None, None]
    np.testing.assert_allclose(box_blur_torch(t, radius)[0, 0].numpy(), fusion.box_blur(mask, radius), atol=1e-6)
    soft_np = fusion.feather(mask, radius)
    soft_t = feather_torch(t, radius)
    np.testing.assert_allclose(soft_t[0, 0].numpy(), soft_np, atol=1e-6)
    packed_np = fusion.packed_mask(soft_np)
    packed_t = packed_mask_torch(soft_t)
    np.testing.assert_allclose(packed_t[0, 0].numpy(), packed_np, atol=1e-6)
    a, b = rng.random((4, 13, 19)).astype(np.float32), rng.random((4, 13, 19)).astype(np.float32)
    fused = fuse_torch(torch.from_numpy(a)[None], torch.from_numpy(b)[None], packed_t)[0].numpy()
    np.testing.assert_allclose(fused, fusion.fuse(a, b, packed_np), atol=1e-6)


# ---- the model ------------------------------------------------------------------------------------
def test_forward_outputs_and_fusion_of_branches():
    model = tiny_fusion().eval()
    assert model.output_names == ("raw", "raw_oe", "raw_noe")
    assert model.align == create_model("unet", **TINY_UNET).align
    srgb = bright_srgb()
    with torch.no_grad():
        out = model(*contract_inputs(srgb))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (1, 4, 16, 24) for k in model.output_names}
    soft = packed_mask_torch(feather_torch(overexposure_mask_torch(srgb), model.feather_radius))
    torch.testing.assert_close(out["raw"], fuse_torch(out["raw_oe"], out["raw_noe"], soft), atol=0, rtol=0)
    # the runtime's numpy fusion of the branch outputs with the (whole-image) mask gives the same RAW
    mask_np = fusion.packed_mask(fusion.feather(fusion.overexposure_mask(srgb[0].permute(1, 2, 0).numpy()),
                                                model.fusion["feather_radius"]))
    refused = fusion.fuse(out["raw_oe"][0].numpy(), out["raw_noe"][0].numpy(), mask_np)
    np.testing.assert_allclose(refused, out["raw"][0].numpy(), atol=1e-6)


def test_fusion_settings_follow_config():
    model = tiny_fusion(threshold=0.95, mode="max", feather=2)
    assert model.fusion["threshold"] == 0.95 and model.fusion["mode"] == "max" and model.fusion["feather_radius"] == 2
    assert model.fusion["outputs"] == {"oe": "raw_oe", "noe": "raw_noe", "fused": "raw"}
    assert model.export_extras() == {"fusion": model.fusion}  # what the exporter embeds as metadata
    with pytest.raises(ValueError):
        tiny_fusion(mode="median")


def test_branches_are_independent_and_all_parts_learn():
    model = tiny_fusion().train()
    for layer in [model.host_oe.tail, model.host_noe.tail, *[r.tail for r in model.refine_oe],
                  *[r.tail for r in model.refine_noe]]:
        torch.nn.init.normal_(layer.weight, std=0.05)
    out = model(*contract_inputs(bright_srgb(n=2)))
    assert not torch.equal(out["raw_oe"], out["raw_noe"])
    (out["raw_oe"].mean() + out["raw_noe"].mean()).backward()
    for name in ("host_oe.head.0.weight", "host_noe.head.0.weight", "refine_oe.0.body.0.weight",
                 "refine_noe.0.body.0.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_shared_host_and_analytic_branch():
    from rawedge.models.base import analytic_packed

    shared = tiny_fusion(share_host=True)
    separate = tiny_fusion()
    assert shared.host_noe is None
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in separate.parameters())
    # the paper's "UPI + refinement": the analytic host, two refinement steps; at initialisation = analytic
    upi = tiny_fusion(branch="analytic", branch_config={}, refine_steps=2).eval()
    assert len(upi.refine_oe) == 2
    inputs = contract_inputs(bright_srgb())
    with torch.no_grad():
        out = upi(*inputs)
    torch.testing.assert_close(out["raw"], analytic_packed(inputs[0], inputs[3], inputs[5]))


def test_checkpoint_round_trip(tmp_path):
    from rawedge.models.checkpoint import load_checkpoint, save_checkpoint

    model = tiny_fusion(threshold=0.96).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(tmp_path / "f.pt", model)
    loaded, _ = load_checkpoint(tmp_path / "f.pt")
    inputs = contract_inputs(bright_srgb())
    assert loaded.fusion == model.fusion
    with torch.no_grad():
        for name in model.output_names:
            torch.testing.assert_close(loaded(*inputs)[name], model(*inputs)[name], atol=0, rtol=0)


def test_onnx_export_three_outputs(tmp_path):
    import onnxruntime as ort

    model = tiny_fusion().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))

    class Contract(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            out = self.model(*args)
            return tuple(out[n] for n in model.output_names)

    names = ["srgb", "thumb", "exif", "wb", "cam2rgb", "rgb2cam"]
    dyn = {"srgb": {0: "n", 2: "h", 3: "w"}, **{n: {0: "n"} for n in names[1:]},
           **{o: {0: "n", 2: "h2", 3: "w2"} for o in model.output_names}}
    torch.onnx.export(Contract().eval(), contract_inputs(bright_srgb()), str(tmp_path / "f.onnx"), input_names=names,
                      output_names=list(model.output_names), dynamic_axes=dyn, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(tmp_path / "f.onnx"), providers=["CPUExecutionProvider"])
    inputs = contract_inputs(bright_srgb(h=40, w=32, seed=3))
    feed = {i.name: dict(zip(names, inputs))[i.name].numpy() for i in session.get_inputs()}
    got = session.run(list(model.output_names), feed)
    with torch.no_grad():
        expected = model(*inputs)
    for name, value in zip(model.output_names, got):
        assert float(np.abs(value - expected[name].numpy()).max()) < 1e-5, name


# ---- the region loss --------------------------------------------------------------------------------
def test_region_loss_zero_at_equality_and_positive_otherwise():
    loss_fn = create_loss("oe_region")
    srgb = bright_srgb(n=2)
    target = torch.rand(2, 4, 16, 24, generator=torch.Generator().manual_seed(5))
    batch = {"srgb": srgb, "raw": target}
    mask = loss_fn.region_mask(srgb)
    assert 0 < float(mask.mean()) < 0.5
    perfect = {"raw": target, "raw_oe": target.clone(), "raw_noe": target.clone()}
    loss, parts = loss_fn(perfect, batch)
    assert float(loss) < 1e-6 and parts["oe_fraction"] == pytest.approx(float(mask.mean()))
    # an error outside the over-exposed region moves only the NOE terms
    noe_err = target + 0.1 * (1 - mask)
    loss, parts = loss_fn({"raw": noe_err, "raw_oe": noe_err, "raw_noe": noe_err}, batch)
    assert float(loss) > 1e-3 and parts["oe_msssim_l1"] < 1e-6 and parts["noe_l2"] > 1e-4
    # an error inside it moves only the OE term; a wrong raw_noe there is not penalised (other branch's job)
    oe_err = target + 0.1 * mask
    loss, parts = loss_fn({"raw": oe_err, "raw_oe": oe_err, "raw_noe": oe_err}, batch)
    assert parts["oe_msssim_l1"] > 1e-3 and parts["noe_l2"] < 1e-9
    # a plain model (one "raw") is scored in both regions
    loss, parts = loss_fn({"raw": target * 0.9}, batch)
    assert parts["oe_msssim_l1"] > 0 and parts["noe_l2"] > 0


def test_region_loss_options_and_gradients():
    srgb = bright_srgb()
    target = torch.rand(1, 4, 16, 24, generator=torch.Generator().manual_seed(6))
    pred = (target + 0.05 * torch.randn(1, 4, 16, 24, generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    pred.requires_grad_(True)
    loss_fn = create_loss("oe_region", gamma=1 / 3.6, fused_l2_weight=1.0, yuv_weight=0.5)
    loss, parts = loss_fn({"raw": pred}, {"srgb": srgb, "raw": target})
    assert {"fused_l2", "yuv_l1", "oe_region"} <= set(parts) and parts["yuv_l1"] > 0
    loss.backward()
    assert torch.isfinite(pred.grad).all() and float(pred.grad.abs().sum()) > 0
    zero, _ = loss_fn({"raw": target}, {"srgb": srgb, "raw": target})
    assert float(zero) < 1e-6
