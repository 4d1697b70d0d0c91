"""PriorRAW: prior table, chunked retrieval, encoder stage, reconstructor, ONNX export, checkpoints, CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from rawedge.errors import RawedgeError
from rawedge.models.priorraw import INVALID_LOGIT, soft_retrieve
from rawedge.models.registry import create_model
from rawedge.training.prior import (
    _faiss,
    assembled_l2,
    build_prior_table_from_pairs,
    embed_references,
    load_reference_pair,
    train_encoder,
)
from tests.conftest import RAW_DIR, needs_shared

torch.set_num_threads(1)
TINY = {"embed_dim": 8, "enc_width": 8, "enc_blocks": 1, "width": 8, "depth": 1, "heads": 2, "head_dim": 4,
        "table_size": 32}


def tiny_model(**overrides):
    torch.manual_seed(0)
    return create_model("priorraw", **{**TINY, **overrides})


def synthetic_pairs(n=4, size=32, seed=0):
    """Blocky random sRGB plus texture, and a RAW that depends on it non-linearly (one camera)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        coarse = rng.random((3, size // 8, size // 8))
        srgb = np.kron(coarse, np.ones((8, 8))) * 0.7 + 0.3 * rng.random((3, size, size))
        srgb = np.clip(srgb, 0, 1).astype(np.float32)
        lin = srgb.reshape(3, size // 2, 2, size // 2, 2).mean(axis=(2, 4)) ** 2.2
        raw = np.stack([lin[0], lin[1], lin[1] * 0.98, lin[2] * 0.8]).astype(np.float32)
        pairs.append((srgb, raw))
    return pairs


def contract_inputs(n=1, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    eye = torch.eye(3)[None].repeat(n, 1, 1)
    return (torch.rand(n, 3, h, w, generator=g), torch.rand(n, 3, 256, 256, generator=g),
            torch.tensor([[1 / 60, 100.0, 4.0, 7.0]]).repeat(n, 1), torch.tensor([[2.0, 1.0, 1.5]]).repeat(n, 1),
            eye, eye.clone())


def model_with_table(**overrides):
    model = tiny_model(**overrides)
    table = build_prior_table_from_pairs(model, synthetic_pairs(), entries=24, group_size=6)
    table.install(model)
    return model.eval(), table


# ---- table -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_table_size_fraction_and_entries_are_member_averages(backend):
    if backend == "faiss" and _faiss() is None:
        pytest.skip("faiss not installed")
    model = tiny_model()
    pairs = synthetic_pairs()
    table = build_prior_table_from_pairs(model, pairs, entries=16, group_size=8, backend=backend)
    feats, srgb, raw = embed_references(model, pairs)
    assert table.backend == backend
    assert table.entries == 16 and table.feat.shape == (16, 8) and table.members.shape == (16, 8)
    assert table.reference_positions == feats.shape[0] == 4 * 16 * 16
    assert table.fraction() == pytest.approx(16 / 1024)
    assert table.nbytes() == 16 * (8 + 3 + 4) * 4
    for k in (0, 7, 15):
        idx = table.members[k]
        np.testing.assert_allclose(table.feat[k], feats[idx].mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(table.srgb[k], srgb[idx].mean(axis=0), atol=1e-6)
        np.testing.assert_allclose(table.raw[k], raw[idx].mean(axis=0), atol=1e-6)
    # members are the nearest embeddings of distinct clusters, not one repeated group
    assert len({tuple(sorted(m)) for m in table.members.tolist()}) > 8
    # the sRGB of a reference position is the mean of its 2x2 block
    np.testing.assert_allclose(srgb[0], pairs[0][0][:, :2, :2].mean(axis=(1, 2)), atol=1e-6)


def test_install_masks_unused_rows_and_rejects_oversized_tables():
    model, _ = model_with_table()
    assert model.table_count == 24 and float(model.prior_valid.sum()) == 24
    assert torch.all(model.prior_feat[24:] == 0)
    # garbage in the masked rows changes nothing: they get exactly zero weight
    inputs = contract_inputs()
    with torch.no_grad():
        before = model(*inputs)["raw"]
        model.prior_raw[24:] = 7.0
        model.prior_feat[24:] = 1.0
        after = model(*inputs)["raw"]
    assert torch.equal(before, after)
    with pytest.raises(RawedgeError, match="at most 32"):
        model.set_prior_table(np.zeros((40, 8)), np.zeros((40, 3)), np.zeros((40, 4)))


# ---- retrieval ---------------------------------------------------------------------------------------
def test_chunked_retrieval_equals_unchunked():
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(2, 1000, 8, generator=g), dim=-1)
    k = torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=-1)
    v = torch.rand(50, 5, generator=g)
    bias = torch.zeros(50)
    bias[40:] = INVALID_LOGIT
    full = soft_retrieve(q, k, v, 20.0, bias, chunk=None)
    chunked = soft_retrieve(q, k, v, 20.0, bias, chunk=128)
    torch.testing.assert_close(chunked, full, atol=1e-6, rtol=0)
    # invalid rows carry no weight: the result is a convex combination of the first 40 values only
    torch.testing.assert_close(full, soft_retrieve(q, k[:40], v[:40], 20.0, bias[:40], chunk=None), atol=1e-6, rtol=0)
    # multi-head layout [N, heads, P, D] with per-head keys [heads, K, D]
    qh, kh, vh = torch.randn(2, 3, 700, 4, generator=g), torch.randn(3, 50, 4, generator=g), torch.randn(3, 50, 4, generator=g)
    torch.testing.assert_close(soft_retrieve(qh, kh, vh, 0.5, bias, chunk=64), soft_retrieve(qh, kh, vh, 0.5, bias, None),
                               atol=1e-6, rtol=0)


def test_model_output_independent_of_chunk_size():
    model, _ = model_with_table()
    inputs = contract_inputs(n=2, h=48, w=80)
    with torch.no_grad():
        model.chunk = 0
        whole = model(*inputs)
        model.chunk = 100  # 24 x 40 = 960 positions -> 10 chunks, the last one partial
        chunked = model(*inputs)
    torch.testing.assert_close(chunked["raw"], whole["raw"], atol=1e-6, rtol=0)
    torch.testing.assert_close(chunked["prior_raw"], whole["prior_raw"], atol=1e-6, rtol=0)


# ---- encoder stage --------------------------------------------------------------------------------
def test_encoder_stage_reduces_assembled_l2():
    model = tiny_model()
    pairs = synthetic_pairs(n=6, size=32)
    targets, refs = pairs[:2], pairs[2:]
    before = assembled_l2(model, targets, refs)
    frozen = [p.requires_grad for p in model.encoder.parameters()]
    losses = train_encoder(model, pairs[2:], steps=60, lr=3e-3, crop=32, targets=1, references=3)
    after = assembled_l2(model, targets, refs)
    assert len(losses) == 60 and np.isfinite(losses).all()
    assert after < 0.5 * before, (before, after)
    # the encoder is frozen again for the reconstructor stage
    assert [p.requires_grad for p in model.encoder.parameters()] == frozen == [False] * len(frozen)


# ---- reconstructor ------------------------------------------------------------------------------
def test_forward_contract_and_gradients():
    model, _ = model_with_table()
    model.train()
    for layer in (model.tail, model.attn.out):  # zero-initialised residual outputs would block gradients
        torch.nn.init.normal_(layer.weight, std=0.01)
    srgb, thumb, exif, wb, cam2rgb, rgb2cam = contract_inputs(n=2, h=32, w=48)
    out = model(srgb, thumb, exif, wb, cam2rgb, rgb2cam)
    assert out["raw"].shape == (2, 4, 16, 24) and out["prior_raw"].shape == (2, 4, 16, 24)
    assert float(out["raw"].detach().min()) >= 0.0 and float(out["raw"].detach().max()) <= 1.0
    out["raw"].mean().backward()
    for name in ("fuse.0.weight", "conf.weight", "attn.q.weight", "attn.k.weight", "attn.v.weight",
                 "head.0.weight", "thumb.fc.weight", "tail.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    assert all(p.grad is None for p in model.encoder.parameters())  # frozen by default
    unfrozen, _ = model_with_table(freeze_encoder=False)
    torch.nn.init.normal_(unfrozen.tail.weight, std=0.01)
    unfrozen(srgb, thumb, exif, wb, cam2rgb, rgb2cam)["raw"].mean().backward()
    assert float(unfrozen.encoder.proj.weight.grad.abs().sum()) > 0


def test_output_is_analytic_prior_at_initialisation():
    from rawedge.models.base import analytic_packed

    model, _ = model_with_table()
    srgb, thumb, exif, wb, cam2rgb, rgb2cam = contract_inputs()
    with torch.no_grad():
        torch.testing.assert_close(model(srgb, thumb, exif, wb, cam2rgb, rgb2cam)["raw"],
                                   analytic_packed(srgb, wb, rgb2cam))


def test_tile_independence_away_from_borders():
    model, _ = model_with_table()
    with torch.no_grad():
        for p in model.parameters():  # random weights everywhere so every path contributes
            p.add_(0.05 * torch.randn_like(p))
    srgb, thumb, exif, wb, cam2rgb, rgb2cam = contract_inputs(h=192, w=192)
    top, left, size, margin = 32, 64, 128, 20  # crop offsets are multiples of the model's align
    assert top % model.align == 0 and left % model.align == 0
    crop = srgb[:, :, top:top + size, left:left + size]
    with torch.no_grad():
        full = model(srgb, thumb, exif, wb, cam2rgb, rgb2cam)["raw"]
        tile = model(crop, thumb, exif, wb, cam2rgb, rgb2cam)["raw"]
    t, l, s = top // 2, left // 2, size // 2
    expected = full[:, :, t + margin:t + s - margin, l + margin:l + s - margin]
    torch.testing.assert_close(tile[:, :, margin:s - margin, margin:s - margin], expected, atol=1e-5, rtol=0)
    # ...and the tile border does differ (zero padding), so the comparison above is not vacuous
    assert float((tile[:, :, 0] - full[:, :, t, l:l + s]).abs().max()) > 1e-4


def test_ablation_configurations_build_and_grow():
    counts = []
    for flags in [(False, False, False), (True, False, False), (True, True, False), (True, True, True)]:
        model = tiny_model(use_prior=flags[0], use_gate=flags[1], use_attention=flags[2])
        if model.needs_table:
            build_prior_table_from_pairs(model, synthetic_pairs(n=2), entries=8, group_size=4).install(model)
        with torch.no_grad():
            assert model(*contract_inputs(h=32, w=32))["raw"].shape == (1, 4, 16, 16)
        counts.append(sum(p.numel() for p in model.parameters()))
    assert counts == sorted(counts) and len(set(counts)) == 4


def test_recommended_tile_bounds_attention_memory():
    tiles = [create_model("priorraw", table_size=k).export_extras()["tile"] for k in (256, 1024, 4096)]
    assert tiles[0] == 512 and tiles[0] > tiles[1] > tiles[2] and all(t % 8 == 0 for t in tiles)
    model = create_model("priorraw", table_size=1024)
    positions = (tiles[1] // 2) ** 2
    assert positions * 1024 * 4 * (1 + 2) <= model.logits_budget  # retrieval + 2 heads of logits fit
    assert create_model("priorraw", use_prior=False, use_attention=False).export_extras() == {}


def test_missing_table_is_a_clear_error_unless_not_needed():
    model = tiny_model()
    with pytest.raises(RawedgeError, match="rawedge prior build"):
        model(*contract_inputs(h=32, w=32))
    plain = tiny_model(use_prior=False, use_gate=False, use_attention=False)
    assert plain(*contract_inputs(h=32, w=32))["raw"].shape == (1, 4, 16, 16)


# ---- export and checkpoints ------------------------------------------------------------------------
class Contract(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        return self.model(srgb, thumb, exif, wb, cam2rgb, rgb2cam)["raw"]


def export_onnx(model, path, inputs):
    names = ["srgb", "thumb", "exif", "wb", "cam2rgb", "rgb2cam"]
    dyn = {n: {0: "n"} for n in names}
    dyn["srgb"] = {0: "n", 2: "h", 3: "w"}
    dyn["raw"] = {0: "n", 2: "h2", 3: "w2"}
    torch.onnx.export(Contract(model).eval(), inputs, str(path), input_names=names, output_names=["raw"],
                      dynamic_axes=dyn, opset_version=17, dynamo=False)


def test_onnx_export_table_is_initializer_and_matches_pytorch(tmp_path):
    import onnx
    import onnxruntime as ort

    model, _ = model_with_table()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    path = tmp_path / "priorraw.onnx"
    export_onnx(model, path, contract_inputs(n=2, h=32, w=48))
    graph = onnx.load(str(path)).graph
    inits = [onnx.numpy_helper.to_array(i) for i in graph.initializer]
    table = model.prior_raw.numpy()
    assert any(a.shape == table.shape and np.allclose(a, table) for a in inits), "prior RAW table not embedded"
    assert not any(i.name in ("prior_feat", "prior_raw") for i in graph.input)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n, h, w in [(2, 32, 48), (1, 64, 40)]:  # the traced size and another one
        inputs = contract_inputs(n=n, h=h, w=w, seed=h)
        with torch.no_grad():
            expected = model(*inputs)["raw"].numpy()
        feed = dict(zip(["srgb", "thumb", "exif", "wb", "cam2rgb", "rgb2cam"], (t.numpy() for t in inputs)))
        feed = {i.name: feed[i.name] for i in session.get_inputs()}  # unused inputs are pruned
        got = session.run(["raw"], feed)[0]
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) < 1e-4


def test_export_without_table_raises(tmp_path):
    with pytest.raises(RawedgeError, match="no prior table"):
        export_onnx(tiny_model(), tmp_path / "x.onnx", contract_inputs(h=32, w=32))


def test_checkpoint_round_trip_keeps_table(tmp_path):
    from rawedge.models.checkpoint import load_checkpoint, save_checkpoint

    model, table = model_with_table()
    save_checkpoint(tmp_path / "p.pt", model, extra={"prior_table": table.summary()})
    loaded, ckpt = load_checkpoint(tmp_path / "p.pt")
    assert loaded.table_count == 24
    for name in ("prior_feat", "prior_srgb", "prior_raw", "prior_valid"):
        assert torch.equal(getattr(loaded, name), getattr(model, name))
    assert ckpt["extra"]["prior_table"]["entries"] == 24
    inputs = contract_inputs(h=32, w=32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs)["raw"], model(*inputs)["raw"], atol=0, rtol=0)
    assert all(not p.requires_grad for p in loaded.encoder.parameters())


# ---- real files and the CLI ------------------------------------------------------------------------
@needs_shared
def test_reference_pair_is_rggb_aligned_and_downscaled():
    srgb, raw = load_reference_pair(RAW_DIR / "Kodak_DC50_DC50IMG_DC0012L.KDC", max_side=200)  # GRBG camera
    assert srgb.shape[0] == 3 and raw.shape[0] == 4
    assert srgb.shape[1:] == (2 * raw.shape[1], 2 * raw.shape[2]) and max(srgb.shape) <= 200
    assert 0 <= raw.min() and raw.max() <= 1 and 0 <= srgb.min() and srgb.max() <= 1
    # bright sRGB blocks sit on bright RAW blocks (same grid, same phase)
    lum = srgb.reshape(3, raw.shape[1], 2, raw.shape[2], 2).mean(axis=(0, 2, 4))
    assert np.corrcoef(lum.ravel(), raw.mean(axis=0).ravel())[0, 1] > 0.8


@needs_shared
def test_cli_prior_build_writes_checkpoint_with_table(tmp_path):
    from click.testing import CliRunner

    from rawedge.cli import main
    from rawedge.models.checkpoint import load_checkpoint

    out = tmp_path / "g2.pt"
    files = ["Canon_PowerShot_G2_CRW_0304.CRW", "Canon_PowerShot_G2_CRW_0305.CRW"]
    args = ["prior", "build", "priorraw", "-o", str(out), "--max-side", "160", "--entries", "20", "--group-size", "10",
            "--train-encoder-steps", "2", "--encoder-crop", "32", "--threads", "1"]
    for key, value in TINY.items():
        args += ["--set", f"{key}={value}"]
    for f in files:
        args += ["--refs", str(RAW_DIR / f)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "prior table of 20 entries" in result.output
    model, ckpt = load_checkpoint(out)
    assert model.model_name == "priorraw" and model.table_count == 20
    summary = ckpt["extra"]["prior_table"]
    assert summary["entries"] == 20 and summary["camera"] == "Canon PowerShot G2" and summary["sources"] == files
    assert summary["fraction"] == pytest.approx(20 / summary["reference_positions"])
    assert [p["name"] for p in ckpt["camera_profiles"]] == ["Canon PowerShot G2"]
    # several cameras without --camera: one clear error line
    mixed = CliRunner().invoke(main, ["prior", "build", "priorraw", "-o", str(tmp_path / "m.pt"),
                                      "--refs", str(RAW_DIR / files[0]),
                                      "--refs", str(RAW_DIR / "Kodak_DC50_DC50IMG_DC0012L.KDC")])
    assert mixed.exit_code == 1 and "several cameras" in mixed.output and not (tmp_path / "m.pt").exists()


def test_pipeline_data_folder_prior_build_then_train_init(tmp_path):
    """Encoder stage + table from a data folder's train split, then the reconstructor with --init."""
    from click.testing import CliRunner

    from rawedge.cli import main
    from rawedge.data.pairs import make_toy_data
    from rawedge.models.checkpoint import load_checkpoint

    data = tmp_path / "pairs"
    make_toy_data(data, count=4, size=(64, 96), seed=0)
    prior_ckpt = tmp_path / "prior.pt"
    args = ["prior", "build", "priorraw", "--data", str(data), "--kinds", "synthetic", "-o", str(prior_ckpt),
            "--entries", "16", "--group-size", "8", "--train-encoder-steps", "3", "--encoder-crop", "32",
            "--threads", "1"]
    for key, value in TINY.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    built, ckpt = load_checkpoint(prior_ckpt)
    assert built.table_count == 16 and ckpt["extra"]["prior_table"]["reference_images"] >= 1
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--init", str(prior_ckpt), "--data", str(data), "--loss", "raw_l1",
                                       "--steps", "2", "--batch", "2", "--crop", "32", "--lr", "1e-3", "--device",
                                       "cpu", "--out", str(run), "--no-progress", "--set", "train.validate=false"])
    assert result.exit_code == 0, result.output
    trained, ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["config"] == built.config and ckpt["recipe"]["model"]["init"] == str(prior_ckpt)
    assert trained.table_count == 16 and torch.equal(trained.prior_raw, built.prior_raw)
    assert torch.equal(trained.encoder.proj.weight, built.encoder.proj.weight)  # frozen search encoder
    assert not torch.equal(trained.tail.weight, built.tail.weight)  # the reconstructor learned
