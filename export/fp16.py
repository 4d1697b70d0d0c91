"""FP16 models with float32 inputs and outputs (``keep_io_types``), so the contract and the runtimes'
feeds do not change; weights and activations are half precision. Tolerance: see ``parity``.

Two repairs after onnxconverter-common, both found on the overexposure-fusion model:
  * the model's own ``Cast(to=float)`` nodes (e.g. a boolean mask made float) are left producing float32
    while the converter declares their outputs float16, so the next Mul mixes types;
  * a graph output also used inside the graph (``raw_oe`` feeds the fusion) is renamed behind the
    float32 output cast, and its internal consumers end up reading the float32 copy.
"""
from __future__ import annotations

import warnings

from rawedge.errors import RawedgeError


def _cast_target(node) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def to_fp16(model):
    """Half-precision copy of a float32 ONNX model (onnxconverter-common; ORT's own converter if that
    package is missing)."""
    from onnx import TensorProto

    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ModuleNotFoundError:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    own_casts = {n.name for n in model.graph.node if n.op_type == "Cast" and _cast_target(n) == TensorProto.FLOAT}
    try:
        with warnings.catch_warnings():  # one warning per weight below fp16's range, clamped to 1e-7
            warnings.simplefilter("ignore")
            half = convert_float_to_float16(model, keep_io_types=True)
    except Exception as exc:
        raise RawedgeError(None, f"FP16 conversion failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    for node in half.graph.node:
        if node.name in own_casts:
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = TensorProto.FLOAT16
    _reconnect_output_consumers(half)
    return half


def _reconnect_output_consumers(model) -> None:
    """Nodes reading a graph output read its float16 source instead of the float32 output cast."""
    from onnx import TensorProto

    outputs = {o.name for o in model.graph.output}
    source = {}
    for node in model.graph.node:
        if node.op_type == "Cast" and _cast_target(node) == TensorProto.FLOAT and node.output[0] in outputs:
            source[node.output[0]] = node.input[0]
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in source:
            continue
        for i, name in enumerate(node.input):
            if name in source:
                node.input[i] = source[name]
