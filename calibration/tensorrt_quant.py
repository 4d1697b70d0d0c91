"""TensorRT INT8 by explicit quantisation: ONNX Runtime's calibrator and QDQ writer produce a Q/DQ
ONNX in the form TensorRT expects (symmetric INT8 activations and weights, per-channel weights, Q/DQ
only around Conv/ConvTranspose/MatMul/Gemm, whose placement TensorRT then propagates), and the
rawedge TensorRT runner builds it into an INT8 engine (runtimes/tensorrt.py). Implicit quantisation
with a calibrator cache is deprecated since TensorRT 10, so it is not offered here.

The artefact is ``<model>.trt.int8.onnx``; the engine is built and cached by the runner on first use."""
from __future__ import annotations

from pathlib import Path

from rawedge.runtimes.base import Runner, import_backend

from .ort_quant import LAYER_TYPES, OrtQuantizer

TRT_INSTALL = "rawedge[tensorrt]"


class TensorRtQuantizer(OrtQuantizer):
    runtime = "trt"
    backend_name = "tensorrt"

    def __init__(self, model_path, method, workdir, threads=None, tile: int | None = None, batch: int = 4):
        super().__init__(model_path, method, workdir, threads, scope="weighted")
        self.tile = tile
        self.batch = batch

    def check_available(self) -> None:
        trt = import_backend("tensorrt", TRT_INSTALL, "TensorRT")
        import_backend("polygraphy.backend.trt", "rawedge[calibrate]", "Polygraphy")
        from rawedge.runtimes.tensorrt import cuda_gpu_name

        self.facts["gpu"] = cuda_gpu_name()  # Unavailable without an NVIDIA driver
        self.facts["tensorrt_version"] = trt.__version__
        self.check_tools()

    def scheme(self) -> dict:
        return {"activation_type": "QInt8", "weight_type": "QInt8", "reduce_range": False, "format": "QDQ",
                "per_channel": True, "activation_symmetric": True, "scope": "weighted", "op_types": list(LAYER_TYPES),
                "reason": "TensorRT explicit quantisation: symmetric INT8 Q/DQ on the inputs of weighted layers"}

    def op_types(self) -> list[str]:
        return list(LAYER_TYPES)

    def extra_options(self, scheme: dict) -> dict:
        # Q/DQ on the inputs (activations and weights) of weighted layers only, as TensorRT recommends;
        # biases and outputs stay float: TensorRT fuses bias and activation into the INT8 kernel itself
        return {"ActivationSymmetric": True, "WeightSymmetric": True, "DedicatedQDQPair": False, "QuantizeBias": False,
                "OpTypesToExcludeOutputQuantization": list(LAYER_TYPES)}

    def open_runner(self, artefact: Path, **opts) -> Runner:
        from rawedge.runtimes.tensorrt import TensorRtRunner

        return TensorRtRunner(self.model_path, precision="int8", int8_artefact=artefact, tile=self.tile,
                              batch=self.batch, name=f"trt-int8:{artefact.name}", **opts)

    def fp32_runner(self, **opts) -> Runner:
        from rawedge.runtimes.tensorrt import TensorRtRunner

        return TensorRtRunner(self.model_path, precision="fp32", tile=self.tile, batch=self.batch, **opts)
