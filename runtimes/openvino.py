"""OpenVINO runner: an ONNX file or an OpenVINO IR (.xml, e.g. the INT8 model of `rawedge calibrate`) on
CPU or GPU, with the compiled model cached on disk so the second start is fast. The metadata is read
from the file by rawedge.metadata (an IR's ``rt_info`` without OpenVINO), not from the loaded model."""
from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.metadata.schema import ModelMeta

from .base import Runner, Unavailable, import_backend
from .cache import user_cache_dir

INSTALL = "rawedge[openvino]"
PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "int8": "f32"}  # int8 IR: quantised ops run INT8 anyway


_HASHES: dict[tuple, str] = {}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", text)


def model_file_hash(model_path) -> str:
    """sha256 of a model file's bytes (an IR's .xml then its .bin), remembered per (path, size, mtime)."""
    files = [Path(model_path)]
    if files[0].suffix.lower() == ".xml":
        files.append(files[0].with_suffix(".bin"))
    files += [f.with_name(f.name + ".data") for f in files if f.with_name(f.name + ".data").is_file()]
    stamp = tuple((os.fspath(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file())
    if stamp not in _HASHES:
        digest = hashlib.sha256()
        for f in files:
            if f.is_file():
                with open(f, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
        _HASHES[stamp] = digest.hexdigest()
    return _HASHES[stamp]


def port_name(port) -> str:
    """A port's model-level name: a Parameter's own name for inputs (compilation can merge internal
    tensor names into a port), else the first of its tensor names."""
    names = port.get_names()
    node_name = port.get_node().get_friendly_name()
    return node_name if node_name in names else sorted(names)[0]


class OpenVinoRunner(Runner):
    """``device``: "CPU", "GPU", "AUTO"...; ``precision`` sets INFERENCE_PRECISION_HINT (fp32 is set
    explicitly: OpenVINO otherwise picks bf16 on CPUs that have it); ``cache_dir``: compiled-model
    cache (default: the user cache dir; False disables it); ``threads``: INFERENCE_NUM_THREADS;
    ``skip_outputs``: outputs not to compute (OpenVINO prunes the nodes that only feed them, e.g. a
    confidence head nobody asked for: about 10 % of the default model's time per tile).

    Each thread gets its own infer request, so one runner serves several threads at once."""

    backend = "openvino"
    thread_safe = True

    def __init__(self, model_path, device: str = "CPU", precision: str = "fp32", cache_dir=None,
                 threads: int | None = None, name: str | None = None, metadata: ModelMeta | None = None,
                 skip_outputs=()):
        super().__init__(model_path, name, metadata)
        self.skip_outputs = tuple(skip_outputs)
        if precision not in PRECISION_HINTS:
            raise RawedgeError(self.model_path, f"unknown precision {precision!r} (fp32, fp16, int8)")
        if self.model_path.suffix.lower() == ".xml" and not self.model_path.with_suffix(".bin").is_file():
            raise RawedgeError(self.model_path, f"OpenVINO IR weights {self.model_path.with_suffix('.bin').name} "
                                                "are missing next to it")
        self.device = device
        self.precision = precision
        self.cache_dir = cache_dir
        self.threads = threads
        self.compiled = None
        self._local = threading.local()
        self._core = None
        self._inputs: dict[str, tuple] = {}
        self._outputs: list[str] = []

    def _read_model(self):
        ov = import_backend("openvino", INSTALL, "OpenVINO")
        if self._core is None:
            self._core = ov.Core()
        try:
            return self._core.read_model(os.fspath(self.model_path))
        except Exception as exc:
            raise RawedgeError(self.model_path, f"OpenVINO cannot read the model: {str(exc).splitlines()[0]}") from None

    def cache_key(self) -> str:
        """The compiled-model cache's subfolder for this runner: the model's content hash (with an IR's
        weights), the device and the precision. OpenVINO's own key leaves the precision hint out (an FP16
        compilation was served to FP32 runs and the reverse), so each combination gets its own folder."""
        return f"{model_file_hash(self.model_path)[:20]}-{_safe(self.device)}-{self.precision}"

    def _config(self) -> dict:
        config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[self.precision]}
        if self.threads and self.device.upper().startswith("CPU"):
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.cache_dir is not False:
            base = Path(self.cache_dir) if self.cache_dir else user_cache_dir("openvino")
            folder = base / self.cache_key()
            folder.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = os.fspath(folder)
        return config

    def _check_device(self) -> None:
        devices = self._core.available_devices
        base = self.device.split(".")[0].upper()
        if base in ("AUTO", "HETERO", "MULTI"):
            return
        if not any(d.split(".")[0].upper() == base for d in devices):
            raise Unavailable(self.model_path, f"OpenVINO device {self.device} not found (available: {', '.join(devices)})")
        if self.precision == "fp16":
            caps = self._core.get_property(self.device, "OPTIMIZATION_CAPABILITIES")
            if "FP16" not in caps:
                raise Unavailable(self.model_path, f"OpenVINO device {self.device} has no FP16 inference "
                                                    f"(capabilities: {', '.join(caps)}); use precision fp32")

    def _activate(self) -> None:
        model = self._read_model()
        if self._metadata is None:  # refuse models without rawedge metadata (open_runner has read it already)
            self._metadata = self._read_metadata()
        self._check_device()
        self._inputs = {port_name(p): tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape())
                        for p in model.inputs}
        self._outputs = [port_name(p) for p in model.outputs]
        model = self._without_skipped(model)
        try:
            self.compiled = self._core.compile_model(model, self.device, self._config())
        except Exception as exc:
            raise RawedgeError(self.model_path, f"OpenVINO cannot compile the model for {self.device}: "
                                                f"{str(exc).splitlines()[0]}") from None
        self._local = threading.local()

    def _without_skipped(self, model):
        """``model`` computing only the outputs not in ``skip_outputs`` (all of them if that would leave none)."""
        kept = [r for r, name in zip(model.get_results(), self._outputs) if name not in self.skip_outputs]
        if len(kept) in (0, len(self._outputs)):
            return model
        ov = import_backend("openvino", INSTALL, "OpenVINO")
        self._outputs = [name for name in self._outputs if name not in self.skip_outputs]
        return ov.Model(kept, model.get_parameters(), model.get_friendly_name())

    def _request(self):
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self.compiled.create_infer_request()
        return req

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        req = self._request()
        index = {name: i for i, name in enumerate(self._inputs)}
        result = req.infer({index[k]: np.ascontiguousarray(v, dtype=np.float32) for k, v in feed.items()})
        return {name: np.array(result[i], dtype=np.float32) for i, name in enumerate(self._outputs)}

    def _deactivate(self) -> None:
        self.compiled = None
        self._local = threading.local()

    def _input_specs(self) -> dict[str, tuple]:
        return dict(self._inputs)

    def _output_names(self) -> list[str]:
        return list(self._outputs)
