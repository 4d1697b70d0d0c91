"""Runners (ONNX Runtime, OpenVINO, TensorRT where installed): the Polygraphy-shaped contract, metadata,
missing backends, INT8/FP16 artefact naming, and the TensorRT engine cache's key and sidecar checks."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from rawedge.runtimes import BackendMissing, Unavailable, int8_artefact_path, open_runner
from rawedge.runtimes.base import import_backend
from rawedge.runtimes.tensorrt import engine_cache_key, read_valid_engine, shape_profile, write_engine

from rawedge.errors import RawedgeError
from rawedge.metadata.schema import ModelMeta
from rawedge.metadata.sidecar import make_sidecar, validate_sidecar
from tests.conftest import map_in_threads

TINY_UNET = {"width": 4, "depth": 2}


def export_tiny_unet(directory, name: str = "unet", seed: int = 0, **export_kwargs):
    """A depth-2 U-Net with a random (non-zero) residual head, saved and exported with rawedge's own
    exporter: (onnx path, checkpoint path, metadata)."""
    torch = pytest.importorskip("torch")
    from rawedge.export import export_checkpoint

    from rawedge.models.checkpoint import save_checkpoint
    from rawedge.models.registry import create_model

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = create_model("unet", **TINY_UNET)
    torch.nn.init.normal_(model.tail.weight, std=0.2)  # the tail starts at zero: make the net matter
    ckpt = directory / f"{name}.pt"
    save_checkpoint(ckpt, model)
    out = directory / f"{name}.onnx"
    meta = export_checkpoint(ckpt, out, check=False, **export_kwargs)
    return out, ckpt, meta


def contract_feed(n: int = 2, size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    eye = np.repeat(np.eye(3, dtype=np.float32)[None], n, axis=0)
    return {"srgb": rng.random((n, 3, size, size), dtype=np.float32),
            "thumb": rng.random((n, 3, 256, 256), dtype=np.float32),
            "exif": np.tile(np.array([[1 / 60, 100, 4, 7]], np.float32), (n, 1)),
            "wb": np.tile(np.array([[2.0, 1.0, 1.5]], np.float32), (n, 1)), "cam2rgb": eye, "rgb2cam": eye}


@pytest.fixture(scope="module")
def model(tiny_unet):
    return tiny_unet


@pytest.fixture(scope="module")
def reference_raw(model):
    """What PyTorch computes for ``contract_feed()``."""
    import torch

    from rawedge.models.checkpoint import load_checkpoint

    net, _ = load_checkpoint(model[1])
    with torch.no_grad():
        return net(**{k: torch.from_numpy(v) for k, v in contract_feed().items()})["raw"].numpy()


def _runner(model_path, runtime, **opts):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    return open_runner(model_path, runtime=runtime, threads=1, **opts)


@pytest.mark.parametrize("runtime", ["ort", "openvino"])
def test_runner_contract(model, reference_raw, runtime):
    path, _, meta = model
    runner = _runner(path, runtime)
    assert runner.name.startswith(runtime) and path.name in runner.name
    assert runner.metadata.align == meta.align == 8  # readable before activation
    with pytest.raises(RawedgeError, match="activated"):
        runner.infer(contract_feed())
    with runner as active:
        assert active is runner and runner.is_active
        assert runner.input_names == ["srgb", "thumb", "exif", "wb", "cam2rgb", "rgb2cam"]
        assert runner.output_names == ["raw"]
        specs = runner.input_specs()
        assert specs["srgb"][1] == 3 and specs["srgb"][2] is None and specs["thumb"][2:] == (256, 256)
        out = runner.infer(contract_feed())
        assert isinstance(runner.inference_time, float) and runner.inference_time > 0
        assert runner.last_inference_time() == runner.inference_time
        assert out["raw"].shape == (2, 4, 16, 16) and out["raw"].dtype == np.float32
        np.testing.assert_allclose(out["raw"], reference_raw, atol=2e-5)
        with pytest.raises(RawedgeError, match="feed does not match"):
            runner.infer({k: v for k, v in contract_feed().items() if k != "wb"})
        with pytest.raises(RawedgeError, match="shape"):
            runner.infer({**contract_feed(), "thumb": np.zeros((2, 3, 128, 128), np.float32)})
    assert not runner.is_active and runner.inference_time is None


def test_runners_work_in_a_polygraphy_comparator(model):
    """The runners are Polygraphy-shaped: Comparator.run drives them and compares their outputs."""
    pytest.importorskip("openvino")
    pytest.importorskip("polygraphy")
    from polygraphy.comparator import Comparator, SimpleCompareFunc

    path = model[0]
    runners = [open_runner(path, "ort", threads=1), open_runner(path, "openvino", threads=1)]
    results = Comparator.run(runners, data_loader=[contract_feed()])
    assert set(results.keys()) == {r.name for r in runners}
    assert all(it.runtime is not None and it.runtime > 0 for _, iters in results.items() for it in iters)
    assert bool(Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=1e-4)))


def test_ort_thread_options_and_providers(model):
    runner = open_runner(model[0], "ort", threads=1, inter_op_threads=1)
    with runner:
        assert runner.session.get_session_options().intra_op_num_threads == 1
        assert runner.active_providers == ["CPUExecutionProvider"]
    with pytest.raises(Unavailable, match="not in this build"):
        open_runner(model[0], "ort", providers=["made-up-ep"])


def test_model_without_metadata_is_refused(model, tmp_path):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(model[0]))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(RawedgeError, match="no rawedge metadata"):
        open_runner(bare, "ort").activate()
    pytest.importorskip("openvino")
    with pytest.raises(RawedgeError, match="no rawedge metadata"):
        open_runner(bare, "openvino").activate()


def test_missing_backend_names_the_extra(model, monkeypatch):
    with pytest.raises(BackendMissing, match=r"pip install (-e )?'[^']*\[openvino\]'"):
        import_backend("rawedge_no_such_backend", "rawedge[openvino]", "OpenVINO")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    runner = open_runner(model[0], "openvino")
    with pytest.raises(BackendMissing, match=r"OpenVINO is not installed.*pip install (-e )?'[^']*\[openvino\]'"):
        runner.activate()
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    trt = open_runner(model[0], "trt", gpu_name="test GPU")
    with pytest.raises(BackendMissing, match=r"pip install (-e )?'[^']*\[tensorrt\]'"):
        trt.activate()


def test_factory_validates_runtime_precision_and_files(model, tmp_path):
    with pytest.raises(RawedgeError, match="unknown runtime"):
        open_runner(model[0], "tflite")
    with pytest.raises(RawedgeError, match="unknown precision"):
        open_runner(model[0], "ort", precision="fp8")
    with pytest.raises(RawedgeError, match="no such model file"):
        open_runner(tmp_path / "missing.onnx", "ort")
    with pytest.raises(Unavailable, match="rawedge calibrate"):
        open_runner(model[0], "ort", precision="int8")
    with pytest.raises(Unavailable, match=r"model\.fp16\.onnx|fp16"):
        open_runner(model[0], "ort", precision="fp16")


def test_int8_and_fp16_artefacts_are_found_by_name(model, tmp_path):
    path = tmp_path / "net.onnx"
    shutil.copy(model[0], path)
    assert int8_artefact_path(path, "ort").name == "net.ort.int8.onnx"
    assert int8_artefact_path(path, "openvino").name == "net.openvino.int8.xml"
    assert int8_artefact_path(path, "trt", ".cache").name == "net.trt.int8.cache"
    shutil.copy(model[0], tmp_path / "net.ort.int8.onnx")  # stands in for the calibrated file
    assert open_runner(path, "ort", precision="int8").model_path.name == "net.ort.int8.onnx"
    shutil.copy(model[0], tmp_path / "net.fp16.onnx")
    assert open_runner(path, "ort", precision="fp16").model_path.name == "net.fp16.onnx"


def test_openvino_reads_ir_with_metadata_and_caches(model, tmp_path, reference_raw):
    ov = pytest.importorskip("openvino")
    path = tmp_path / "net.onnx"
    shutil.copy(model[0], path)
    xml = tmp_path / "net.openvino.int8.xml"  # an IR, as the calibration stage writes it
    ov.save_model(ov.Core().read_model(str(path)), str(xml))
    cache = tmp_path / "cache"
    runner = open_runner(path, "openvino", precision="int8", cache_dir=cache, threads=1)
    assert runner.model_path == xml
    with runner:
        assert runner.metadata.align == 8 and runner.metadata.model_name == "unet"
        np.testing.assert_allclose(runner.infer(contract_feed())["raw"], reference_raw, atol=2e-5)
    assert any(cache.iterdir()), "compiled model was not cached"
    xml.with_suffix(".bin").unlink()
    with pytest.raises(RawedgeError, match="weights"):
        open_runner(xml, "openvino")


def test_openvino_runner_serves_threads(model):
    pytest.importorskip("openvino")
    feeds = [contract_feed(n=1, seed=i) for i in range(6)]
    with open_runner(model[0], "openvino", threads=1) as runner:
        serial = [runner.infer(f)["raw"] for f in feeds]
        results = map_in_threads(lambda f: runner.infer(f)["raw"], feeds)
    for a, b in zip(serial, results):
        np.testing.assert_array_equal(a, b)


# --- TensorRT: cache key and sidecar (plain Python), runner only where TensorRT exists -----------------
BUILD = {"precision": "fp16", "profile": {"srgb": [[1, 3, 8, 8], [4, 3, 512, 512], [4, 3, 512, 512]]}}


def test_engine_cache_key_changes_with_each_ingredient():
    key = engine_cache_key("a" * 64, "10.3.0", "Orin sm87", BUILD)
    assert key == engine_cache_key("a" * 64, "10.3.0", "Orin sm87", dict(BUILD))
    others = [engine_cache_key("b" * 64, "10.3.0", "Orin sm87", BUILD),
              engine_cache_key("a" * 64, "10.4.0", "Orin sm87", BUILD),
              engine_cache_key("a" * 64, "10.3.0", "RTX 4090 sm89", BUILD),
              engine_cache_key("a" * 64, "10.3.0", "Orin sm87", {**BUILD, "precision": "int8"})]
    assert len({key, *others}) == 5


def test_sidecar_validation_and_engine_cache(tmp_path):
    meta = ModelMeta(model_name="unet", config={}, align=8)
    expected = {"model_sha256": "a" * 64, "trt_version": "10.3.0", "gpu_name": "Orin sm87", "build_options": BUILD}
    key = engine_cache_key("a" * 64, "10.3.0", "Orin sm87", BUILD)
    assert read_valid_engine(tmp_path, key, **expected) == (None, ["not cached"])
    engine_path, sidecar_path = write_engine(tmp_path, key, b"serialized-engine", {**expected, "metadata": meta})
    data, problems = read_valid_engine(tmp_path, key, **expected)
    assert data == b"serialized-engine" and problems == []
    sidecar = json.loads(sidecar_path.read_text())
    assert ModelMeta.from_json(sidecar["rawedge"]).model_name == "unet"
    # each mismatch is named, so a stale engine is rebuilt and the user can see why
    assert validate_sidecar(sidecar, **{**expected, "trt_version": "10.4.0"}) == \
        ["built with TensorRT '10.3.0' (now '10.4.0')"]
    assert "built for GPU" in validate_sidecar(sidecar, **{**expected, "gpu_name": "RTX 4090 sm89"})[0]
    assert validate_sidecar(sidecar, **{**expected, "model_sha256": "c" * 64}) == ["built from a different model"]
    assert validate_sidecar({"format": "other"}, **expected) == ["not a rawedge engine sidecar"]
    engine_path.write_bytes(b"serialized-engin")  # truncated
    data, problems = read_valid_engine(tmp_path, key, **expected)
    assert data is None and "truncated" in problems[0]
    made = make_sidecar(engine_sha256="e", metadata=meta, **expected)
    assert validate_sidecar(made, engine_sha256="e", **expected) == []


def test_shape_profile_spans_tiles_and_batches():
    shapes = {"srgb": (None, 3, None, None), "thumb": (None, 3, 256, 256), "wb": (None, 3)}
    prof = shape_profile(shapes, align=8, tile=256, batch=4)
    assert prof["srgb"] == ((1, 3, 8, 8), (4, 3, 256, 256), (4, 3, 256, 256))
    assert prof["thumb"] == ((1, 3, 256, 256), (4, 3, 256, 256), (4, 3, 256, 256))
    assert prof["wb"] == ((1, 3), (4, 3), (4, 3))


def test_tensorrt_runner_matches_ort(model, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU and its wheels)")
    try:
        from rawedge.runtimes.tensorrt import cuda_gpu_name

        cuda_gpu_name()
    except Unavailable as exc:
        pytest.skip(str(exc))
    feed = contract_feed()
    with open_runner(model[0], "ort") as ort_runner:
        expected = ort_runner.infer(feed)["raw"]
    runner = open_runner(model[0], "trt", precision="fp32", tile=64, batch=2, cache_dir=tmp_path)
    with runner:
        np.testing.assert_allclose(runner.infer(feed)["raw"], expected, atol=1e-3)
    assert runner.rebuilt_because == ["not cached"]
    with open_runner(model[0], "trt", precision="fp32", tile=64, batch=2, cache_dir=tmp_path) as again:
        assert again.rebuilt_because == []  # the cached engine was used


def test_tensorrt_runner_falls_back_to_tensorrt_for_rtx(monkeypatch):
    """No `tensorrt` but `tensorrt_rtx` installed: the runner imports it and switches Polygraphy to it;
    neither: one error naming both installs."""
    import types

    from polygraphy import config
    from rawedge.runtimes.base import BackendMissing
    from rawedge.runtimes.tensorrt import import_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    monkeypatch.setattr(config, "USE_TENSORRT_RTX", False)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", types.SimpleNamespace(__name__="tensorrt_rtx", __version__="1.7"))
    assert import_tensorrt().__name__ == "tensorrt_rtx" and config.USE_TENSORRT_RTX
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(BackendMissing, match="tensorrt-rtx-cu12-bindings"):
        import_tensorrt()
