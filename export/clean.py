"""Make an exported graph the one file every runtime accepts: cleaned (onnxslim), the same six contract
inputs for every model, readable dimension names, portable operators only, checked by onnx."""
from __future__ import annotations

from rawedge.contract import INPUT_NAMES, THUMB_SIZE
from rawedge.errors import RawedgeError

# The protobuf limit is 2 GiB; above this the weights go to an external-data file next to the model.
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26

# Contract input shapes; "N" is the batch (fixed to 1 in static-tile models), H/W the tile.
INPUT_SHAPES = {"srgb": ["N", 3, "H", "W"], "thumb": ["N", 3, THUMB_SIZE, THUMB_SIZE], "exif": ["N", 4],
                "wb": ["N", 3], "cam2rgb": ["N", 3, 3], "rgb2cam": ["N", 3, 3]}

# Operators that not all of ONNX Runtime, OpenVINO and TensorRT accept, or whose output shape depends
# on the data (a tile must have a fixed output layout).
DATA_DEPENDENT_OPS = {"NonZero", "Unique", "Compress", "NonMaxSuppression", "StringNormalizer", "TfIdfVectorizer"}
SEQUENCE_OPS = {"SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
                "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence", "Optional",
                "OptionalGetElement", "OptionalHasElement"}
STANDARD_DOMAINS = {"", "ai.onnx"}


def initializer_bytes(model) -> int:
    """Size of the weights (raw and typed fields), the part that can exceed the protobuf limit."""
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) or t.ByteSize()
    return total


def is_large(model) -> bool:
    return initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD


def slim(model, log=None):
    """onnxslim: constant folding, dead-node removal, fusion of shape chatter. Skipped above 2 GB."""
    if is_large(model):
        if log:
            log("graph cleaning skipped: the model is larger than the 2 GB protobuf limit")
        return model
    import onnxslim

    props = {p.key: p.value for p in model.metadata_props}
    try:
        cleaned = onnxslim.slim(model)
    except Exception as exc:  # a cleaner bug must not block an export; the unslimmed graph is valid
        if log:
            log(f"warning: onnxslim failed ({type(exc).__name__}); keeping the graph as exported")
        return model
    if props:
        import onnx

        onnx.helper.set_model_props(cleaned, props)
    return cleaned


def restore_contract_inputs(model, static_tile: int | None = None) -> None:
    """Every model gets the same six inputs in contract order: the exporters drop inputs a model does
    not use (unet ignores ``exif``), and runtimes feed all six. Unused ones are re-added as inputs."""
    from onnx import TensorProto, helper

    present = {i.name: i for i in model.graph.input}
    others = [i for i in model.graph.input if i.name not in INPUT_NAMES]
    ordered = []
    for name in INPUT_NAMES:
        if name in present:
            ordered.append(present[name])
        else:
            dims = [_static_dim(d, static_tile) for d in INPUT_SHAPES[name]]
            ordered.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    del model.graph.input[:]
    model.graph.input.extend(ordered + others)


def _static_dim(d, static_tile):
    if static_tile is None or not isinstance(d, str):
        return d
    return 1 if d == "N" else static_tile


def name_dimensions(model, output_names) -> None:
    """Canonical names for dynamic dimensions (N, H, W; outputs N, h, w with h = H/2), whatever the
    exporter called them; stale intermediate shapes are dropped and inferred again."""
    def rename(value_info, names):
        dims = value_info.type.tensor_type.shape.dim
        for dim, name in zip(dims, names):
            if isinstance(name, str) and not dim.HasField("dim_value"):
                dim.dim_param = name

    for vi in model.graph.input:
        if vi.name in INPUT_SHAPES:
            rename(vi, INPUT_SHAPES[vi.name])
    for vi in model.graph.output:
        if vi.name in output_names:
            rename(vi, ["N", None, "h", "w"])
    del model.graph.value_info[:]


def iter_nodes(graph):
    """All nodes, including those in subgraphs (If/Loop/Scan bodies)."""
    from onnx import AttributeProto

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from iter_nodes(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_nodes(g)


def op_types(model) -> list[str]:
    """Sorted operator types, ``domain:Op`` for non-standard domains."""
    return sorted({n.op_type if n.domain in STANDARD_DOMAINS else f"{n.domain}:{n.op_type}"
                   for n in iter_nodes(model.graph)})


def check_portable(model) -> None:
    """Refuse graphs that ONNX Runtime, OpenVINO or TensorRT would not all run as a fixed-layout tile model."""
    bad = {}
    for node in iter_nodes(model.graph):
        if node.domain not in STANDARD_DOMAINS:
            bad[f"{node.domain}:{node.op_type}"] = "custom-domain operator"
        elif node.op_type in DATA_DEPENDENT_OPS:
            bad[node.op_type] = "output shape depends on the data"
        elif node.op_type in SEQUENCE_OPS:
            bad[node.op_type] = "sequence/optional type"
    if bad:
        listed = ", ".join(f"{op} ({why})" for op, why in sorted(bad.items()))
        raise RawedgeError(None, f"graph uses operators that not every runtime (ONNX Runtime, OpenVINO, "
                                 f"TensorRT) accepts in a tile model: {listed}")


def check_and_infer(model):
    """onnx's checker (full, with strict shape inference) and shape inference; the inferred model."""
    import onnx

    if is_large(model):
        return model  # checked from the saved file (see ``check_file``)
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RawedgeError(None, f"exported graph fails the ONNX checker: {str(exc).strip().splitlines()[0]}") from None


def check_file(path) -> None:
    """Checker for a model saved with external data (the in-memory checker stops at 2 GB)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RawedgeError(path, f"exported graph fails the ONNX checker: {str(exc).strip().splitlines()[0]}") from None


def finalize(model, output_names, static_tile: int | None = None, log=None):
    """Cleaned, contract-shaped, portable, checked graph."""
    model = slim(model, log)
    restore_contract_inputs(model, static_tile)
    if static_tile is None:
        name_dimensions(model, output_names)
    check_portable(model)
    return check_and_infer(model)
