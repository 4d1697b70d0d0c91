"""rawedge.runtimes: run exported rawedge models without torch (ONNX Runtime, OpenVINO, TensorRT).

    from rawedge.runtimes import Reconstructor
    rec = Reconstructor.open("model.onnx", runtime="ort")
    raw = rec(srgb_uint8, exif=exif)          # -> rawedge.types.RawImage
"""
from .base import BackendMissing, Runner, Unavailable
from .factory import PRECISIONS, RUNTIMES, find_int8_artefact, int8_artefact_path, open_runner
from .reconstructor import Reconstructor

__all__ = ["PRECISIONS", "RUNTIMES", "BackendMissing", "Reconstructor", "Runner", "Unavailable",
           "find_int8_artefact", "int8_artefact_path", "open_runner"]
