"""ParamISP: shapes, EXIF handling and dropout, tile independence, ONNX parity, checkpoints."""
import json
import math

import numpy as np
import pytest
import torch

from rawedge.contract import INPUT_NAMES, THUMB_SIZE
from rawedge.errors import RawedgeError
from rawedge.isp import torch_ops as T
from rawedge.models.base import analytic_packed
from rawedge.models.checkpoint import load_checkpoint, save_checkpoint
from rawedge.models.paramisp import PAPER_CONFIG, GlobalNet, safe_pow
from rawedge.models.registry import create_model, list_models

torch.set_num_threads(1)
NAN = float("nan")
CAM2RGB = torch.tensor([[1.7, -0.5, -0.2], [-0.25, 1.45, -0.2], [0.05, -0.55, 1.5]])


def _inputs(n=1, h=64, w=96, seed=0, exif=None):
    g = torch.Generator().manual_seed(seed)
    exif = torch.tensor([[1 / 60, 200.0, 4.0, 35.0]] * n) if exif is None else torch.as_tensor(exif).float()
    c2r = CAM2RGB.expand(n, 3, 3).clone()
    return {"srgb": torch.rand(n, 3, h, w, generator=g) * 0.9 + 0.05,
            "thumb": torch.rand(n, 3, THUMB_SIZE, THUMB_SIZE, generator=g),
            "exif": exif, "wb": torch.tensor([[2.1, 1.0, 1.6]]).expand(n, 3).clone(),
            "cam2rgb": c2r, "rgb2cam": torch.linalg.inv(c2r)}


def _run(model, feed):
    with torch.no_grad():
        return model(**feed)["raw"]


def test_registered_shapes_and_size():
    assert {"paramisp", "paramisp_forward"} <= set(list_models())
    model = create_model("paramisp").eval()
    out = _run(model, _inputs(n=2, h=64, w=96))
    assert out.shape == (2, 4, 32, 48)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert model.align == 8 and model.output_names == ("raw",)
    n_default = sum(p.numel() for p in model.parameters())
    n_paper = sum(p.numel() for p in create_model("paramisp", **PAPER_CONFIG).parameters())
    assert 100_000 <= n_default <= 300_000, n_default
    assert 600_000 <= n_paper <= 800_000, n_paper  # the paper reports 0.71 M


def test_untrained_model_starts_at_the_analytic_reverse_isp():
    feed = _inputs()
    out = _run(create_model("paramisp").eval(), feed)
    prior = analytic_packed(feed["srgb"], feed["wb"], feed["rgb2cam"])
    assert float((out - prior).abs().mean()) < 5e-4
    assert float((out - prior).abs().max()) < 5e-3
    learned_tone = _run(create_model("paramisp", srgb_prior=False).eval(), feed)  # the paper's variant
    assert float((learned_tone - prior).abs().mean()) < 3e-3


@pytest.mark.parametrize("name", ["paramisp", "paramisp_forward"])
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, dropout=0.0).train()
    feed = _inputs(n=2, h=32, w=32)
    if name == "paramisp_forward":
        raw = analytic_packed(feed.pop("srgb"), feed["wb"], feed["rgb2cam"])
        out = model(raw=raw, **feed)["srgb"]
    else:
        out = model(**feed)["raw"]
    (out - 0.3).abs().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or float(p.grad.abs().sum()) == 0.0]
    assert not missing, missing


def test_dropout_with_p1_equals_all_missing_exif():
    model = create_model("paramisp", dropout=1.0, dequant_noise=0.0).train()
    known, missing = _inputs(exif=[[1 / 60, 200.0, 4.0, 35.0]]), _inputs(exif=[[NAN] * 4])
    a, b = _run(model, known), _run(model, missing)
    assert torch.equal(a, b)
    # without dropout the EXIF really changes the output (so the equality above is not vacuous)
    model = create_model("paramisp", dropout=0.0, dequant_noise=0.0).train()
    assert float((_run(model, known) - _run(model, missing)).abs().max()) > 1e-6


def test_dropout_is_random_in_training_and_off_in_eval():
    model = create_model("paramisp", dropout=0.5, dequant_noise=0.0)
    feed = _inputs(n=8, h=16, w=16, exif=[[1 / 60, 200.0, 4.0, 35.0]] * 8)
    feed["srgb"] = feed["srgb"][:1].expand(8, -1, -1, -1)
    feed["thumb"] = feed["thumb"][:1].expand(8, -1, -1, -1)
    model.train()
    torch.manual_seed(1)
    out = _run(model, feed)
    assert float((out - out[:1]).abs().max()) > 1e-5  # per-image masks differ
    model.eval()
    a, b = _run(model, feed), _run(model, feed)
    assert torch.equal(a, b) and torch.allclose(a, a[:1].expand_as(a), atol=1e-6)


def test_missing_and_invalid_exif_behave_as_dropped():
    model = create_model("paramisp").eval()
    rows = [[NAN, 200.0, 4.0, 35.0], [0.0, 200.0, 4.0, 35.0], [-1.0, 200.0, 4.0, 35.0],
            [math.inf, 200.0, 4.0, 35.0], [NAN] * 4, [1e9, 1e9, 1e9, 1e9]]
    out = _run(model, _inputs(n=len(rows), exif=rows))
    assert torch.isfinite(out).all()
    same_srgb = _inputs(n=1)
    per_row = [_run(model, {**same_srgb, "exif": torch.tensor([r])}) for r in rows[:4]]
    for other in per_row[1:]:  # NaN, 0, negative and inf exposure are all "missing"
        assert torch.equal(per_row[0], other)


def test_local_stride_2_keeps_full_resolution_detail():
    """LocalNet on 2x2 blocks still predicts a different residual for each of the four pixels."""
    torch.manual_seed(0)
    model = create_model("paramisp", num_scale=1, num_block=1, attention_window=3, local_stride=2).eval()
    with torch.no_grad():
        model.localnet.tail.weight.normal_(std=0.05)
    feed = _inputs(h=64, w=96)
    res = model.local_residual(feed["srgb"], feed["srgb"], torch.zeros(1, model.paramnet.mlp[-1].out_features))
    assert res.shape == (1, 3, 64, 96)
    assert float((res[:, :, 0::2, 0::2] - res[:, :, 1::2, 1::2]).abs().max()) > 1e-3
    with pytest.raises(RawedgeError, match="local_stride"):
        create_model("paramisp", local_stride=3)


def test_bad_config_is_a_user_error():
    with pytest.raises(RawedgeError):
        create_model("paramisp", dropout=1.5)
    with pytest.raises(RawedgeError):
        create_model("paramisp", attention_window=4)


def test_exif_facts_are_json_and_equalisation_is_in_range():
    model = create_model("paramisp")
    facts = json.loads(json.dumps(model.exif_facts))
    assert facts["order"] == ["exposure_time", "iso", "f_number", "focal_length"]
    feats, valid = model.paramnet.equalize(torch.tensor([[1 / 125, 400.0, 2.8, 50.0], [NAN, 64.0, 32.0, 200.0]]))
    assert feats.shape == (2, 4, 15) and valid.tolist() == [[True] * 4, [False, True, True, True]]
    log_norm = feats[..., 6][valid]
    assert float(log_norm.min()) >= -0.01 and float(log_norm.max()) <= 1.01
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("local_stride", [1, 2])
def test_tile_output_equals_crop_of_whole_image_output(local_stride):
    torch.manual_seed(0)
    model = create_model("paramisp", num_scale=1, num_block=1, attention_window=3, local_stride=local_stride).eval()
    with torch.no_grad():  # make LocalNet's contribution large, as after training
        model.localnet.tail.weight.normal_(std=0.05)
    feed = _inputs(h=160 * local_stride, w=192 * local_stride)
    full = _run(model, feed)
    y0, x0, h, w = (v * local_stride for v in (32, 48, 96, 128))
    assert y0 % model.align == 0 and x0 % model.align == 0
    tile = _run(model, {**feed, "srgb": feed["srgb"][:, :, y0:y0 + h, x0:x0 + w]})
    crop = full[:, :, y0 // 2:(y0 + h) // 2, x0 // 2:(x0 + w) // 2]
    m = math.ceil(model.receptive_radius / 2)  # margin in packed pixels
    diff = (tile - crop).abs()
    assert float(diff[:, :, m:-m, m:-m].max()) < 1e-5
    assert float(diff.max()) > 1e-4  # the border does see the cut: the interior check is meaningful


@pytest.mark.filterwarnings("ignore")  # the TorchScript exporter's deprecation and tracer notes
def test_onnx_export_matches_pytorch(tmp_path):
    import onnxruntime
    model = create_model("paramisp").eval()
    feed = _inputs(n=2, exif=[[1 / 60, 200.0, 4.0, 35.0], [NAN, 100.0, NAN, 10.0]])
    path = tmp_path / "paramisp.onnx"
    dynamic = {name: {0: "n"} for name in INPUT_NAMES}
    dynamic["srgb"] = {0: "n", 2: "h", 3: "w"}
    dynamic["raw"] = {0: "n", 2: "h2", 3: "w2"}
    torch.onnx.export(model, tuple(feed[k] for k in INPUT_NAMES), str(path), dynamo=False, opset_version=17,
                      input_names=list(INPUT_NAMES), output_names=["raw"], dynamic_axes=dynamic)
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for h, w in ((64, 96), (32, 48)):
        f = {**feed, "srgb": _inputs(n=2, h=h, w=w, seed=3)["srgb"]}
        got = sess.run(None, {k: f[k].numpy() for k in INPUT_NAMES})[0]
        want = _run(model, f).numpy()
        assert got.shape == want.shape == (2, 4, h // 2, w // 2)
        assert np.abs(got - want).max() < 1e-4


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("paramisp", width=16, dropout=0.1)
    with torch.no_grad():
        model.localnet.tail.weight.normal_(std=0.05)
    model.eval()
    save_checkpoint(tmp_path / "p.pt", model, recipe={"loss": "edit_aware"})
    loaded, ckpt = load_checkpoint(tmp_path / "p.pt")
    assert ckpt["model_name"] == "paramisp" and loaded.config["width"] == 16 and loaded.config["dropout"] == 0.1
    feed = _inputs()
    assert torch.equal(_run(model, feed), _run(loaded, feed))


def test_forward_model_renders_like_the_analytic_isp():
    model = create_model("paramisp_forward").eval()
    feed = _inputs(n=1, h=64, w=64)
    raw = analytic_packed(feed["srgb"], feed["wb"], feed["rgb2cam"])
    thumb = model.canonical_thumb(raw, feed["wb"], feed["cam2rgb"])
    assert thumb.shape == (1, 3, THUMB_SIZE, THUMB_SIZE)
    with torch.no_grad():
        out = model(raw, thumb, feed["exif"], feed["wb"], feed["cam2rgb"])["srgb"]
    assert out.shape == (1, 3, 64, 64) and model.output_names == ("srgb",)
    ref = T.process(T.unpack(raw, "RGGB"), "RGGB", feed["wb"], feed["cam2rgb"], demosaic="malvar")
    assert float((out - ref).abs().mean()) < 1e-3  # an untrained model is the analytic ISP


def test_globalnet_curves_identity_endpoints_and_finite_gradients():
    x = torch.rand(2, 3, 8, 8)
    zeros = torch.zeros(2, 3)
    assert torch.allclose(GlobalNet.quadratic(x, torch.zeros(2, 30)), x)
    assert torch.allclose(GlobalNet.gamma_curve(x, zeros, zeros + 0.3, zeros), x, atol=1e-6)
    g = torch.randn(2, 3)
    ends = GlobalNet.gamma_curve(torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2).expand(2, 3, 1, 2), g, g, g)
    assert torch.allclose(ends[..., 0, 0], torch.zeros(2, 3), atol=1e-5)
    assert torch.allclose(ends[..., 0, 1], torch.ones(2, 3), atol=1e-5)
    base = torch.tensor([-0.5, 0.0, 1e-9, 0.5], requires_grad=True)
    gamma = torch.tensor(0.4, requires_grad=True)
    safe_pow(base, gamma).sum().backward()
    assert torch.isfinite(base.grad).all() and torch.isfinite(gamma.grad)
