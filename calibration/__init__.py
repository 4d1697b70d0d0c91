"""rawedge.calibration: INT8 artefacts for ONNX Runtime, OpenVINO and TensorRT, gated by accuracy
against FP32 on held-out files (`rawedge calibrate`).

    from rawedge.calibration import Options, calibrate
    outcome = calibrate("model.onnx", "photos/", Options(runtime="ort", max_drop=0.3))
    outcome.artefacts      # [model.ort.int8.onnx]: what `rawedge infer --precision int8` loads

Modules: dataset (files, split, feeds recorded from the Reconstructor's plan and outputs replayed
through its blend), isa (CPU INT8 scheme), ort_quant / openvino_quant / tensorrt_quant (one quantizer
per backend), adapters (Polygraphy runner adapter), gate (the one accuracy gate), sensitivity (layer
ranking), report (JSON, table, PNG), pipeline (the whole run); the command is rawedge.cli.calibrate.
"""
from .pipeline import GateFailed, Options, Outcome, calibrate

__all__ = ["GateFailed", "Options", "Outcome", "calibrate"]
