"""rawedge.metadata: every model file's metadata read without a backend, the same as the backends read
it, and once per model open."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from rawedge.errors import RawedgeError
from rawedge.metadata import read
from rawedge.metadata.schema import METADATA_KEY, ModelMeta

onnx = pytest.importorskip("onnx")
ROOT = Path(__file__).resolve().parents[1]


def identity_model(path: Path, meta: ModelMeta) -> ModelMeta:
    """A one-node ONNX model (srgb -> raw) carrying ``meta``; what was stored."""
    from onnx import TensorProto, helper

    from rawedge.metadata.onnx import embed_onnx_metadata

    graph = helper.make_graph([helper.make_node("Identity", ["srgb"], ["raw"])], "g",
                              [helper.make_tensor_value_info("srgb", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["N", 3, "H", "W"])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(proto, {"other": "kept"})
    stored = embed_onnx_metadata(proto, meta)
    onnx.save(proto, str(path))
    return stored


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "net.onnx"
    return path, identity_model(path, ModelMeta(model_name="unet", config={"width": 4}, align=8))


def test_embedding_keeps_other_properties_and_records_the_hash(model):
    from rawedge.metadata.integrity import onnx_sha256

    path, meta = model
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["other"] == "kept" and ModelMeta.from_json(props[METADATA_KEY]) == meta
    assert meta.onnx_weights_sha256 == onnx_sha256(path)


def test_reading_imports_no_backend(model, tmp_path):
    """ONNX, OpenVINO IR and engine sidecar: read in a process where onnx, ONNX Runtime, OpenVINO and
    torch cannot be imported."""
    path, meta = model
    files = [path]
    engine = tmp_path / "net.engine"
    engine.write_bytes(b"\0" * 16)
    (tmp_path / "net.json").write_text(json.dumps({"format": "rawedge-trt-engine", METADATA_KEY: meta.to_json()}))
    files.append(engine)
    try:
        import openvino as ov
    except ImportError:
        ov = None
    if ov is not None:
        ov.save_model(ov.Core().read_model(str(path)), str(tmp_path / "net.xml"))
        files.append(tmp_path / "net.xml")
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('onnx', 'onnxruntime', 'openvino', 'torch'):
            raise ImportError('blocked')
sys.meta_path.insert(0, Block())
from rawedge.metadata.read import read_model_metadata
for p in {[str(f) for f in files]!r}:
    print(read_model_metadata(p).to_json())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [meta.to_json()] * len(files)


def test_ort_format_reader_agrees_with_onnx_runtime(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from rawedge.export.ort_format import convert_to_ort

    path, meta = model
    work = tmp_path / "work"
    work.mkdir()
    ort_file = convert_to_ort(path, work)
    session = ort.InferenceSession(str(ort_file), providers=["CPUExecutionProvider"])
    expected = session.get_modelmeta().custom_metadata_map[METADATA_KEY]
    assert read.model_metadata_text(ort_file) == expected
    assert read.read_model_metadata(ort_file) == meta
    broken = tmp_path / "broken.ort"
    data = ort_file.read_bytes()
    broken.write_bytes(data[:8] + b"\xff" * (len(data) - 8))
    with pytest.raises(RawedgeError, match="not a readable ORT-format model"):
        read.read_model_metadata(broken)


def test_ir_reader_agrees_with_openvino(model, tmp_path):
    """The top-level entry (what `rawedge calibrate` writes) wins over the ONNX's "framework" one."""
    ov = pytest.importorskip("openvino")
    from rawedge.metadata.openvino import set_ir_metadata

    path, meta = model
    ir = ov.Core().read_model(str(path))
    int8 = ModelMeta(**{**json.loads(meta.to_json()), "precision": "int8", "calibration": {"runtime": "openvino"}})
    set_ir_metadata(ir, int8)
    xml = tmp_path / "net.openvino.int8.xml"
    ov.save_model(ir, str(xml), compress_to_fp16=False)
    again = ov.Core().read_model(str(xml))
    assert read.model_metadata_text(xml) == again.get_rt_info([METADATA_KEY]).astype(str)
    stored = read.read_model_metadata(xml)
    assert stored.precision == "int8" and stored.onnx_weights_sha256 == "" and stored.model_name == "unet"


def _count_reads(monkeypatch) -> Counter:
    reads: Counter = Counter()
    for suffix, reader in list(read.READERS.items()):
        def counting(p, reader=reader):
            reads[Path(p).name] += 1
            return reader(p)
        monkeypatch.setitem(read.READERS, suffix, counting)
    return reads


@pytest.mark.parametrize("runtime", ["ort", "openvino"])
def test_one_open_reads_each_file_once(model, monkeypatch, runtime):
    pytest.importorskip("onnxruntime" if runtime == "ort" else "openvino")
    from rawedge.runtimes import open_runner

    path, meta = model
    reads = _count_reads(monkeypatch)
    runner = open_runner(path, runtime, threads=1, **({"cache_dir": False} if runtime == "openvino" else {}))
    with runner:
        assert runner.metadata == meta
    assert reads == {"net.onnx": 1}


def test_a_variant_open_reads_the_model_and_the_variant_once(model, monkeypatch):
    pytest.importorskip("onnxruntime")
    from rawedge.runtimes import open_runner

    path, meta = model
    shutil.copy(path, path.with_name("net.ort.int8.onnx"))
    reads = _count_reads(monkeypatch)
    with open_runner(path, "ort", precision="int8", threads=1) as runner:
        assert runner.metadata == meta
    assert reads == {"net.onnx": 1, "net.ort.int8.onnx": 1}
