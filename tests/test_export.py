"""Export: one self-describing ONNX file per model that ONNX Runtime, OpenVINO (and TensorRT's parser
where installed) accept, with the contract's six inputs, dynamic sizes, metadata and measured parity."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from rawedge.export import (
    clean,
    default_output_path,
    export_checkpoint,
    export_model,
    receptive_field,
)
from rawedge.export.metadata import json_safe

from rawedge.contract import INPUT_NAMES, canonical_inputs
from rawedge.errors import RawedgeError
from rawedge.metadata.read import read_model_metadata as read_metadata
from rawedge.metadata.schema import METADATA_KEY, ModelMeta
from rawedge.models import registry
from rawedge.models.base import ReverseISP, analytic_packed
from rawedge.models.checkpoint import save_checkpoint, weights_sha256
from rawedge.models.registry import create_model, list_models, model_class
from rawedge.profiles import bundled_profiles
from tests.conftest import SAMPLE_JPEG

TINY_UNET = {"width": 4, "depth": 2}
S40 = "Canon PowerShot S40"


def perturb(model, seed: int = 1, scale: float = 0.05):
    """Move the weights off their initialisation (the U-Net tail starts at zero = analytic output)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def fill_model_data(model, seed: int = 2):
    """Models that carry data beyond weights (PriorRAW's reference table) get a random one."""
    if hasattr(model, "set_prior_table"):
        g = torch.Generator().manual_seed(seed)
        k = model.prior_feat.shape[0] // 2
        feat = torch.nn.functional.normalize(torch.randn(k, model.prior_feat.shape[1], generator=g), dim=1)
        model.set_prior_table(feat, torch.rand(k, 3, generator=g), torch.rand(k, 4, generator=g))
    return model


def save_tiny(path: Path, name: str = "unet", **config) -> Path:
    torch.manual_seed(0)
    model = fill_model_data(perturb(create_model(name, **(config or (TINY_UNET if name == "unet" else {})))))
    save_checkpoint(path, model, camera_profiles=[bundled_profiles()[S40].to_dict()],
                    recipe={"id": "test-recipe", "loss": "raw_l1"}, metrics={"val_psnr": 41.5})
    return path


def random_feed(n: int, h: int, w: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cam2rgb = bundled_profiles()[S40].cam2rgb()
    canon = canonical_inputs(cam2rgb, np.array([2.1, 1.0, 1.5]))
    feed = {"srgb": rng.random((n, 3, h, w), dtype=np.float32),
            "thumb": rng.random((n, 3, 256, 256), dtype=np.float32),
            "exif": np.tile(np.array([[1 / 125, 200, 4.0, np.nan]], np.float32), (n, 1))}
    for k, v in canon.items():
        feed[k] = np.repeat(v, n, axis=0)
    return {k: np.ascontiguousarray(feed[k], dtype=np.float32) for k in INPUT_NAMES}


def torch_run(model, feed) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(*(torch.from_numpy(feed[k]) for k in INPUT_NAMES))
    return {k: out[k].numpy() for k in model.output_names}


def rawedge(*args):
    return subprocess.run([sys.executable, "-m", "rawedge.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def unet_export(tmp_path_factory):
    """(checkpoint, onnx path, metadata, printed lines) of a tiny perturbed U-Net exported as a user
    does it: `rawedge export tiny.pt` (default output path tiny.onnx)."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("unet")
    ckpt = save_tiny(d / "tiny.pt")
    out = rawedge("export", ckpt)
    assert out.returncode == 0, out.stderr
    return ckpt, d / "tiny.onnx", read_metadata(d / "tiny.onnx"), out.stdout.splitlines()


def test_default_output_names():
    assert default_output_path("runs/m.pt") == Path("runs/m.onnx")
    assert default_output_path("m.pt", fp16=True) == Path("m.fp16.onnx")
    assert default_output_path("m.pt", fp16=True, static_tile=256) == Path("m.tile256.fp16.onnx")


def test_six_inputs_dynamic_axes_and_outputs(unet_export):
    ckpt, path, _meta, _ = unet_export
    assert path.is_file()
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in s.get_inputs()}
    assert [i.name for i in s.get_inputs()] == list(INPUT_NAMES)  # exif is unused by unet, still an input
    assert shapes == {"srgb": ["N", 3, "H", "W"], "thumb": ["N", 3, 256, 256], "exif": ["N", 4], "wb": ["N", 3],
                      "cam2rgb": ["N", 3, 3], "rgb2cam": ["N", 3, 3]}
    assert [(o.name, o.shape) for o in s.get_outputs()] == [("raw", ["N", 4, "h", "w"])]
    from rawedge.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    for n, h, w in ((1, 64, 96), (3, 32, 160)):  # two sizes, two batch sizes, non-square
        feed = random_feed(n, h, w, seed=h)
        got = s.run(None, feed)[0]
        assert got.shape == (n, 4, h // 2, w // 2)
        np.testing.assert_allclose(got, torch_run(model, feed)["raw"], atol=1e-5)
    graph = onnx.load(str(path))
    assert {"Inverse", "NonZero"}.isdisjoint(clean.op_types(graph))
    onnx.checker.check_model(graph, full_check=True)


def test_metadata_round_trip_and_parity(unet_export, tmp_path):
    ckpt, path, meta, lines = unet_export
    returned = export_checkpoint(ckpt, tmp_path / "again.onnx", check=False)  # the API returns what it embeds
    assert read_metadata(tmp_path / "again.onnx") == returned and returned.parity == {"checked": False}
    assert returned.weights_sha256 == meta.weights_sha256 and returned.config == meta.config
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert ModelMeta.from_json(props[METADATA_KEY]) == meta
    assert meta.model_name == "unet" and meta.config == {**model_class("unet").default_config, **TINY_UNET}
    assert meta.align == 8
    assert meta.inputs == list(INPUT_NAMES) and meta.outputs == ["raw"] and meta.thumb_size == 256
    assert [p["name"] for p in meta.camera_profiles] == [S40, "generic"]
    assert meta.recipe["id"] == "test-recipe" and meta.metrics["val_psnr"] == 41.5
    ck = torch.load(ckpt, weights_only=False)
    assert meta.weights_sha256 == ck["weights_sha256"] == weights_sha256(ck["state_dict"])
    assert meta.rawedge_version and meta.precision == "fp32" and meta.static_tile is None
    # tiling: multiples of align, overlap covers twice the measured margin
    rf = meta.metrics["receptive_field"]
    assert rf["support_px"] > 0 and 0 < rf["margin_px"] <= rf["support_px"] and not rf["reaches_border"]
    assert meta.tile % 8 == 0 and meta.overlap % 8 == 0 and meta.overlap >= 2 * rf["margin_px"]
    # parity measured on the sample photo with its profile, on ORT and OpenVINO
    par = meta.parity
    assert par["checked"] and par["photo"] == SAMPLE_JPEG.name and par["profile"] == S40
    assert 0 <= par["max_abs"] <= 1e-4 and par["tolerance"] == {"max_abs": 1e-4}
    ort_cases = par["backends"]["onnxruntime"]["cases"]
    assert [c["shape"] for c in ort_cases] == [[1, 3, 256, 384], [1, 3, 128, 128], [2, 3, 96, 160]]
    assert all(c["max_abs"] <= 1e-4 and (c["psnr_db"] is None or c["psnr_db"] > 100) for c in ort_cases)
    assert sum("max abs" in line and "PSNR" in line for line in lines) == 3 * len(par["backends"])
    assert f"wrote {path}" in lines[-1] and "opset 17" in lines[-1]


def test_parity_check_is_honest(unet_export, monkeypatch, tmp_path):
    """The check fails when ONNX and PyTorch disagree: export the checkpoint, then compare the file
    with a model whose weights changed after export."""
    from rawedge.export import parity

    ckpt, path, _meta, _ = unet_export
    from rawedge.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    photo = parity.load_check_photo(None)
    cases = parity.cases(photo, model.align)
    perturb(model, seed=7, scale=0.01)
    result = parity.compare(parity.ort_runner(path), cases, parity.reference(model, cases), "ort", "fp32")
    assert result["max_abs"] > 1e-4
    with pytest.raises(RawedgeError, match="differs from PyTorch"):
        parity.require(result, path)


def test_openvino_reads_metadata_and_matches_ort(unet_export, tmp_path):
    ov = pytest.importorskip("openvino")
    _ckpt, path, meta, _ = unet_export
    core = ov.Core()
    model = core.read_model(str(path))
    assert ModelMeta.from_json(model.get_rt_info(["framework", METADATA_KEY]).astype(str)) == meta
    assert [p.get_any_name() for p in model.inputs] == list(INPUT_NAMES)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    feed = random_feed(2, 48, 80, seed=3)
    ov_out = np.asarray(compiled(feed)[compiled.outputs[0]])
    ort_out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    assert ov_out.shape == (2, 4, 24, 40)
    np.testing.assert_allclose(ov_out, ort_out, atol=1e-5)
    # the IR written by OpenVINO keeps the metadata, and `rawedge info` reads it
    xml = tmp_path / "tiny.xml"
    ov.save_model(model, str(xml))
    from rawedge.cli.model_info import describe_model

    text = "\n".join(describe_model(xml))
    assert "rawedge model 'unet'" in text and "OpenVINO IR" in text and "srgb [?,3,?,?]" in text


def test_tensorrt_parser_accepts(unet_export):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    _ckpt, path, _meta, _ = unet_export
    logger = trt.Logger(trt.Logger.ERROR)
    try:
        builder = trt.Builder(logger)
    except Exception as exc:  # no GPU / driver
        pytest.skip(f"TensorRT builder unavailable: {exc}")
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(path.read_bytes())
    assert ok, [str(parser.get_error(i)) for i in range(parser.num_errors)]


def test_receptive_field_measure_matches_tiling(unet_export):
    """Cutting a tile changes the output only within the measured support of the cut."""
    from rawedge.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(unet_export[0])
    rf = receptive_field.measure(model)
    feed = random_feed(1, 192, 192, seed=5)
    full = torch_run(model, feed)["raw"]
    cut = dict(feed, srgb=np.ascontiguousarray(feed["srgb"][:, :, :, :96]))  # tile = left half
    part = torch_run(model, cut)["raw"]
    diff = np.abs(part - full[:, :, :, :48]).max(axis=(0, 1, 2))  # per packed column
    far = 48 - (rf["support_px"] // 2 + 1)
    assert diff[:far].max() < 1e-6  # farther than the support from the cut: unaffected
    assert diff[far:].max() > 1e-6  # near the cut: affected (the support is not overstated)
    assert receptive_field.measure(create_model("analytic"))["support_px"] == 0


def test_analytic_exports_without_weights(tmp_path):
    ckpt = tmp_path / "a.pt"
    save_checkpoint(ckpt, create_model("analytic"))
    meta = export_checkpoint(ckpt)
    assert meta.model_name == "analytic" and meta.align == 2 and meta.overlap == 2
    assert meta.weights_sha256 == weights_sha256({})
    assert meta.parity["max_abs"] <= 1e-4
    s = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == list(INPUT_NAMES)
    feed = random_feed(1, 6, 10)
    np.testing.assert_allclose(s.run(None, feed)[0], torch_run(create_model("analytic"), feed)["raw"], atol=1e-6)


def _registry_params():
    params = []
    for name in list_models():
        cls = model_class(name)
        tiny = getattr(cls, "tiny_config", None)
        marks = [] if tiny is not None or name == "analytic" else [pytest.mark.slow]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("name", _registry_params())
def test_every_registry_model_exports(name, tmp_path):
    torch.set_num_threads(1)
    cls = model_class(name)
    config = dict(getattr(cls, "tiny_config", None) or cls.default_config)
    ckpt = save_tiny(tmp_path / f"{name}.pt", name, **config)
    out = tmp_path / f"{name}.onnx"
    if not cls.output_names or cls.output_names[0] != "raw":  # e.g. a forward (RAW -> sRGB) ISP
        with pytest.raises(RawedgeError, match="not a reverse-ISP model"):
            export_checkpoint(ckpt, out)
        assert not out.exists()
        return
    meta = export_checkpoint(ckpt, out)
    from rawedge.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    assert meta.outputs == list(model.output_names) and meta.align == int(model.align)
    assert json_safe(getattr(model, "exif_facts", {})).items() <= meta.exif_facts.items()
    assert meta.parity["max_abs"] <= 1e-4 and meta.tile % meta.align == 0 and meta.overlap % meta.align == 0
    extras = model.export_extras() if hasattr(model, "export_extras") else {}
    for key, value in extras.items():
        got = getattr(meta, key)
        assert (json_safe(value).items() <= got.items()) if isinstance(value, dict) else got == value, key
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in s.get_inputs()] == list(INPUT_NAMES)
    assert [o.name for o in s.get_outputs()] == list(model.output_names)
    a = model.align
    feed = random_feed(1, -(-64 // a) * a, -(-96 // a) * a, seed=11)
    got = dict(zip(model.output_names, s.run(None, feed)))
    for k, ref in torch_run(model, feed).items():
        np.testing.assert_allclose(got[k], ref, atol=1e-4)
    # weights and buffers (PriorRAW's table) are initializers inside the one file
    assert not [t for t in onnx.load(str(out)).graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def test_static_tile_and_ort_format(unet_export, tmp_path):
    ckpt = unet_export[0]
    out = tmp_path / "tile.onnx"
    meta = export_checkpoint(ckpt, out, static_tile=64, ort_format=True)
    assert meta.static_tile == 64 and meta.tile == 64 and 0 < meta.overlap <= 32
    assert set(meta.parity["backends"]) >= {"onnxruntime", "ort_format"}
    assert [c["shape"] for c in meta.parity["backends"]["ort_format"]["cases"]] == [[1, 3, 64, 64]] * 2
    from rawedge.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt)
    feed = random_feed(1, 64, 64, seed=4)
    for path in (out, tmp_path / "tile.ort"):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert s.get_inputs()[0].shape == [1, 3, 64, 64] and s.get_inputs()[2].shape == [1, 4]
        np.testing.assert_allclose(s.run(None, feed)[0], torch_run(model, feed)["raw"], atol=1e-5)
        assert ModelMeta.from_json(s.get_modelmeta().custom_metadata_map[METADATA_KEY]).static_tile == 64
        with pytest.raises(Exception, match="invalid dimensions"):
            s.run(None, random_feed(1, 32, 64))  # the tile size is fixed
    with pytest.raises(RawedgeError, match="multiple of the model's align"):
        export_checkpoint(ckpt, tmp_path / "bad.onnx", static_tile=60)
    assert not (tmp_path / "bad.onnx").exists()


def test_fp16(unet_export, tmp_path):
    ckpt, fp32_path, _meta, _ = unet_export
    meta = export_checkpoint(ckpt, tmp_path / "h.onnx", fp16=True)
    assert meta.precision == "fp16" and meta.parity["tolerance"] == {"min_psnr_db": 60.0}
    assert meta.parity["min_psnr_db"] >= 60.0 and meta.parity["max_abs"] < 5e-3
    graph = onnx.load(str(tmp_path / "h.onnx"))
    assert {i.type.tensor_type.elem_type for i in graph.graph.input} == {onnx.TensorProto.FLOAT}
    assert {i.type.tensor_type.elem_type for i in graph.graph.output} == {onnx.TensorProto.FLOAT}
    conv_weights = [t for t in graph.graph.initializer if len(t.dims) == 4]
    assert conv_weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in conv_weights)
    assert (tmp_path / "h.onnx").stat().st_size < 0.75 * fp32_path.stat().st_size


class MaskedWithExtraOutput(ReverseISP):
    """A float mask made from a boolean (a Cast in the graph) and an output that is also used inside the
    graph: the two cases onnxconverter-common gets wrong and ``rawedge.export.fp16`` repairs."""

    model_name = "test_mask_extra"
    output_names = ("raw", "raw_prior")

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        prior = analytic_packed(srgb, wb, rgb2cam)
        mask = torch.nn.functional.avg_pool2d((srgb.mean(1, keepdim=True) > 0.8).float(), 2)
        return {"raw": prior * (1 - mask) + 0.9 * mask, "raw_prior": prior}


def test_fp16_mask_and_reused_output(tmp_path):
    meta = export_model(MaskedWithExtraOutput(), None, tmp_path / "m.onnx", fp16=True)
    assert meta.outputs == ["raw", "raw_prior"] and meta.parity["min_psnr_db"] >= 60.0
    graph = onnx.load(str(tmp_path / "m.onnx"))
    assert [o.name for o in graph.graph.output] == ["raw", "raw_prior"]
    assert {o.type.tensor_type.elem_type for o in graph.graph.output} == {onnx.TensorProto.FLOAT}


def test_large_model_uses_external_data(unet_export, tmp_path, monkeypatch):
    """Above the protobuf limit the weights go to MODEL.onnx.data (threshold lowered to test the path)."""
    monkeypatch.setattr(clean, "EXTERNAL_DATA_THRESHOLD", 1024)
    out = tmp_path / "big.onnx"
    meta = export_checkpoint(unet_export[0], out)
    data = tmp_path / "big.onnx.data"
    assert data.is_file() and data.stat().st_size > out.stat().st_size
    assert meta.parity["max_abs"] <= 1e-4
    assert read_metadata(out) == meta
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert s.run(None, random_feed(1, 32, 32))[0].shape == (1, 4, 16, 16)
    with pytest.raises(RawedgeError, match="ORT format holds at most 2 GB"):
        export_checkpoint(unet_export[0], tmp_path / "big2.onnx", ort_format=True, check=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]


@pytest.mark.slow
def test_dynamo_exporter(unet_export, tmp_path):
    with pytest.raises(RawedgeError, match="opset 18"):
        export_checkpoint(unet_export[0], tmp_path / "d.onnx", exporter="dynamo", check=False)
    pytest.importorskip("onnxscript")
    meta = export_checkpoint(unet_export[0], tmp_path / "d.onnx", exporter="dynamo", opset=18)
    assert meta.parity["max_abs"] <= 1e-4
    s = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in s.get_inputs()][:1] == [("srgb", ["N", 3, "H", "W"])]
    assert [i.name for i in s.get_inputs()] == list(INPUT_NAMES)


# --- models that must be refused -----------------------------------------------------------------
class InverseInGraph(ReverseISP):
    """Inverts the colour matrix inside the graph (the contract forbids it: rgb2cam comes from the host)."""

    model_name = "test_inverse"
    config: dict = {}

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        return {"raw": analytic_packed(srgb, wb, torch.linalg.inv(cam2rgb))}


class DataDependentShape(ReverseISP):
    model_name = "test_nonzero"
    config: dict = {}

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        hot = torch.nonzero(srgb > 0.99)
        return {"raw": analytic_packed(srgb, wb, rgb2cam) + 0.0 * hot.sum().float()}


class BadExtras(ReverseISP):
    model_name = "test_bad_extras"
    config: dict = {}

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        return {"raw": analytic_packed(srgb, wb, rgb2cam)}

    def export_extras(self):
        return {"align": 64}


@pytest.mark.parametrize("case", ["foreign", "corrupted", "truncated", "unknown-model", "inverse", "nonzero",
                                  "bad-extras", "missing"])
def test_bad_input_clear_error_no_output(case, tmp_path, monkeypatch):
    ckpt = tmp_path / "m.pt"
    message = {"foreign": "not a rawedge checkpoint", "corrupted": "not a readable PyTorch checkpoint",
               "truncated": "not a readable PyTorch checkpoint", "unknown-model": "unknown model 'nosuchnet'",
               "inverse": "cannot be exported to ONNX", "nonzero": "NonZero", "bad-extras": "export_extras",
               "missing": "no such file"}[case]
    if case == "foreign":
        torch.save(create_model("unet", **TINY_UNET).state_dict(), ckpt)
    elif case == "corrupted":
        ckpt.write_bytes(b"\x80\x04garbage" * 100)
    elif case == "truncated":
        save_tiny(ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:5000])
    elif case == "unknown-model":
        save_tiny(ckpt)
        d = torch.load(ckpt, weights_only=False)
        d["model_name"] = "nosuchnet"
        torch.save(d, ckpt)
    elif case in ("inverse", "nonzero", "bad-extras"):
        cls = {"inverse": InverseInGraph, "nonzero": DataDependentShape, "bad-extras": BadExtras}[case]
        monkeypatch.setitem(registry._REGISTRY, cls.model_name, cls)
        save_checkpoint(ckpt, cls())
    with pytest.raises(RawedgeError, match=message) as err:
        export_checkpoint(ckpt)
    assert err.value.path == str(ckpt) and "\n" not in str(err.value)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".rawedge-tmp-*"))


def test_cli_info_and_errors(unet_export, tmp_path):
    info = rawedge("info", unet_export[1])
    assert info.returncode == 0, info.stderr
    text = info.stdout
    for expected in ("rawedge model 'unet' (fp32)", "opset ai.onnx 17", "inputs       srgb [N,3,H,W] float32",
                     "exif [N,4] float32", "outputs      raw [N,4,h,w] float32", "depth=2  exif_dim=0", "exposure_blend=1.0  global_tone=False  metering_knee=None  metering_weight=0.0  prior_blend=1.0",
                     "width=4",
                     "align 8", f"cameras      {S40}, generic", "recipe       id=test-recipe", "parity",
                     "onnxruntime", "boxes_s40.jpg"):
        assert expected in text, (expected, text)
    bad = rawedge("export", tmp_path / "nothere.pt")
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "rawedge: error:" in bad.stderr
    helptext = rawedge("export", "--help")
    assert helptext.returncode == 0 and "Example" in helptext.stdout


def test_info_works_without_torch_and_onnx(unet_export, tmp_path):
    """`rawedge info MODEL` on a runtime-only install; also a TensorRT engine's sidecar and a plain ONNX."""
    path = unet_export[1]
    plain = tmp_path / "plain.onnx"
    g = onnx.load(str(path))
    del g.metadata_props[:]
    onnx.save(g, str(plain))
    engine = tmp_path / "abc.engine"
    engine.write_bytes(b"\0" * 64)
    meta = read_metadata(path)
    (tmp_path / "abc.json").write_text(json.dumps({"format": "rawedge-trt-engine", "rawedge": meta.to_json()}))
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'kornia'):
            raise ImportError('blocked')
sys.meta_path.insert(0, Block())
from rawedge.cli.model_info import describe_model
for p in {[str(path), str(plain), str(engine)]!r}:
    print('\\n'.join(describe_model(p)))
assert 'torch' not in sys.modules and 'onnx' not in sys.modules
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("rawedge model 'unet'") == 2  # the .onnx and the engine sidecar
    assert "plain.onnx: ONNX (IR" in out.stdout and "no rawedge metadata" in out.stdout
    assert "weights      sha256 " + meta.weights_sha256 in out.stdout


def test_info_rejects_non_onnx(tmp_path):
    from rawedge.cli.model_info import describe_model

    f = tmp_path / "x.onnx"
    f.write_bytes(b"\xff" * 40)
    with pytest.raises(RawedgeError, match="not an ONNX model"):
        describe_model(f)


def test_export_model_in_memory_reports_border_reaching_models(tmp_path):
    """A model that takes a global statistic from the tile (not from thumb) is flagged: its tiles would
    disagree wherever they are cut."""

    class TileMean(ReverseISP):
        model_name = "test_tile_mean"
        config: dict = {}

        def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
            return {"raw": analytic_packed(srgb, wb, rgb2cam) * (0.5 + srgb.mean(dim=(1, 2, 3))[:, None, None, None])}

    lines: list[str] = []
    meta = export_model(TileMean(), None, tmp_path / "t.onnx", check=False, log=lines.append)
    assert meta.metrics["receptive_field"]["reaches_border"] is True
    assert any("global statistic" in line for line in lines)
    assert meta.parity == {"checked": False}
    assert [p["name"] for p in meta.camera_profiles] == ["generic"]


def test_hedges_are_baked_into_the_onnx_file(tmp_path):
    """tone_blend, exposure_blend, metering_weight (with and without its highlight knee) and prior_blend
    (rawedge hedge, benchmarks/lofo.py --hedge) travel in the exported graph: every runtime applies the
    hedge the checkpoint carries."""
    torch.set_num_threads(1)
    config = {"width": 4, "depth": 1, "global_tone": True, "prior_stats": True, "tone_input": "stats"}
    outputs = {}
    cases = ((1.0, 1.0, 0.0, None), (0.5, 1.0, 0.0, None), (1.0, 0.0, 0.0, None), (1.0, 1.0, 0.4, None),
             (1.0, 1.0, 0.4, 0.3))
    for case in cases:
        tone, eta, kappa, knee = case
        ckpt = save_tiny(tmp_path / f"t{case}.pt", "unet", **config, tone_blend=tone,
                         exposure_blend=eta, metering_weight=kappa, metering_knee=knee, prior_blend=0.8)
        from rawedge.models.checkpoint import load_checkpoint

        model, _ = load_checkpoint(ckpt)
        assert model.tone.bias.abs().max() > 0  # save_tiny perturbs every weight: the tone does something
        out = tmp_path / f"t{case}.onnx"
        export_checkpoint(ckpt, out)
        feed = random_feed(1, 32, 48, seed=5)
        s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        outputs[case] = s.run(None, feed)[0]
        np.testing.assert_allclose(outputs[case], torch_run(model, feed)["raw"], atol=1e-4)
    plain = outputs[cases[0]]
    for hedged in cases[1:]:
        assert np.abs(plain - outputs[hedged]).max() > 1e-3, hedged
    assert np.abs(outputs[cases[3]] - outputs[cases[4]]).max() > 1e-4  # the knee gates the metering gain
