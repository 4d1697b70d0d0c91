"""``open_runner``: one entry point for every backend and precision, and the naming convention that
finds the INT8 artefacts `rawedge calibrate` writes next to a model:

    <stem>.<runtime>.int8.<ext>     model.onnx -> model.ort.int8.onnx       (ONNX Runtime, QDQ ONNX)
                                                  model.openvino.int8.xml   (OpenVINO IR, + .bin)
                                                  model.trt.int8.onnx       (TensorRT, Q/DQ ONNX)
                                                  model.trt.int8.cache      (TensorRT calibration cache)

FP16: ONNX Runtime uses ``model.fp16.onnx`` (from `rawedge export --fp16`) when it exists, else its
TensorRT execution provider's FP16 mode; OpenVINO and TensorRT convert the FP32 model themselves.

Each open reads the metadata of the file it runs once (rawedge.metadata, before any backend loads) and
hands it to the runner.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path

from rawedge.errors import RawedgeError
from rawedge.metadata.read import read_model_metadata
from rawedge.metadata.schema import ModelMeta

from .base import Runner, Unavailable
from .integrity import check_variant, verify_onnx

RUNTIMES = ("ort", "openvino", "trt")
PRECISIONS = ("fp32", "fp16", "int8")
INT8_EXTENSIONS = {"ort": (".onnx",), "openvino": (".xml",), "trt": (".onnx", ".cache")}


def _measured_speedup(artefact: Path) -> float | None:
    """The FP32/INT8 speed ratio recorded by `rawedge calibrate` in an artefact (None: none recorded or
    unreadable; opening the artefact reports an unreadable one)."""
    try:
        calibration = read_model_metadata(artefact).calibration
    except RawedgeError:
        return None
    speedup = getattr(calibration, "speedup", None) if calibration else None
    return float(speedup) if isinstance(speedup, (int, float)) else None


def default_precision(runtime: str) -> str:
    return "fp16" if runtime == "trt" else "fp32"


def auto_precision(model_path: str | os.PathLike, runtime: str) -> tuple[str, str]:
    """(precision, why) for ``--precision auto``: the INT8 artefact beside the model when there is one
    (`rawedge calibrate` writes it only after it passed its accuracy gate), unless the speed its calibration
    measured says it is slower than FP32 (an artefact with many layers kept in float can be: its Q/DQ pairs
    cost more than the INT8 layers save); else the runtime's default precision."""
    check_runtime(runtime)
    if runtime != "trt":
        for ext in INT8_EXTENSIONS[runtime]:
            path = int8_artefact_path(model_path, runtime, ext)
            if path.is_file():
                speedup = _measured_speedup(path)
                if speedup is not None and speedup < 1.0:
                    precision = default_precision(runtime)
                    return precision, (f"auto: {path.name} passed its calibration gate but ran at {speedup:.2f}x "
                                       f"FP32 when it was made; {precision} (--precision int8 takes it anyway)")
                return "int8", f"auto: {path.name} passed its calibration gate"
    precision = default_precision(runtime)
    return precision, f"auto: no INT8 artefact beside {Path(model_path).name}, {precision}"


def int8_artefact_path(model_path: str | os.PathLike, runtime: str, ext: str | None = None) -> Path:
    """Where the INT8 artefact of ``model_path`` for ``runtime`` lives (the calibration stage writes it)."""
    check_runtime(runtime)
    model_path = Path(model_path)
    ext = ext or INT8_EXTENSIONS[runtime][0]
    return model_path.with_name(f"{model_path.stem}.{runtime}.int8{ext}")


def fp16_export_path(model_path: str | os.PathLike) -> Path:
    """``model.fp16.onnx``: the FP16 file `rawedge export --fp16` writes beside ``model.onnx`` (float32
    inputs and outputs, half-precision weights and activations); ONNX Runtime's FP16."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.fp16.onnx")


def find_int8_artefact(model_path: str | os.PathLike, runtime: str) -> Path:
    candidates = [int8_artefact_path(model_path, runtime, ext) for ext in INT8_EXTENSIONS[runtime]]
    for path in candidates:
        if path.is_file():
            return path
    raise Unavailable(model_path, f"no INT8 artefact for {runtime} (looked for {', '.join(p.name for p in candidates)}); "
                                   f"make one with `rawedge calibrate {shlex.quote(os.fspath(model_path))} --runtime {runtime} "
                                   f"--data PHOTO_DIR` (PHOTO_DIR: a folder of your photos, or of RAW+JPEG pairs)")


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise RawedgeError(None, f"unknown runtime {runtime!r} (one of {', '.join(RUNTIMES)})")


def open_runner(model_path: str | os.PathLike, runtime: str = "ort", precision: str | None = None,
                threads: int | None = None, **opts) -> Runner:
    """A (not yet activated) runner for ``model_path`` on ``runtime`` at ``precision``.

    ``threads``: the backend's intra-op/inference threads. Other ``opts`` go to the runner class:
    OrtRunner(providers=...), OpenVinoRunner(device=..., cache_dir=...),
    TensorRtRunner(tile=..., batch=..., cache_dir=...)."""
    check_runtime(runtime)
    precision = precision or default_precision(runtime)
    if precision not in PRECISIONS:
        raise RawedgeError(None, f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise RawedgeError(model_path, "no such model file")
    if runtime != "openvino" and model_path.suffix.lower() != ".onnx":
        raise RawedgeError(model_path, f"runtime {runtime} needs an .onnx model")
    runner = _backend_runner(model_path, runtime, precision, threads, opts)
    if runner.model_path.suffix.lower() == ".onnx":  # refuse a file changed since `rawedge export`
        verify_onnx(runner.model_path, runner.metadata)
    if runtime == "trt" and runner.int8_artefact is not None and runner.int8_artefact.suffix.lower() == ".onnx":
        check_variant(model_path, runner.metadata, runner.int8_artefact, read_model_metadata(runner.int8_artefact),
                      "INT8 artefact")
    return runner


def _backend_runner(model_path: Path, runtime: str, precision: str, threads, opts: dict) -> Runner:
    if runtime == "ort":
        from .ort import OrtRunner

        if precision == "int8":
            artefact = find_int8_artefact(model_path, "ort")
            meta = _variant_meta(model_path, artefact, "INT8 artefact")
            return OrtRunner(artefact, intra_op_threads=threads, metadata=meta, **opts)
        if precision == "fp16" and fp16_export_path(model_path).is_file():
            export = fp16_export_path(model_path)
            meta = _variant_meta(model_path, export, "FP16 export")
            return OrtRunner(export, intra_op_threads=threads, metadata=meta, **opts)
        return OrtRunner(model_path, intra_op_threads=threads, fp16=precision == "fp16",
                         metadata=read_model_metadata(model_path), **opts)
    if runtime == "openvino":
        from .openvino import OpenVinoRunner

        if precision == "int8" and ".int8" not in model_path.suffixes:
            artefact = find_int8_artefact(model_path, "openvino")
            meta = _variant_meta(model_path, artefact, "INT8 artefact")
            return OpenVinoRunner(artefact, precision=precision, threads=threads, metadata=meta, **opts)
        meta = read_model_metadata(model_path)
        return OpenVinoRunner(model_path, precision=precision, threads=threads, metadata=meta, **opts)
    from .tensorrt import TensorRtRunner

    artefact = find_int8_artefact(model_path, "trt") if precision == "int8" else None
    return TensorRtRunner(model_path, precision=precision, int8_artefact=artefact,
                          metadata=read_model_metadata(model_path), **opts)


def _variant_meta(model_path: Path, variant: Path, what: str) -> ModelMeta:
    """The metadata of ``variant`` (an INT8 artefact or FP16 export found next to ``model_path``), once it
    is known to be made from that model."""
    meta = read_model_metadata(variant)
    check_variant(model_path, read_model_metadata(model_path), variant, meta, what)
    return meta
