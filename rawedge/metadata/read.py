"""One entry point for every model file rawedge makes: ``read_model_metadata(path) -> ModelMeta``,
dispatching on the file kind. Each reader parses the file itself (no ``onnx``, ONNX Runtime, OpenVINO
or TensorRT import), so the runtimes read a model's metadata once, before any backend loads it."""
from __future__ import annotations

import os
from pathlib import Path

from rawedge.errors import RawedgeError

from .onnx import onnx_metadata_text
from .openvino import ir_metadata_text
from .ort_format import ort_metadata_text
from .schema import ModelMeta, parse_metadata
from .sidecar import sidecar_metadata_text

READERS = {".onnx": onnx_metadata_text, ".ort": ort_metadata_text, ".xml": ir_metadata_text,
           ".engine": sidecar_metadata_text, ".plan": sidecar_metadata_text, ".trt": sidecar_metadata_text}


def model_metadata_text(path: str | os.PathLike) -> str | None:
    """The raw rawedge metadata string of an .onnx, .ort, OpenVINO .xml or TensorRT engine (None when
    the file carries none)."""
    path = Path(path)
    if not path.is_file():
        raise RawedgeError(path, "no such model file")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise RawedgeError(path, "not a model file (.onnx, .ort, .xml or .engine)")
    return reader(path)


def read_model_metadata(path: str | os.PathLike) -> ModelMeta:
    """The ModelMeta of a model file (a RawedgeError when it has none or it does not validate)."""
    return parse_metadata(model_metadata_text(path), path)
