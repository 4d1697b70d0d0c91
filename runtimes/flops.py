"""FLOPs of an exported rawedge model, counted from its ONNX graph (no torch, no ``onnx`` package).

What is counted (one multiply-add = 2 FLOPs):
  Conv            2 * N*Cout*Hout*Wout * (Cin/group)*kh*kw   (+ 1 per output element for the bias)
  ConvTranspose   2 * N*Cin*Hin*Win * (Cout/group)*kh*kw     (+ 1 per output element for the bias)
  Gemm, MatMul    2 * M*K*N per matrix product (+ C / bias: 1 per output element)
  Einsum          2 * the product of every index size (one multiply-add per term of the sum)
These are ``matmul_flops``, the headline. Elementwise arithmetic and activations (Add, Mul, LeakyRelu,
Exp, Clip, ...) and reductions are counted as 1 FLOP per output (input for reductions) element and
reported apart (``elementwise_flops``); data movement (Reshape, Slice, Concat, Transpose, Gather, Cast,
Resize, Pad, ...) and shape arithmetic count 0.

Shapes come from one ONNX Runtime run on a tile (graph optimisation off, so nodes are the file's own),
read from ORT's profiler (every node's input and output shapes); the graph itself comes from the
protobuf reader (metadata.protobuf). Batch 1: ``tile`` FLOPs are those of the nodes that depend on the
``srgb`` input, divided by tile*tile for the per-pixel figure; the ``global`` branch is every other node
(the thumbnail/EXIF path, computed from per-photo inputs, so once per photo where a runtime caches it
and once per tile where it does not)."""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.metadata.protobuf import Graph, Node, read_graph

ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Exp", "Log", "Sin", "Cos", "Tanh", "Sigmoid",
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Gelu", "HardSigmoid", "HardSwish", "Softplus", "Mish", "Erf",
    "Clip", "Max", "Min", "Abs", "Neg", "Mean", "Sum", "Where", "Floor", "Ceil", "Round",
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "Softmax",
}
REDUCTIONS = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceProd",
              "GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool"}


@dataclass
class FlopCount:
    """FLOPs of one tile's inference at ``tile`` x ``tile`` (``pixels``: its srgb height x width, for a
    fixed-size model whose input is not square)."""

    tile: int
    tile_flops: float  # matmul-class FLOPs of the nodes that depend on srgb
    global_flops: float  # matmul-class FLOPs of the other nodes (per photo)
    tile_elementwise_flops: float
    global_elementwise_flops: float
    by_op: dict[str, float] = field(default_factory=dict)  # op type -> FLOPs (matmul-class and elementwise)
    pixels: int = 0

    def __post_init__(self):
        self.pixels = self.pixels or self.tile * self.tile

    @property
    def per_pixel(self) -> float:
        """Matmul-class FLOPs per input (tile) pixel of the per-tile path."""
        return self.tile_flops / self.pixels

    @property
    def elementwise_per_pixel(self) -> float:
        return self.tile_elementwise_flops / self.pixels

    def summary(self) -> str:
        """'N kFLOP per input pixel (tile T; global branch M MFLOP per photo)'."""
        return (f"{self.per_pixel / 1e3:.1f} kFLOP per input pixel (tile {self.tile}; global branch "
                f"{self.global_flops / 1e6:.1f} MFLOP per photo)")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(per_pixel=self.per_pixel, elementwise_per_pixel=self.elementwise_per_pixel)
        return d


def srgb_dependent(graph: Graph, source: str = "srgb") -> set[int]:
    """Indices of the nodes whose value depends on graph input ``source`` (file order is topological)."""
    tainted, out = {source}, set()
    for i, node in enumerate(graph.nodes):
        if any(x in tainted for x in node.inputs if x):
            out.add(i)
            tainted.update(node.outputs)
    return out


def node_flops(node: Node, in_shapes: list, out_shapes: list) -> tuple[float, float]:
    """(matmul-class FLOPs, elementwise FLOPs) of one node from its input and output shapes."""
    op = node.op_type
    def size(s) -> float:
        return float(math.prod(s)) if s is not None else 0.0
    out0 = size(out_shapes[0]) if out_shapes else 0.0
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    if op == "Conv":
        w = in_shapes[1]
        return 2.0 * out0 * math.prod(w[1:]), out0 if has_bias else 0.0
    if op == "ConvTranspose":
        x, w = in_shapes[0], in_shapes[1]
        return 2.0 * size(x) * math.prod(w[1:]), out0 if has_bias else 0.0
    if op == "Gemm":
        a = in_shapes[0]
        k = a[0] if node.attrs.get("transA") else a[1]
        return 2.0 * out0 * k, out0 if has_bias else 0.0
    if op == "MatMul":
        return 2.0 * out0 * in_shapes[0][-1], 0.0
    if op == "Einsum":
        eq = str(node.attrs.get("equation", "")).replace(" ", "")
        lhs = eq.split("->")[0].split(",")
        sizes: dict[str, int] = {}
        for term, shape in zip(lhs, in_shapes):
            for letter, dim in zip(term.replace("...", ""), shape[-len(term.replace('...', '')):] if term else []):
                sizes[letter] = dim
        return 2.0 * math.prod(sizes.values()), 0.0
    if op in ELEMENTWISE:
        return 0.0, out0
    if op in REDUCTIONS:
        return 0.0, size(in_shapes[0]) if in_shapes else 0.0
    return 0.0, 0.0


def _feed(session, tile: int) -> dict[str, np.ndarray]:
    """Inputs of batch 1 with ``tile`` for srgb's spatial axes; identity colour matrices, mid-grey rest."""
    feed = {}
    for arg in session.get_inputs():
        dims = [d if isinstance(d, int) and d > 0 else None for d in arg.shape]
        if arg.name == "srgb" and len(dims) == 4:  # a fixed size or batch wins over ``tile`` and 1
            shape = [dims[0] or 1, dims[1] or 3, dims[2] or tile, dims[3] or tile]
        else:
            shape = [dims[0] or 1 if dims else 1] + [d or 1 for d in dims[1:]]
        if len(shape) == 3 and shape[1:] == [3, 3]:
            feed[arg.name] = np.eye(3, dtype=np.float32)[None]
        else:
            feed[arg.name] = np.full(shape, 0.5, dtype=np.float32)
    return feed


def profiled_shapes(path: str | os.PathLike, tile: int) -> tuple[dict, dict, dict]:
    """({node name: (op, input shapes, output shapes)}, {ORT node index: the same}, {graph input: shape})
    from one ONNX Runtime run at ``tile`` (batch 1, graph optimisation off so ORT runs the file's own
    nodes). ORT's profiler leaves out the shapes of some constant inputs (pre-packed weights): take those
    from the graph."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="rawedge-flops-") as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.enable_profiling = True
        opts.profile_file_prefix = os.path.join(tmp, "profile")
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        try:
            session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
            feed = _feed(session, tile)
            session.run(None, feed)
        except Exception as exc:  # noqa: BLE001 - any ORT refusal is one clear line
            raise RawedgeError(path, f"cannot count FLOPs: ONNX Runtime could not run a {tile}x{tile} tile "
                                     f"({str(exc).strip().splitlines()[0][:200]})") from None
        events = json.loads(Path(session.end_profiling()).read_text())

    def shapes(entries) -> list:
        return [next(iter(e.values())) for e in entries or []]

    by_name, by_index = {}, {}
    for e in events:
        args = e.get("args") or {}
        if e.get("cat") == "Node" and "node_index" in args and "output_type_shape" in args:
            entry = (args.get("op_name"), shapes(args.get("input_type_shape")), shapes(args.get("output_type_shape")))
            by_index[int(args["node_index"])] = entry
            by_name[str(e.get("name", "")).removesuffix("_kernel_time")] = entry
    return by_name, by_index, {k: list(v.shape) for k, v in feed.items()}


def _match(graph: Graph, by_name: dict, by_index: dict, fed: dict) -> dict[int, tuple]:
    """File node index -> ORT's (op, input shapes, output shapes): by node name when the names are unique,
    else by ORT's node index (the file's order, Constant nodes excepted: ORT makes them initializers)."""
    names = [n.name for n in graph.nodes]
    if all(names) and len(set(names)) == len(names):
        ran = {i: by_name[n.name] for i, n in enumerate(graph.nodes) if n.name in by_name}
    else:
        ran, k = {}, 0
        for i, node in enumerate(graph.nodes):
            if node.op_type == "Constant" and not node.domain:
                continue
            if k in by_index:
                ran[i] = by_index[k]
            k += 1
    # every tensor's shape by name: graph inputs as fed, initializers and Constant values from the file,
    # node outputs as ORT produced them; a node's input shapes are then looked up by name
    shape_of = {**{k: list(v) for k, v in graph.initializers.items()}, **fed}
    for i, node in enumerate(graph.nodes):
        if node.op_type == "Constant" and isinstance(node.attrs.get("value"), tuple):
            shape_of[node.outputs[0]] = list(node.attrs["value"])
        elif i in ran:
            shape_of.update(zip(node.outputs, ran[i][2]))
    out = {}
    for i, (op, ins, outs) in ran.items():
        node = graph.nodes[i]
        named = [shape_of.get(x) if x else None for x in node.inputs]
        if any(s is None for s, x in zip(named, node.inputs) if x) and len(ins) == len(node.inputs):
            named = [s if s is not None else p for s, p in zip(named, ins)]
        out[i] = (op, named, outs)
    return out


def count_flops(path: str | os.PathLike, tile: int | None = None) -> FlopCount:
    """FLOPs of the ONNX model at ``path`` for one ``tile`` x ``tile`` tile (default: the model's static
    tile, else its metadata's recommended tile, else 512)."""
    graph = read_graph(path)
    if tile is None:
        from rawedge.metadata.onnx import onnx_metadata_text
        from rawedge.metadata.schema import parse_metadata

        text = onnx_metadata_text(path)
        meta = parse_metadata(text, path) if text else None
        tile = (meta.static_tile or meta.tile) if meta else 512
    tile = int(tile)
    by_name, by_index, fed = profiled_shapes(path, tile)
    profiled = _match(graph, by_name, by_index, fed)
    tiled = srgb_dependent(graph)
    n, _, h, w = fed.get("srgb", [1, 3, tile, tile])
    count = FlopCount(h, 0.0, 0.0, 0.0, 0.0, pixels=h * w)
    for i, node in enumerate(graph.nodes):
        if i not in profiled:
            continue  # Constant nodes and the like: ORT folds them, nothing runs
        op_name, ins, outs = profiled[i]
        if op_name != node.op_type:
            raise RawedgeError(path, f"cannot count FLOPs: ONNX Runtime's node {i} is {op_name}, the file's is "
                                     f"{node.op_type} (the graph was rewritten on load)")
        mm, ew = node_flops(node, ins, outs)
        if i in tiled:
            count.tile_flops += mm
            count.tile_elementwise_flops += ew
        else:
            count.global_flops += mm
            count.global_elementwise_flops += ew
        if mm or ew:
            count.by_op[node.op_type] = count.by_op.get(node.op_type, 0.0) + mm + ew
    if n > 1:  # a fixed-batch model: per tile
        for k in ("tile_flops", "global_flops", "tile_elementwise_flops", "global_elementwise_flops"):
            setattr(count, k, getattr(count, k) / n)
        count.by_op = {k: v / n for k, v in count.by_op.items()}
    return count
