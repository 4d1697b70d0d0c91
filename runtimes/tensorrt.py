"""TensorRT runner: an engine built from the rawedge ONNX (through Polygraphy's loaders) with an explicit
optimisation profile for the tile shapes the Reconstructor uses, FP16 by default, INT8 from a
calibration artefact, cached on disk.

Engine cache: ``<cache>/<key>.engine`` plus ``<key>.json`` (the sidecar, rawedge.metadata.sidecar: what
the engine was built from and for, and the model's rawedge metadata). The key hashes the model file's
sha256, the TensorRT version, the GPU and the build options; on load the sidecar is checked again against
all of them and against the engine file's own sha256, so an engine that does not match its model, its
TensorRT version or its GPU is rebuilt, never used. The key and sidecar logic is plain Python (testable
without a GPU)."""
from __future__ import annotations

import ctypes
import hashlib
import importlib
import json
import os
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.io.atomic import atomic_output
from rawedge.metadata.integrity import file_sha256
from rawedge.metadata.schema import ModelMeta
from rawedge.metadata.sidecar import load_sidecar, make_sidecar, validate_sidecar, write_sidecar

from .base import BackendMissing, Runner, Unavailable, import_backend
from .cache import user_cache_dir

INSTALL = "rawedge[tensorrt]"
RTX_INSTALL = "tensorrt-rtx-cu12-libs tensorrt-rtx-cu12-bindings"  # TensorRT for RTX: import tensorrt_rtx


def import_tensorrt():
    """TensorRT, else TensorRT for RTX (``tensorrt_rtx``, the same builder and runtime API). Polygraphy,
    which builds and runs the engine, is told which one through its USE_TENSORRT_RTX switch, set before its
    TensorRT backend is first imported."""
    try:
        return import_backend("tensorrt", INSTALL, "TensorRT")
    except BackendMissing as missing:
        try:
            trt = importlib.import_module("tensorrt_rtx")
        except ImportError:
            raise BackendMissing(None, f"{missing} (or TensorRT for RTX: pip install {RTX_INSTALL})") from None
    from polygraphy import config

    config.USE_TENSORRT_RTX = True
    return trt
PRECISIONS = ("fp32", "fp16", "int8")


# --- cache key and sidecar (plain Python) ------------------------------------------------------------
def engine_cache_key(model_sha256: str, trt_version: str, gpu_name: str, build_options: dict | None = None) -> str:
    """Hex key naming a cached engine: any change of model, TensorRT, GPU or build options changes it."""
    blob = json.dumps({"model": model_sha256, "trt": trt_version, "gpu": gpu_name, "build": build_options or {}},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def engine_paths(cache_dir: str | os.PathLike, key: str) -> tuple[Path, Path]:
    d = Path(cache_dir)
    return d / f"{key}.engine", d / f"{key}.json"


def read_valid_engine(cache_dir, key: str, **expected) -> tuple[bytes | None, list[str]]:
    """(engine bytes, []) when a cached engine exists and its sidecar matches ``expected``
    (model_sha256, trt_version, gpu_name, build_options), else (None, reasons)."""
    engine_path, sidecar_path = engine_paths(cache_dir, key)
    if not engine_path.is_file() or not sidecar_path.is_file():
        return None, ["not cached"]
    sidecar = load_sidecar(sidecar_path)
    if sidecar is None:
        return None, ["unreadable sidecar"]
    data = engine_path.read_bytes()
    problems = validate_sidecar(sidecar, engine_sha256=hashlib.sha256(data).hexdigest(), **expected)
    return (None, problems) if problems else (data, [])


def write_engine(cache_dir, key: str, engine: bytes, sidecar_fields: dict) -> tuple[Path, Path]:
    """Engine first, sidecar last (each atomically): a crash in between leaves an engine without a
    matching sidecar, which the next start rebuilds."""
    engine_path, sidecar_path = engine_paths(cache_dir, key)
    with atomic_output(engine_path) as tmp:
        Path(tmp).write_bytes(engine)
    write_sidecar(sidecar_path, make_sidecar(engine_sha256=hashlib.sha256(engine).hexdigest(), **sidecar_fields))
    return engine_path, sidecar_path


def shape_profile(input_shapes: dict[str, tuple], align: int, tile: int, batch: int) -> dict[str, tuple]:
    """{input: (min, opt, max)} for the network's inputs: a dynamic batch axis spans 1..batch, dynamic
    spatial axes span align..tile (the Reconstructor's tiles and smaller whole images)."""
    def axis_range(axis: int, d) -> tuple[int, int, int]:
        if d is not None and d >= 0:
            return d, d, d
        return (1, batch, batch) if axis == 0 else (align, tile, tile)

    out = {}
    for name, shape in input_shapes.items():
        ranges = [axis_range(axis, d) for axis, d in enumerate(shape)]
        out[name] = tuple(tuple(r[i] for r in ranges) for i in range(3))
    return out


def cuda_gpu_name(device: int = 0) -> str:
    """'<name> sm<major><minor>' of a CUDA device through the driver API (libcuda; works on Jetson too)."""
    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
            break
        except OSError:
            continue
    else:
        raise Unavailable(None, "no NVIDIA driver found (libcuda); TensorRT needs a CUDA GPU")
    dev = ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(), ctypes.c_int()
    if (cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(dev), device)
            or cuda.cuDeviceGetName(name, 256, dev)
            or cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
            or cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)):
        raise Unavailable(None, f"CUDA device {device} is not usable")
    return f"{name.value.decode(errors='replace')} sm{major.value}{minor.value}"


# --- the runner ----------------------------------------------------------------------------------------
class TensorRtRunner(Runner):
    """``precision``: fp16 (default), fp32, or int8 with ``int8_artefact``: a Q/DQ ONNX (explicit
    quantisation, preferred) or a TensorRT calibration cache (``.cache``). ``tile``/``batch``: the
    largest tile and batch the engine accepts (the optimisation profile); ``cache_dir``: engine cache
    (default: the user cache dir)."""

    backend = "trt"
    thread_safe = False  # one execution context: calls are serialised

    def __init__(self, model_path, precision: str = "fp16", int8_artefact=None, tile: int | None = None,
                 batch: int = 4, cache_dir=None, gpu_name: str | None = None, name: str | None = None,
                 metadata: ModelMeta | None = None):
        super().__init__(model_path, name, metadata)
        if precision not in PRECISIONS:
            raise RawedgeError(self.model_path, f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
        if precision == "int8" and int8_artefact is None:
            raise RawedgeError(self.model_path, "TensorRT INT8 needs a calibration artefact (run `rawedge calibrate`)")
        self.precision = precision
        self.int8_artefact = Path(int8_artefact) if int8_artefact else None
        self.tile = tile
        self.batch = int(batch)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.gpu_name = gpu_name
        self.engine_path: Path | None = None
        self.rebuilt_because: list[str] = []
        self._runner = None

    def _network_source(self) -> tuple[Path, Path | None]:
        """(ONNX to parse, calibration cache or None)."""
        if self.precision == "int8" and self.int8_artefact.suffix.lower() == ".onnx":
            return self.int8_artefact, None
        return self.model_path, (self.int8_artefact if self.precision == "int8" else None)

    def _activate(self) -> None:
        trt = import_tensorrt()
        ptrt = import_backend("polygraphy.backend.trt", "rawedge[calibrate]", "Polygraphy")
        meta = self.metadata
        tile = int(self.tile or meta.static_tile or meta.tile)
        onnx_path, calib_cache = self._network_source()
        gpu = self.gpu_name or cuda_gpu_name()
        builder, network, parser = ptrt.NetworkFromOnnxPath(os.fspath(onnx_path))()
        inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
        profile_shapes = shape_profile({k: tuple(None if d < 0 else d for d in s) for k, s in inputs.items()},
                                       meta.align, tile, self.batch)
        build = {"precision": self.precision, "profile": {k: [list(s) for s in v] for k, v in profile_shapes.items()},
                 "calibration_cache_sha256": file_sha256(calib_cache) if calib_cache else None}
        model_sha = file_sha256(onnx_path)
        cache_dir = self.cache_dir or user_cache_dir("tensorrt")
        version = f"{trt.__name__} {trt.__version__}"  # an engine of one never loads in the other
        expected = {"model_sha256": model_sha, "trt_version": version, "gpu_name": gpu, "build_options": build}
        key = engine_cache_key(model_sha, version, gpu, build)
        engine_bytes, self.rebuilt_because = read_valid_engine(cache_dir, key, **expected)
        if engine_bytes is None:
            profile = ptrt.Profile()
            for name, (lo, opt, hi) in profile_shapes.items():
                profile.add(name, min=lo, opt=opt, max=hi)
            calibrator = ptrt.Calibrator(data_loader=[], cache=os.fspath(calib_cache)) if calib_cache else None
            config = ptrt.CreateConfig(fp16=self.precision in ("fp16", "int8"), int8=self.precision == "int8",
                                       calibrator=calibrator, profiles=[profile])
            built = ptrt.EngineBytesFromNetwork((builder, network, parser), config=config)()
            engine_bytes = bytes(built)
            write_engine(cache_dir, key, engine_bytes, {"model_sha256": model_sha, "trt_version": version,
                                                        "gpu_name": gpu, "build_options": build, "metadata": meta})
        self.engine_path = engine_paths(cache_dir, key)[0]
        engine = ptrt.EngineFromBytes(engine_bytes)()
        self._runner = ptrt.TrtRunner(engine, name=self.name)
        self._runner.activate()

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._runner.infer({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feed.items()})
        # Polygraphy reuses its output buffers between calls: copy.
        return {k: np.array(v, dtype=np.float32, copy=True) for k, v in outputs.items()}

    def _deactivate(self) -> None:
        if self._runner is not None:
            self._runner.deactivate()
        self._runner = None

    def _input_specs(self) -> dict[str, tuple]:
        meta = self._runner.get_input_metadata(use_numpy_dtypes=False)
        return {k: tuple(None if (d is None or (isinstance(d, int) and d < 0)) else int(d) for d in shape)
                for k, (_, shape) in meta.items()}

    def _output_names(self) -> list[str]:
        engine = self._runner.context.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        trt = import_tensorrt()
        return [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
