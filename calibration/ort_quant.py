"""ONNX Runtime INT8: ``quant_pre_process`` (symbolic shape inference with ``auto_merge``: the
contract's dynamic H/W need it), then ``quantize_static`` in QDQ format with per-channel weights and
the scheme the CPU needs (calibration.isa). Tensor ranges are collected once, a few feeds at a time
(bounded memory), and cached, so every later attempt with other layers kept is only a re-write."""
from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path

from rawedge.runtimes.base import Runner, import_backend

from rawedge.contract import INPUT_NAMES
from rawedge.errors import RawedgeError
from rawedge.io.atomic import atomic_output
from rawedge.metadata.onnx import embed_onnx_metadata
from rawedge.metadata.schema import ModelMeta

from .base import Quantizer, network_region, quiet
from .dataset import CalibrationSet
from .isa import detect_isa, ort_scheme

LAYER_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm")
CALIBRATION_CHUNK = 4  # feeds per calibrator pass: ORT keeps every intermediate tensor of a pass in memory
ORT_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


class FeedReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over a list of feeds."""

    def __init__(self, feeds):
        self._feeds = list(feeds)
        self._it = iter(self._feeds)

    def get_next(self):
        return next(self._it, None)

    def __len__(self) -> int:
        return len(self._feeds)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def set_onnx_metadata(path: Path, meta: ModelMeta, interface_from: Path | None = None) -> None:
    """Replace the ``rawedge`` metadata of the ONNX file at ``path`` in place (with this file's own graph
    hash, not the FP32 model's); ``interface_from``: copy the input/output type declarations of that
    model (symbolic shape inference renames the dynamic output axes, e.g. ``ConvTranspose_56_o0__d2``
    for ``H/2``)."""
    import onnx

    proto = onnx.load(os.fspath(path))
    if interface_from is not None:
        original = onnx.load(os.fspath(interface_from), load_external_data=False)
        types = {v.name: v.type for v in [*original.graph.input, *original.graph.output]}
        for value in [*proto.graph.input, *proto.graph.output]:
            if value.name in types:
                value.type.CopyFrom(types[value.name])
    embed_onnx_metadata(proto, meta)
    onnx.save(proto, os.fspath(path))


class OrtQuantizer(Quantizer):
    runtime = "ort"
    backend_name = "onnxruntime"

    def __init__(self, model_path, method, workdir, threads=None, scope: str = "network"):
        super().__init__(model_path, method, workdir, threads, scope)
        self.preprocessed = self.workdir / "preprocessed.onnx"
        self.ranges = self.workdir / "ranges.json"
        self._reader: FeedReader | None = None

    # --- scheme --------------------------------------------------------------------------------------
    def scheme(self) -> dict:
        """Quantisation settings: CPU-dependent (reduce_range without VNNI), asymmetric U8 activations."""
        isa = detect_isa()
        self.facts["isa"] = isa.to_dict()
        return {**ort_scheme(isa), "format": "QDQ", "per_channel": True, "activation_symmetric": False,
                "scope": self.scope, "op_types": self.op_types() or "every operator ONNX Runtime quantizes"}

    def op_types(self) -> list[str] | None:
        return list(LAYER_TYPES) if self.scope == "weighted" else None

    def nodes_to_quantize(self) -> list[str] | None:
        """For the ``network`` scope, the nodes between weighted layers (calibration.base.network_region)."""
        if self.scope != "network":
            return None
        graph = self._float_graph()
        consumers: dict[str, list[str]] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node.name)
        successors = {n.name: [c for out in n.output for c in consumers.get(out, [])] for n in graph.node}
        spatial = set(consumers.get(INPUT_NAMES[0], []))
        return sorted(network_region(successors, {n.name for n in graph.node if n.op_type in LAYER_TYPES}, spatial))

    def extra_options(self, scheme: dict) -> dict:
        return {"ActivationSymmetric": scheme["activation_symmetric"], "WeightSymmetric": True}

    # --- Quantizer ----------------------------------------------------------------------------------
    def check_available(self) -> None:
        self.check_tools()

    def check_tools(self) -> None:
        """What writing the QDQ model needs (ONNX Runtime's quantization tools and onnx)."""
        import_backend("onnxruntime.quantization", "onnxruntime", "ONNX Runtime quantization")
        import_backend("onnx", "rawedge[calibrate]", "onnx")
        if self.method not in ORT_METHODS:
            raise RawedgeError(None, f"unknown calibration method {self.method!r} ({', '.join(ORT_METHODS)})")

    def prepare(self, calib: CalibrationSet, log=None) -> None:
        import onnxruntime
        from onnxruntime.quantization import CalibrationMethod, create_calibrator, quant_pre_process

        log = log or (lambda line: None)
        self.check_tools()
        self._scheme = self.scheme()
        self.facts.update({"scheme": self._scheme, "backend_version": onnxruntime.__version__})
        try:
            with quiet():
                quant_pre_process(os.fspath(self.model_path), os.fspath(self.preprocessed), auto_merge=True)
            self.facts["pre_process"] = "quant_pre_process(auto_merge=True)"
        except Exception as exc:  # noqa: BLE001 - shape inference can fail on exotic graphs: quantize the export as is
            log(f"quant_pre_process failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                "quantizing the exported graph without it")
            self.preprocessed = self.model_path
            self.facts["pre_process"] = f"skipped ({type(exc).__name__})"
        self._method = getattr(CalibrationMethod, ORT_METHODS[self.method])
        self._nodes = self.nodes_to_quantize()
        options = {"symmetric": self._scheme["activation_symmetric"]}
        self._reader = FeedReader(calib.feeds)
        if "calibration_cache_path" not in inspect.signature(
                import_backend("onnxruntime.quantization", "onnxruntime", "ONNX Runtime").quantize_static).parameters:
            self.ranges = None  # older ONNX Runtime: quantize_static calibrates on every call
            return
        from onnxruntime.quantization import save_tensors_data

        calibrator = create_calibrator(self.preprocessed, None, os.fspath(self.workdir / "augmented.onnx"),
                                       calibrate_method=self._method, extra_options=options)
        with quiet():
            for start in range(0, len(calib.feeds), CALIBRATION_CHUNK):
                calibrator.collect_data(FeedReader(calib.feeds[start:start + CALIBRATION_CHUNK]))
            save_tensors_data(calibrator.compute_data(), self.ranges)
        del calibrator
        log(f"collected {self.method} ranges of {len(calib.feeds)} tiles")

    def layers(self) -> list[str]:
        return [n.name for n in self._float_graph().node if n.op_type in LAYER_TYPES and n.name]

    def _float_graph(self):
        """The pre-processed float graph, read once (region, layers and float nodes all come from it)."""
        if getattr(self, "_graph", None) is None:
            import onnx

            self._graph = onnx.load(os.fspath(self.preprocessed), load_external_data=False).graph
        return self._graph

    def quantize(self, output: Path, keep=(), first: bool = False) -> Path:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        s = self._scheme
        kwargs = {"calibration_cache_path": os.fspath(self.ranges)} if self.ranges else {}
        reader = None
        if not self.ranges:
            self._reader.rewind()
            reader = self._reader
        with quiet():
            quantize_static(os.fspath(self.preprocessed), os.fspath(output), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=self.op_types(), per_channel=s["per_channel"],
                            reduce_range=s["reduce_range"], activation_type=getattr(QuantType, s["activation_type"]),
                            weight_type=getattr(QuantType, s["weight_type"]), nodes_to_quantize=self._nodes,
                            nodes_to_exclude=list(keep),
                            calibrate_method=self._method, extra_options=self.extra_options(s), **kwargs)
        nodes = {n.name for n in self._float_graph().node}
        float_nodes = set(keep) | (nodes - set(self._nodes) if self._nodes else set())
        rewired = float_inputs_for_float_nodes(output, float_nodes)
        self.facts["float_inputs_restored"] = rewired
        return output

    def open_runner(self, artefact: Path, **opts) -> Runner:
        from rawedge.runtimes.ort import OrtRunner

        return OrtRunner(artefact, intra_op_threads=self.threads, name=f"ort-int8:{artefact.name}", **opts)

    def write(self, artefact: Path, target: Path, meta: ModelMeta) -> list[Path]:
        with atomic_output(target) as tmp:
            shutil.copyfile(artefact, tmp)
            set_onnx_metadata(Path(tmp), meta, interface_from=self.model_path)
        return [target]


def float_inputs_for_float_nodes(path: Path, float_nodes: set[str]) -> int:
    """ONNX Runtime inserts one Quantize/Dequantize pair per tensor, and every consumer of the tensor then
    reads the dequantized copy, the nodes kept in float included: the bundled model's toned analytic prior
    (linear RAW, mostly near 0) fed the U-Net's first layer, which is quantized, and the output sum
    ``prior + residual``, which is not, so the output carried an 8-bit prior (about 55 dB against FP32
    whatever was kept in float). Rewire each float node's input from DequantizeLinear(QuantizeLinear(x))
    back to x; returns how many inputs were restored."""
    import onnx

    model = onnx.load(os.fspath(path))
    producer = {out: node for node in model.graph.node for out in node.output}
    restored = 0
    for node in model.graph.node:
        if node.name not in float_nodes or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for k, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[k] = q.input[0]
                restored += 1
    if restored:
        onnx.save(model, os.fspath(path))
    return restored
