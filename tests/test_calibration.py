"""`rawedge calibrate`: INT8 artefacts for ONNX Runtime and OpenVINO that their runners load, the
accuracy gate (passes, fails with the layers it tried, measures what it claims), bad inputs that
write nothing, and the pieces (ISA scheme, split, network region, keep schedule, drop estimate).

A tiny U-Net and six 96x128 JPEGs with the sample's EXIF keep it fast; TensorRT is skipped where it is
not installed."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from rawedge.calibration.base import network_region
from rawedge.calibration.dataset import Tiling, list_sources, split_sources
from rawedge.calibration.gate import Budget, Gate, drop_bound, reference_quality
from rawedge.calibration.isa import cpu_flags, detect_isa, ort_scheme
from rawedge.calibration.sensitivity import keep_schedule
from rawedge.runtimes import int8_artefact_path, open_runner

from rawedge.cli import main
from rawedge.errors import RawedgeError
from rawedge.io.photo import read_photo, write_jpeg
from rawedge.metadata.schema import ModelMeta
from tests.conftest import KODAK_DIR, SAMPLE_JPEG
from tests.test_runtimes import export_tiny_unet

FAST = ("--calibration-tile", 32, "--tile", 64, "--max-tiles", 12, "--no-timing")
HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None
HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def model(tiny_unet):
    """(onnx, checkpoint) of a tiny U-Net exported by rawedge's exporter."""
    return tiny_unet[:2]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Six small JPEGs with the Canon S40 EXIF: crops of the sample and (where present) Kodak photos."""
    d = tmp_path_factory.mktemp("photos")
    sample = read_photo(SAMPLE_JPEG)
    kodak = sorted(KODAK_DIR.glob("*.png")) if KODAK_DIR.is_dir() else []
    for i in range(6):
        if i % 2 and kodak:
            img = np.asarray(Image.open(kodak[i]).convert("RGB").resize((128, 96), Image.BOX))
        else:
            y, x = 70 * i, 90 * i
            img = sample.srgb[y:y + 96, x:x + 128]
        write_jpeg(d / f"p{i}.jpg", np.ascontiguousarray(img), sample.exif, quality=95)
    return d


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def files_in(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


# --- ONNX Runtime: artefact, runner, gate, infer ---------------------------------------------------------
def test_ort_int8_builds_loads_and_passes(model, photos, tmp_path):
    onnx_path = tmp_path / "unet.onnx"
    onnx_path.write_bytes(model[0].read_bytes())
    code, text = run("calibrate", onnx_path, "--runtime", "ort", "--data", photos, "--reference", model[1],
                     "--max-drop", 3, *FAST)
    assert code == 0, text
    artefact = int8_artefact_path(onnx_path, "ort")
    assert artefact.name == "unet.ort.int8.onnx" and artefact.is_file()
    report = json.loads(artefact.with_suffix(".report.json").read_text())
    assert artefact.with_suffix(".report.png").stat().st_size > 1000
    assert report["passed"] and report["reference"]["kind"] == "pytorch"
    assert set(report["data"]["held_out_files"]).isdisjoint(report["data"]["calibration_files"])
    assert len(report["data"]["held_out_files"]) == 2  # round(0.25 * 6)
    summary = report["result"]["summary"]
    assert summary["psnr_vs_reference_db"] > 40 and report["result"]["drop_db"] <= 3
    assert 0 < summary["mean_abs"] <= summary["p99_abs"] <= summary["max_abs"] < 0.05
    assert set(summary["edits"]) == {"default", "bright", "cool_flat", "warm_contrast", "strong_tone"}
    assert report["scheme"]["reduce_range"] == (detect_isa().is_x86 and not detect_isa().vnni)

    import onnx

    ops = {n.op_type for n in onnx.load(artefact).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    runner = open_runner(onnx_path, "ort", "int8")  # what `rawedge infer --precision int8` opens
    assert runner.model_path == artefact
    with runner:
        meta = runner.metadata
    assert meta.precision == "int8" and meta.model_name == "unet"
    cal = meta.calibration
    assert cal["method"] == "minmax" and cal["scope"] == "network" and cal["reference"] == "pytorch"
    assert cal["held_out_files"] == report["data"]["held_out_files"] and cal["calibration_tiles"] >= 5
    assert cal["isa"]["machine"] and "reduce_range" in cal["scheme"] and cal["kept_layers"] == []
    assert math.isclose(cal["drop_db"], report["result"]["drop_db"])
    from rawedge.metadata.integrity import onnx_sha256

    assert meta.onnx_weights_sha256 == onnx_sha256(artefact)  # the artefact's own hash, not the FP32 model's

    out = tmp_path / "p0.npy"
    code, text = run("infer", photos / "p0.jpg", "--model", onnx_path, "--precision", "int8", "--format", "npy",
                     "-o", out, "--tile", 64)
    assert code == 0, text
    fp32 = tmp_path / "p0.fp32.npy"
    assert run("infer", photos / "p0.jpg", "--model", onnx_path, "--format", "npy", "-o", fp32, "--tile", 64,
               "--precision", "fp32")[0] == 0  # explicit: auto would take the INT8 artefact now beside the model
    a, b = np.load(out), np.load(fp32)
    assert a.shape == (96, 128) and 0 < np.abs(a - b).max() < 0.05  # INT8: close to FP32, not identical


@pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO/NNCF not installed (pip install 'rawedge[openvino]')")
def test_openvino_int8_builds_loads_and_passes(model, photos, tmp_path):
    onnx_path = tmp_path / "unet.onnx"
    onnx_path.write_bytes(model[0].read_bytes())
    code, text = run("calibrate", onnx_path, "--runtime", "openvino", "--data", photos, "--max-drop", 3, "--no-edits",
                     *FAST)
    assert code == 0, text
    xml = int8_artefact_path(onnx_path, "openvino")
    assert xml.name == "unet.openvino.int8.xml" and xml.with_suffix(".bin").is_file()
    report = json.loads(xml.with_suffix(".report.json").read_text())
    assert report["passed"] and report["reference"]["kind"] == "onnxruntime"
    assert report["scheme"]["preset"] == "MIXED" and report["result"]["summary"]["psnr_vs_reference_db"] > 40

    import openvino as ov

    ops = {op.get_type_name() for op in ov.Core().read_model(xml).get_ordered_ops()}
    assert "FakeQuantize" in ops or "Convert" in ops  # NNCF's quantizers (int8 weights are decompressed by Convert)
    runner = open_runner(onnx_path, "openvino", "int8")
    assert runner.model_path == xml
    with runner:
        assert runner.metadata.precision == "int8"
        assert runner.metadata.calibration["backend"] == "openvino"


# --- the gate -----------------------------------------------------------------------------------------
def test_gate_fails_too_tight_budget_and_lists_layers(model, photos, tmp_path):
    onnx_path = tmp_path / "unet.onnx"
    onnx_path.write_bytes(model[0].read_bytes())
    before = files_in(tmp_path)
    code, text = run("calibrate", onnx_path, "--data", photos, "--max-drop", 0.0001, "--max-keep", 2,
                     "--no-edits", *FAST)
    assert code == 1
    message = " ".join(text.split())
    assert "over the 0.0001 / 1.0 dB budgets" in message and "layers tried in higher precision: /model/" in message
    assert "no artefact written" in message
    assert not int8_artefact_path(onnx_path, "ort").exists()
    report = json.loads((tmp_path / "unet.ort.int8.report.json").read_text())
    assert not report["passed"] and report["artefact"] is None
    kept = [a["kept_layers"] for a in report["attempts"]]
    assert kept[0] == [] and [len(k) for k in kept[1:]] == [1, 2]  # keep_schedule(2)
    ranked = [s["layer"] for s in report["sensitivity"]]
    assert kept[-1] == ranked[:2] and len(ranked) == 19  # every Conv/ConvTranspose/Gemm of the tiny U-Net
    assert files_in(tmp_path) - before == {"unet.ort.int8.report.json", "unet.ort.int8.report.png"}


def test_gate_measures_what_it_claims(model, photos, tmp_path):
    """The same model passes with no error; a different model (other weights) fails by many dB."""
    from rawedge.runtimes.ort import OrtRunner

    other, _, _ = export_tiny_unet(tmp_path, name="other", seed=7)
    meta = ModelMeta(model_name="unet", config={}, align=8)
    files = list_sources(photos)[:2]
    budget = Budget(0.3, *reference_quality(meta))
    gate = Gate(OrtRunner(model[0]), files, Tiling(tile=64), budget, edits=False)
    same = gate.run(OrtRunner(model[0]))
    assert same.passed and same.drop_db == 0 and same.summary["psnr_vs_reference_db"] == 100.0
    assert same.summary["max_abs"] == 0
    broken = gate.run(OrtRunner(other))
    assert not broken.passed and broken.drop_db > 1 and broken.summary["psnr_vs_reference_db"] < 40
    assert broken.drop_kind == "bound" and len(broken.images) == 2
    # a mean budget loose enough to pass, but the worst single image over its own budget: fail
    per_image = Gate(OrtRunner(model[0]), files, Tiling(tile=64), Budget(100.0, *reference_quality(meta), 0.5),
                     edits=False).run(OrtRunner(other))
    assert per_image.drop_db < 100 and per_image.summary["worst_drop_db"] > 0.5 and not per_image.passed
    assert per_image.max_image_drop == 0.5 and Budget(0.3, 40.0, "x").image_limit == 1.0


# --- bad inputs: clear errors, nothing written --------------------------------------------------------
def test_bad_inputs_give_clear_errors_and_write_nothing(model, photos, tmp_path):
    import onnx

    onnx_path = tmp_path / "unet.onnx"
    onnx_path.write_bytes(model[0].read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    few = tmp_path / "few"
    few.mkdir()
    for name in ("p0.jpg", "p1.jpg"):
        (few / name).write_bytes((photos / name).read_bytes())
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("p0.jpg", "p1.jpg", "p2.jpg"):
        (broken / name).write_bytes((photos / name).read_bytes())
    (broken / "p3.jpg").write_bytes((photos / "p3.jpg").read_bytes()[:300])  # truncated JPEG
    bare = tmp_path / "bare.onnx"
    proto = onnx.load(model[0])
    del proto.metadata_props[:]
    onnx.save(proto, bare)
    (tmp_path / "o").mkdir()
    _, other_ckpt, _ = export_tiny_unet(tmp_path / "o", name="other", seed=3)
    before = files_in(tmp_path)
    cases = [
        (("--data", empty), "no photos"),
        (("--data", tmp_path / "missing"), "no such directory"),
        (("--data", few), "too few to split"),
        (("--data", photos, "--holdout", 0), "--holdout must be between 0 and 1"),
        (("--data", broken), "p3.jpg"),
        (("--data", photos, "--reference", other_ckpt), "is not the checkpoint of this model"),
    ]
    for args, expected in cases:
        code, text = run("calibrate", onnx_path, *args, *FAST)
        assert code == 1 and expected in " ".join(text.split()), (args, text)
    code, text = run("calibrate", bare, "--data", photos, *FAST)
    assert code == 1 and "no rawedge metadata" in text
    assert files_in(tmp_path) == before


def test_int8_model_and_wrong_extension_refused(model, photos, tmp_path):
    import onnx
    from rawedge.calibration.ort_quant import set_onnx_metadata

    from rawedge.metadata.onnx import read_onnx_metadata

    int8 = tmp_path / "already.onnx"
    onnx.save(onnx.load(model[0]), int8)
    meta = read_onnx_metadata(int8)
    meta.precision = "int8"
    set_onnx_metadata(int8, meta)
    code, text = run("calibrate", int8, "--data", photos, *FAST)
    assert code == 1 and "calibrate the FP32 export" in text
    code, text = run("calibrate", model[0], "--runtime", "openvino", "--data", photos, "-o", tmp_path / "x.onnx", *FAST)
    assert code == 1 and "must be a .xml file" in text


@pytest.mark.skipif(not HAVE_TENSORRT, reason="TensorRT is not installed here (it needs an NVIDIA GPU and driver); "
                                              "the TensorRT path is written against its API but cannot run in this "
                                              "environment")
def test_tensorrt_int8(model, photos, tmp_path):
    onnx_path = tmp_path / "unet.onnx"
    onnx_path.write_bytes(model[0].read_bytes())
    code, text = run("calibrate", onnx_path, "--runtime", "trt", "--data", photos, "--max-drop", 3, "--no-edits",
                     *FAST)
    assert code == 0, text
    artefact = int8_artefact_path(onnx_path, "trt")
    assert artefact.is_file()
    with open_runner(onnx_path, "trt", "int8", tile=64) as runner:
        assert runner.precision == "int8"


def test_tensorrt_qdq_artefact_is_explicit_symmetric_int8(model, photos, tmp_path):
    """What TensorRT would build, checked without TensorRT: symmetric INT8 Q/DQ (zero points 0) only
    around weighted layers, float biases; ONNX Runtime runs it close to FP32."""
    import onnx
    from onnx import numpy_helper
    from rawedge.calibration.dataset import build_calibration_set
    from rawedge.calibration.tensorrt_quant import TensorRtQuantizer
    from rawedge.runtimes.ort import OrtRunner

    with OrtRunner(model[0]) as fp32:
        calib = build_calibration_set(fp32, list_sources(photos)[:2], Tiling(tile=32, overlap=0, batch=1), 4)
        quantizer = TensorRtQuantizer(model[0], "minmax", tmp_path, tile=64)
        quantizer.prepare(calib)  # ONNX Runtime's calibrator and QDQ writer: no TensorRT needed
        artefact = quantizer.quantize(tmp_path / "q.onnx")
        ref = fp32.infer(calib.feeds[0])["raw"]
    proto = onnx.load(artefact)
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    consumers = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    qdq = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and all(inits[n.input[2]].dtype == np.int8 and not inits[n.input[2]].any() for n in qdq)
    weighted = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
    for dq in (n for n in qdq if n.op_type == "DequantizeLinear"):  # every quantized tensor feeds a weighted layer
        assert weighted & {c.op_type for c in consumers.get(dq.output[0], [])}, dq.name
    assert all(inits[n.input[0]].dtype != np.int32 for n in qdq if n.input[0] in inits)  # no INT32 bias
    with OrtRunner(artefact) as runner:
        assert 0 < np.abs(runner.infer(calib.feeds[0])["raw"] - ref).max() < 0.05


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed: the real path is tested instead")
def test_tensorrt_missing_is_a_clear_error(model, photos, tmp_path):
    onnx_path = tmp_path / "unet.onnx"
    onnx_path.write_bytes(model[0].read_bytes())
    before = files_in(tmp_path)
    code, text = run("calibrate", onnx_path, "--runtime", "trt", "--data", photos, *FAST)
    from rawedge.errors import install_command

    assert code == 1 and install_command("tensorrt") in text
    assert files_in(tmp_path) == before


# --- the pieces ----------------------------------------------------------------------------------------------
def test_isa_scheme_follows_vnni(tmp_path):
    plain = "processor : 0\nflags : fpu sse2 avx2 fma\n"
    vnni = "processor : 0\nflags : fpu avx2 avx512f avx512_vnni\n"
    assert "avx512_vnni" in cpu_flags(vnni) and "avx512_vnni" not in cpu_flags(plain)
    for text, vnni_expected in ((plain, False), (vnni, True)):
        info = tmp_path / "cpuinfo"
        info.write_text(text)
        isa = detect_isa(str(info), machine="x86_64")
        assert isa.vnni is vnni_expected
        assert ort_scheme(isa)["reduce_range"] is (not vnni_expected)
    arm = detect_isa(str(tmp_path / "none"), machine="aarch64")
    assert not arm.vnni and ort_scheme(arm)["reduce_range"] is False


def test_split_is_by_file_seeded_and_disjoint(tmp_path):
    files = [tmp_path / f"f{i}.jpg" for i in range(10)]
    a, b = split_sources(files, 0.3, seed=1), split_sources(files, 0.3, seed=1)
    assert a == b and len(a.held_out) == 3 and len(a.calibration) == 7
    assert set(a.held_out).isdisjoint(a.calibration) and set(a.held_out) | set(a.calibration) == set(files)
    assert split_sources(files, 0.3, seed=2).held_out != a.held_out
    with pytest.raises(RawedgeError, match="too few"):
        split_sources(files[:2], 0.25)


def test_network_region_excludes_prior_and_output():
    # input -> prior -> concat -> conv1 -> relu -> conv2 -> add(prior) -> clip -> output
    succ = {"prior": ["concat", "add"], "concat": ["conv1"], "conv1": ["relu"], "relu": ["conv2"], "conv2": ["add"],
            "add": ["clip"], "clip": []}
    assert network_region(succ, {"conv1", "conv2"}) == {"conv1", "relu", "conv2"}
    # a global tone on the prior (gemm -> exp -> mul(prior)) that feeds both the network and the output:
    # the toned prior reaches the output without a weighted layer, so it stays in float
    succ = {"thumb_conv": ["gemm"], "gemm": ["exp"], "exp": ["mul"], "prior": ["mul"], "mul": ["concat", "add"],
            "concat": ["conv1"], "conv1": ["relu"], "relu": ["conv2"], "conv2": ["add"], "add": ["clip"], "clip": []}
    weighted = {"thumb_conv", "gemm", "conv1", "conv2"}
    assert network_region(succ, weighted) == {"thumb_conv", "gemm", "concat", "conv1", "relu", "conv2"}
    # with the image input's readers given, the per-image branch (thumbnail conv, tone gemm) stays in float
    succ["srgb_reader"] = ["prior"]
    assert network_region(succ, weighted, {"srgb_reader"}) == {"concat", "conv1", "relu", "conv2"}
    # a per-image bias added inside the network (relu -> add_bias <- gemm): that join stays in float
    succ.update({"relu": ["add_bias"], "gemm": ["exp", "add_bias"], "add_bias": ["conv2"]})
    assert network_region(succ, weighted, {"srgb_reader"}) == {"concat", "conv1", "relu", "conv2"}


def test_keep_schedule_and_drop_bound():
    assert keep_schedule(0) == [] and keep_schedule(1) == [1] and keep_schedule(5) == [1, 2, 4, 5]
    assert math.isclose(drop_bound(40.0, 40.0), 20 * math.log10(2))  # equal errors, fully correlated: 2x
    assert math.isclose(drop_bound(70.0, 30.0), 20 * math.log10(1.01))
    assert drop_bound(70.0, 30.0) < 0.3 < drop_bound(50.0, 30.0)
    # with the errors correlated by at most rho: 10 log10(1 + r^2 + 2 rho r), between independence and rho = 1
    assert math.isclose(drop_bound(40.0, 40.0, 0.5), 10 * math.log10(3))
    assert drop_bound(55.0, 40.0, 0.0) < drop_bound(55.0, 40.0, 0.5) < drop_bound(55.0, 40.0)
    with pytest.raises(ValueError):
        drop_bound(55.0, 40.0, 1.5)
    meta = ModelMeta(model_name="unet", config={}, align=8, metrics={"val_raw_psnr": 31.5})
    assert reference_quality(meta) == (31.5, "model metadata metrics.val_raw_psnr")
    assert reference_quality(meta, 35.0)[0] == 35.0
    held = ModelMeta(model_name="unet", config={}, align=8,
                     metrics={"val_raw_psnr": 31.5, "heldout_raw_psnr_p90": 36.7})  # `rawedge export --accuracy`
    assert reference_quality(held) == (36.7, "model metadata metrics.heldout_raw_psnr_p90")


@pytest.fixture(scope="module")
def dngs(tmp_path_factory):
    """Four 96x128 DNG crops of the shared Canon RAW files: RAW sources bring ground truth."""
    import dataclasses

    from rawedge.io.dng import write_dng
    from rawedge.io.raw import read_raw
    from tests.conftest import RAW_FILES

    canon = [p for p in RAW_FILES if p.name.startswith("Canon")][:4]
    if len(canon) < 4:
        pytest.skip("shared Canon RAW files not found")
    d = tmp_path_factory.mktemp("dngs")
    for i, path in enumerate(canon):
        raw = read_raw(path)
        y, x = (raw.bayer.shape[0] // 4) * 2, (raw.bayer.shape[1] // 4) * 2
        write_dng(d / f"c{i}.dng", dataclasses.replace(raw, bayer=np.ascontiguousarray(raw.bayer[y:y + 96, x:x + 128])))
    return d


@pytest.mark.skipif(not HAVE_OPENVINO, reason="OpenVINO/NNCF not installed (pip install 'rawedge[openvino]')")
def test_raw_files_give_measured_drop_and_nncf_accuracy_control(model, dngs, tmp_path):
    out = tmp_path / "u.openvino.int8.xml"
    code, text = run("calibrate", model[0], "--runtime", "openvino", "--data", dngs, "--max-drop", 3, "-o", out,
                     "--no-edits", *FAST)
    assert code == 0, text
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["scheme"]["tool"] == "nncf.quantize_with_accuracy_control"
    assert report["scheme"]["accuracy_control"]["validation_files"] == 3  # the calibration files, not the held-out one
    result = report["result"]
    assert result["drop_kind"] == "measured" and report["budget"]["reference_psnr_db"] is None
    s = result["summary"]
    assert math.isclose(result["drop_db"], s["psnr_truth_reference_db"] - s["psnr_truth_int8_db"])
    assert 20 < s["psnr_truth_reference_db"] < 80 and abs(result["drop_db"]) < 3


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_ort_calibration_methods(model, photos, tmp_path, method):
    from rawedge.calibration.dataset import build_calibration_set
    from rawedge.calibration.ort_quant import OrtQuantizer
    from rawedge.runtimes.ort import OrtRunner

    with OrtRunner(model[0]) as fp32:
        calib = build_calibration_set(fp32, list_sources(photos)[:2], Tiling(tile=32, overlap=0, batch=1), 4)
        quantizer = OrtQuantizer(model[0], method, tmp_path)
        quantizer.prepare(calib)
        artefact = quantizer.quantize(tmp_path / "q.onnx")
        feed = calib.feeds[0]
        ref = fp32.infer(feed)["raw"]
    with quantizer.open_runner(artefact) as runner:
        got = runner.infer(feed)["raw"]
    assert json.loads((tmp_path / "ranges.json").read_text())  # ranges cached once, reused by every attempt
    assert 0 < np.abs(got - ref).max() < 0.05


def test_float_nodes_read_the_float_tensor_after_qdq(tmp_path):
    """ONNX Runtime shares one Q/DQ pair among all consumers of a tensor: a node kept in float must read
    the float tensor again, a quantized one keeps its dequantized input."""
    import onnx
    from onnx import TensorProto, helper
    from rawedge.calibration.ort_quant import float_inputs_for_float_nodes

    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.01])
    zero = helper.make_tensor("z", TensorProto.UINT8, [], [0])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xdq"], name="dq"),
             helper.make_node("Relu", ["xdq"], ["a"], name="quantized_relu"),
             helper.make_node("Add", ["xdq", "a"], ["y"], name="float_add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [scale, zero])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), path)
    assert float_inputs_for_float_nodes(path, {"float_add"}) == 1
    by_name = {n.name: n for n in onnx.load(path).graph.node}
    assert list(by_name["float_add"].input) == ["x", "a"] and list(by_name["quantized_relu"].input) == ["xdq"]
    assert float_inputs_for_float_nodes(path, {"float_add"}) == 0  # nothing left to restore
