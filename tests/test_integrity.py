"""Integrity: an ONNX file whose graph or weights no longer match the sha256 recorded at export, an INT8
artefact or FP16 export made from another model, and a TensorRT engine built for another model, GPU or
TensorRT version are refused (or, for engines, rebuilt) with the reason."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from rawedge.cli import main
from rawedge.errors import RawedgeError
from rawedge.metadata.schema import METADATA_KEY, ModelMeta
from tests.conftest import SAMPLE_JPEG

onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny U-Nets with different weights: (onnx path, metadata) each."""
    from tests.test_runtimes import export_tiny_unet

    d = tmp_path_factory.mktemp("integrity")
    a = export_tiny_unet(d, name="a", seed=0)
    b = export_tiny_unet(d, name="b", seed=1)
    return (a[0], a[2]), (b[0], b[2])


def edit(src, dst, weights=None, meta_changes=None):
    """Copy the model at ``src`` to ``dst`` with its first initializer's bytes replaced and/or metadata
    fields changed."""
    proto = onnx.load(str(src))
    if weights is not None:
        proto.graph.initializer[0].raw_data = weights(proto.graph.initializer[0].raw_data)
    if meta_changes:
        prop = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
        d = json.loads(prop.value)
        d.update(meta_changes)
        prop.value = json.dumps(d)
    onnx.save(proto, str(dst))
    return dst


def flip_first_byte(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x40]) + data[1:]


def test_export_records_a_hash_that_survives_external_data(models, tmp_path):
    from rawedge.metadata.integrity import onnx_sha256, proto_sha256

    (path, meta), _ = models
    assert len(meta.onnx_weights_sha256) == 64 and onnx_sha256(path) == meta.onnx_weights_sha256
    proto = onnx.load(str(path))
    assert proto_sha256(proto) == meta.onnx_weights_sha256
    onnx.save_model(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=64)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 1000
    assert onnx_sha256(tmp_path / "ext.onnx") == meta.onnx_weights_sha256  # same model, weights moved out
    data = bytearray((tmp_path / "ext.onnx.data").read_bytes())
    data[100] ^= 1
    (tmp_path / "ext.onnx.data").write_bytes(bytes(data))
    assert onnx_sha256(tmp_path / "ext.onnx") != meta.onnx_weights_sha256
    (tmp_path / "ext.onnx.data").write_bytes(bytes(data[:500]))
    with pytest.raises(RawedgeError, match="truncated"):
        onnx_sha256(tmp_path / "ext.onnx")


def test_changed_weights_are_refused_with_the_reason(models, tmp_path):
    from rawedge.runtimes import Reconstructor

    (path, _), _ = models
    tampered = edit(path, tmp_path / "tampered.onnx", weights=flip_first_byte)
    with pytest.raises(RawedgeError, match="do not match the sha256 recorded at export .* export it again"):
        Reconstructor.open(tampered)
    result = CliRunner().invoke(main, ["infer", str(SAMPLE_JPEG), "--model", str(tampered), "-o",
                                       str(tmp_path / "x.dng")])
    assert result.exit_code == 1 and "modified or damaged after `rawedge export`" in result.output
    assert not (tmp_path / "x.dng").exists()
    result = CliRunner().invoke(main, ["info", str(tampered)])
    assert result.exit_code == 0 and "integrity    graph and weights DO NOT MATCH" in result.output
    result = CliRunner().invoke(main, ["info", str(path)])
    assert "integrity    graph and weights match the sha256 recorded at export" in result.output


def test_changed_graph_is_refused_and_metadata_edits_are_not(models, tmp_path):
    from rawedge.runtimes import open_runner

    (path, _), _ = models
    proto = onnx.load(str(path))
    proto.graph.node[-1].name = proto.graph.node[-1].name + "_renamed"
    onnx.save(proto, str(tmp_path / "renamed.onnx"))
    with pytest.raises(RawedgeError, match="do not match"):
        open_runner(tmp_path / "renamed.onnx")
    # the hash covers everything but the metadata: a new recipe note does not invalidate the file
    edit(path, tmp_path / "noted.onnx", meta_changes={"recipe": {"note": "re-labelled"}})
    with open_runner(tmp_path / "noted.onnx") as runner:
        assert runner.metadata.recipe == {"note": "re-labelled"}


def test_models_without_a_recorded_hash_still_open(models, tmp_path):
    """Files exported before the hash existed carry none: they are opened as before."""
    from rawedge.runtimes import open_runner

    (path, _), _ = models
    old = edit(path, tmp_path / "old.onnx", weights=flip_first_byte, meta_changes={"onnx_weights_sha256": ""})
    with open_runner(old) as runner:
        assert "raw" in runner.output_names


def test_int8_artefact_of_another_model_is_refused(models, tmp_path):
    from rawedge.runtimes import open_runner

    (a, _), (b, _) = models
    model = tmp_path / "net.onnx"
    shutil.copy(a, model)
    calibrated = {"precision": "int8", "calibration": {"runtime": "ort", "method": "minmax"}}
    edit(b, tmp_path / "net.ort.int8.onnx", meta_changes={**calibrated, "model_name": "unet"})
    with pytest.raises(RawedgeError, match=r"net\.ort\.int8\.onnx: this INT8 artefact belongs to another model "
                                           r"\(it was made from weights .*remove it or make it again from net.onnx"):
        open_runner(model, "ort", precision="int8")
    # made from this model's weights: accepted (calibration rewrote the graph, so no graph hash applies)
    edit(a, tmp_path / "net.ort.int8.onnx", weights=flip_first_byte, meta_changes=calibrated)
    with open_runner(model, "ort", precision="int8") as runner:
        assert runner.model_path.name == "net.ort.int8.onnx" and runner.metadata.precision == "int8"


def test_int8_artefact_of_another_architecture_is_refused(models, tmp_path):
    from rawedge.runtimes import open_runner

    (a, _), _ = models
    model = tmp_path / "net.onnx"
    shutil.copy(a, model)
    edit(a, tmp_path / "net.ort.int8.onnx", meta_changes={"model_name": "paramisp", "precision": "int8",
                                                          "calibration": {"runtime": "ort"}})
    with pytest.raises(RawedgeError, match="it is a 'paramisp' model, net.onnx is 'unet'"):
        open_runner(model, "ort", precision="int8")


def test_fp16_export_of_another_model_is_refused(models, tmp_path):
    from rawedge.runtimes import open_runner

    (a, _), (b, _) = models
    model = tmp_path / "net.onnx"
    shutil.copy(a, model)
    shutil.copy(b, tmp_path / "net.fp16.onnx")  # stale: exported from other weights
    with pytest.raises(RawedgeError, match="this FP16 export belongs to another model"):
        open_runner(model, "ort", precision="fp16")


def test_openvino_int8_ir_of_another_model_is_refused(models, tmp_path):
    ov = pytest.importorskip("openvino")
    from rawedge.runtimes import open_runner

    (a, _), (b, _) = models
    model = tmp_path / "net.onnx"
    shutil.copy(a, model)
    ir = ov.Core().read_model(str(b))
    d = json.loads(ModelMeta.from_json(ir.get_rt_info(["framework", METADATA_KEY]).astype(str)).to_json())
    d.update(precision="int8", calibration={"runtime": "openvino"})
    ir.set_rt_info(json.dumps(d), METADATA_KEY)
    ov.save_model(ir, str(tmp_path / "net.openvino.int8.xml"))
    with pytest.raises(RawedgeError, match="INT8 artefact belongs to another model"):
        open_runner(model, "openvino", precision="int8")


def test_tensorrt_engine_for_another_model_gpu_or_version_is_rebuilt_with_the_reasons(tmp_path):
    """No GPU needed: the engine cache's sidecar check is plain Python."""
    from rawedge.runtimes.tensorrt import engine_cache_key, read_valid_engine, write_engine

    meta = ModelMeta(model_name="unet", config={}, align=8)
    build = {"precision": "fp16", "profile": {}, "calibration_cache_sha256": None}
    built = {"model_sha256": "a" * 64, "trt_version": "10.3.0", "gpu_name": "Orin sm87", "build_options": build}
    key = engine_cache_key(**{k: built[k] for k in ("model_sha256", "trt_version", "gpu_name")}, build_options=build)
    write_engine(tmp_path, key, b"engine-bytes", {**built, "metadata": meta})
    assert read_valid_engine(tmp_path, key, **built) == (b"engine-bytes", [])
    cases = {"model_sha256": ("b" * 64, "built from a different model"),
             "gpu_name": ("RTX 4090 sm89", "built for GPU 'Orin sm87' (now 'RTX 4090 sm89')"),
             "trt_version": ("10.5.0", "built with TensorRT '10.3.0' (now '10.5.0')")}
    for field, (now, reason) in cases.items():
        data, reasons = read_valid_engine(tmp_path, key, **{**built, field: now})
        assert data is None and reasons == [reason], (field, reasons)
    # a key lookup can only find the right engine, but a copied or swapped file is caught by its sha256
    engine = tmp_path / f"{key}.engine"
    engine.write_bytes(b"other-engine")
    assert read_valid_engine(tmp_path, key, **built)[1] == ["engine file does not match its sidecar (truncated or replaced)"]


def test_checkpoint_with_changed_weights_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    from rawedge.models.checkpoint import load_checkpoint, save_checkpoint
    from rawedge.models.registry import create_model

    model = create_model("unet", width=4, depth=2)
    save_checkpoint(tmp_path / "m.pt", model)
    ckpt = torch.load(tmp_path / "m.pt", weights_only=False)
    first = next(iter(ckpt["state_dict"]))
    ckpt["state_dict"][first] = ckpt["state_dict"][first] + 1
    torch.save(ckpt, tmp_path / "m.pt")
    with pytest.raises(RawedgeError, match="do not match the sha256"):
        load_checkpoint(tmp_path / "m.pt")


def test_the_hash_reader_refuses_garbage_with_one_line(tmp_path):
    from rawedge.metadata.integrity import onnx_sha256

    for name, data in {"empty.onnx": b"", "junk.onnx": b"\xff" * 64, "cut.onnx": b"\x3a\xff\xff\x7f"}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(RawedgeError, match="not a well-formed ONNX file"):
            onnx_sha256(tmp_path / name)
    rng = np.random.default_rng(0)
    for i in range(200):  # random bytes: a RawedgeError or a hash, nothing else
        (tmp_path / "r.onnx").write_bytes(rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes())
        try:
            assert len(onnx_sha256(tmp_path / "r.onnx")) == 64
        except RawedgeError:
            pass
