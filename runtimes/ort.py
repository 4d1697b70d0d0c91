"""ONNX Runtime runner: CPU, plus the CUDA and TensorRT execution providers where the installed build
has them. ORT sessions are thread-safe for ``run``, so no lock is taken."""
from __future__ import annotations

import os

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.metadata.schema import ModelMeta

from .base import Runner, Unavailable, import_backend, static_dims
from .cache import user_cache_dir

# Short names accepted in ``providers=`` and on the command line.
PROVIDER_ALIASES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                    "tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider"}


def available_providers() -> list[str]:
    ort = import_backend("onnxruntime", "onnxruntime", "ONNX Runtime")
    return list(ort.get_available_providers())


def default_providers() -> list[str]:
    """CUDA then CPU when the build has CUDA, else CPU. The TensorRT EP is opt-in (``providers=``):
    its first run builds an engine, which takes minutes."""
    have = available_providers()
    return [p for p in ("CUDAExecutionProvider",) if p in have] + ["CPUExecutionProvider"]


def resolve_providers(providers, fp16: bool = False) -> list:
    """Names or aliases -> ORT provider list (with TensorRT EP options), refusing ones not built in."""
    have = available_providers()
    out = []
    for p in providers or default_providers():
        name = PROVIDER_ALIASES.get(str(p).lower(), p) if isinstance(p, str) else p
        if isinstance(name, str) and name not in have:
            raise Unavailable(None, f"ONNX Runtime provider {name} is not in this build (it has {', '.join(have)}); "
                                     "install onnxruntime-gpu for CUDA and TensorRT")
        if name == "TensorrtExecutionProvider":
            name = (name, {"trt_fp16_enable": bool(fp16), "trt_engine_cache_enable": True,
                           "trt_engine_cache_path": os.fspath(user_cache_dir("ort-trt"))})
        out.append(name)
    return out


class OrtRunner(Runner):
    """ONNX Runtime session over one rawedge ONNX file.

    ``intra_op_threads``/``inter_op_threads``: ORT's thread pools (None = ORT's default, all cores).
    ``fp16``: the TensorRT execution provider's FP16 mode (for the CPU and CUDA providers, load an FP16
    export instead: open_runner does)."""

    backend = "ort"
    thread_safe = True

    def __init__(self, model_path, providers=None, intra_op_threads: int | None = None,
                 inter_op_threads: int | None = None, fp16: bool = False, name: str | None = None,
                 metadata: ModelMeta | None = None):
        super().__init__(model_path, name, metadata)
        self.fp16 = fp16
        self.providers = resolve_providers(providers, fp16=fp16)
        if fp16 and not any(isinstance(p, tuple) and p[0] == "TensorrtExecutionProvider" for p in self.providers):
            raise Unavailable(self.model_path, "ONNX Runtime FP16 needs an FP16 export next to the model "
                                               "(`rawedge export --fp16` writes MODEL.fp16.onnx) or the TensorRT "
                                               "execution provider (providers=['tensorrt'])")
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.session = None

    def _activate(self) -> None:
        ort = import_backend("onnxruntime", "onnxruntime", "ONNX Runtime")
        opts = ort.SessionOptions()
        if self.intra_op_threads:
            opts.intra_op_num_threads = int(self.intra_op_threads)
        if self.inter_op_threads:
            opts.inter_op_num_threads = int(self.inter_op_threads)
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(os.fspath(self.model_path), opts, providers=self.providers)
        except Exception as exc:
            raise RawedgeError(self.model_path, f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0]}") from None
        if self._metadata is None:  # refuse models without rawedge metadata (open_runner has read it already)
            self._metadata = self._read_metadata()
        self.session = session

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self._output_names()
        outs = self.session.run(names, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feed.items()})
        return dict(zip(names, outs))

    def _deactivate(self) -> None:
        self.session = None

    def _input_specs(self) -> dict[str, tuple]:
        return {i.name: static_dims(i.shape) for i in self.session.get_inputs()}

    def _output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    @property
    def active_providers(self) -> list[str]:
        self._require_active()
        return list(self.session.get_providers())
