"""Reading ONNX files straight from the protobuf wire format: no ``onnx`` package (its import alone
costs about a second), no ONNX Runtime session. The one home of rawedge's protobuf reader: the model
hash (metadata.integrity), the metadata read on every model open (metadata.onnx), `rawedge info`'s
header and the FLOP counter's graph (runtimes.flops) all use it.

Files are memory-mapped, so reading the header of a large model costs a few page reads: the graph is
skipped over, not parsed."""
from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field

from rawedge.errors import RawedgeError

# onnx.proto3 field numbers
MODEL_IR_VERSION, MODEL_PRODUCER, MODEL_PRODUCER_VERSION, MODEL_GRAPH, MODEL_OPSET_IMPORT = 1, 2, 3, 7, 8
MODEL_METADATA_PROPS = 14
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_INPUT, GRAPH_OUTPUT = 1, 5, 11, 12
NODE_INPUT, NODE_OUTPUT, NODE_NAME, NODE_OP_TYPE, NODE_ATTRIBUTE, NODE_DOMAIN = 1, 2, 3, 4, 5, 7
ATTR_NAME, ATTR_F, ATTR_I, ATTR_S, ATTR_T, ATTR_FLOATS, ATTR_INTS = 1, 2, 3, 4, 5, 7, 8
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_NAME = 1, 2, 8
VALUE_NAME, VALUE_TYPE = 1, 2
_U64, _I64 = 1 << 64, 1 << 63


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError("truncated or overlong varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def wire_fields(buf, start: int = 0, end: int | None = None):
    """(field number, wire type, value) of one message: an int for varints, else a (start, end) range."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field_no, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = (pos, pos + size), pos + size
        elif wire == 2:
            size, pos = _varint(buf, pos, end)
            value, pos = (pos, pos + size), pos + size
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > end:
            raise WireError("field runs past the end of its message")
        if not 0 < field_no < 1 << 29:
            raise WireError(f"invalid field number {field_no}")
        yield field_no, wire, value


def _signed(v: int) -> int:
    return v - _U64 if v >= _I64 else v


def _text(buf, span, strict: bool = False) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "strict" if strict else "replace")


def _ints(buf, wire: int, value) -> list[int]:
    """A repeated int64 field's values from one occurrence: packed (wire 2) or one varint."""
    if wire == 0:
        return [_signed(value)]
    out, pos, end = [], value[0], value[1]
    while pos < end:
        v, pos = _varint(buf, pos, end)
        out.append(_signed(v))
    return out


class _Mapped:
    """``with _Mapped(path) as buf``: the file's bytes, memory-mapped (a RawedgeError when unreadable)."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        try:
            self._f = open(self.path, "rb")
        except OSError as exc:
            raise RawedgeError(self.path, f"cannot read: {exc.strerror or exc}") from None
        try:
            self._m = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            self._f.close()
            raise RawedgeError(self.path, "not an ONNX model (empty file)") from None
        return self._m

    def __exit__(self, *exc):
        self._m.close()
        self._f.close()


def read_header(path: str | os.PathLike) -> dict:
    """ir_version, producer, opsets and metadata_props of an ONNX file, skipping over the graph.
    Metadata values that are not valid UTF-8 are decoded with replacement characters here (for display);
    :func:`metadata_props` refuses them."""
    out = {"ir_version": None, "producer": "", "producer_version": "", "opsets": {}, "metadata": {}}

    def strings(buf, span) -> dict:
        return {k: (_text(buf, v) if w == 2 else v) for k, w, v in wire_fields(buf, *span)}

    try:
        with _Mapped(path) as buf:
            for number, wire, value in wire_fields(buf):
                if number == MODEL_IR_VERSION and wire == 0:
                    out["ir_version"] = value
                elif wire != 2:
                    continue
                elif number == MODEL_PRODUCER:
                    out["producer"] = _text(buf, value)
                elif number == MODEL_PRODUCER_VERSION:
                    out["producer_version"] = _text(buf, value)
                elif number == MODEL_OPSET_IMPORT:
                    d = strings(buf, value)
                    out["opsets"][d.get(1) or "ai.onnx"] = d.get(2, 0)
                elif number == MODEL_METADATA_PROPS:
                    d = strings(buf, value)
                    out["metadata"][str(d.get(1, ""))] = str(d.get(2, ""))
    except WireError:
        raise RawedgeError(path, "not an ONNX model (unreadable protobuf)") from None
    if out["ir_version"] is None:
        raise RawedgeError(path, "not an ONNX model (no IR version)")
    return out


def metadata_props(path: str | os.PathLike) -> dict[str, str]:
    """An ONNX file's ``metadata_props`` {key: value}, read without parsing its graph. A RawedgeError for
    a file that is not a well-formed ONNX model or whose metadata is not UTF-8 text."""
    props: dict[str, str] = {}
    ir_version = None
    try:
        with _Mapped(path) as buf:
            for number, wire, value in wire_fields(buf):
                if number == MODEL_IR_VERSION and wire == 0:
                    ir_version = value
                elif number == MODEL_METADATA_PROPS and wire == 2:
                    key = val = ""
                    for k, w, v in wire_fields(buf, *value):
                        if w == 2 and k == 1:
                            key = _text(buf, v, strict=True)
                        elif w == 2 and k == 2:
                            val = _text(buf, v, strict=True)
                    props[key] = val
    except WireError as exc:
        raise RawedgeError(path, f"not a readable ONNX model ({exc})") from None
    except UnicodeDecodeError:
        raise RawedgeError(path, "the model's metadata is not valid UTF-8 text (damaged file)") from None
    if ir_version is None:
        raise RawedgeError(path, "not a readable ONNX model (no IR version)")
    return props


# --- the graph, for counting (runtimes.flops) -------------------------------------------------------------
@dataclass
class Node:
    op_type: str
    inputs: list[str]
    outputs: list[str]
    name: str = ""
    domain: str = ""
    attrs: dict = field(default_factory=dict)  # ints, floats, strings, int/float lists; a tensor's dims (tuple)


@dataclass
class Graph:
    nodes: list[Node]
    initializers: dict[str, tuple[int, ...]]  # name -> dims
    inputs: dict[str, tuple]  # graph inputs that are not initializers -> dims (int, or str for symbolic)
    outputs: list[str]


def _attribute(buf, span) -> tuple[str, object]:
    name, value, ints, floats = "", None, [], []
    import struct

    for k, w, v in wire_fields(buf, *span):
        if k == ATTR_NAME and w == 2:
            name = _text(buf, v)
        elif k == ATTR_I and w == 0:
            value = _signed(v)
        elif k == ATTR_F and w == 5:
            value = struct.unpack("<f", bytes(buf[v[0]:v[1]]))[0]
        elif k == ATTR_S and w == 2:
            value = _text(buf, v)
        elif k == ATTR_T and w == 2:  # a tensor: its dims only
            value = _tensor_dims(buf, v)[1]
        elif k == ATTR_INTS:
            ints.extend(_ints(buf, w, v))
        elif k == ATTR_FLOATS and w == 5:
            floats.append(struct.unpack("<f", bytes(buf[v[0]:v[1]]))[0])
        elif k == ATTR_FLOATS and w == 2:
            floats.extend(struct.unpack(f"<{(v[1] - v[0]) // 4}f", bytes(buf[v[0]:v[1]])))
    return name, (ints or floats or value)


def _node(buf, span) -> Node:
    node = Node("", [], [])
    for k, w, v in wire_fields(buf, *span):
        if w != 2:
            continue
        if k == NODE_INPUT:
            node.inputs.append(_text(buf, v))
        elif k == NODE_OUTPUT:
            node.outputs.append(_text(buf, v))
        elif k == NODE_NAME:
            node.name = _text(buf, v)
        elif k == NODE_OP_TYPE:
            node.op_type = _text(buf, v)
        elif k == NODE_DOMAIN:
            node.domain = _text(buf, v)
        elif k == NODE_ATTRIBUTE:
            key, value = _attribute(buf, v)
            node.attrs[key] = value
    return node


def _tensor_dims(buf, span) -> tuple[str, tuple[int, ...]]:
    name, dims = "", []
    for k, w, v in wire_fields(buf, *span):
        if k == TENSOR_NAME and w == 2:
            name = _text(buf, v)
        elif k == TENSOR_DIMS:
            dims.extend(_ints(buf, w, v))
    return name, tuple(dims)


def _value_info(buf, span) -> tuple[str, tuple]:
    """ValueInfoProto -> (name, dims) for a tensor type (dim_value ints, dim_param strings, None)."""
    name, dims = "", ()
    for k, w, v in wire_fields(buf, *span):
        if k == VALUE_NAME and w == 2:
            name = _text(buf, v)
        elif k == VALUE_TYPE and w == 2:
            for tk, tw, tv in wire_fields(buf, *v):  # TypeProto.tensor_type = 1
                if tk != 1 or tw != 2:
                    continue
                for sk, sw, sv in wire_fields(buf, *tv):  # Tensor.shape = 2
                    if sk != 2 or sw != 2:
                        continue
                    out = []
                    for dk, dw, dv in wire_fields(buf, *sv):  # TensorShapeProto.dim = 1
                        if dk != 1 or dw != 2:
                            continue
                        d = None
                        for ek, ew, ev in wire_fields(buf, *dv):  # dim_value = 1, dim_param = 2
                            d = _signed(ev) if ek == 1 and ew == 0 else _text(buf, ev) if ek == 2 and ew == 2 else d
                        out.append(d)
                    dims = tuple(out)
    return name, dims


def read_graph(path: str | os.PathLike) -> Graph:
    """The main graph of an ONNX file: nodes in file order (op type, inputs, outputs, attributes),
    initializer dims, graph input shapes and output names. Weight bytes are not read; subgraphs
    (If/Loop bodies) and functions are not expanded."""
    nodes, inits, inputs, outputs = [], {}, {}, []
    try:
        with _Mapped(path) as buf:
            for number, wire, value in wire_fields(buf):
                if number != MODEL_GRAPH or wire != 2:
                    continue
                for k, w, v in wire_fields(buf, *value):
                    if w != 2:
                        continue
                    if k == GRAPH_NODE:
                        nodes.append(_node(buf, v))
                    elif k == GRAPH_INITIALIZER:
                        name, dims = _tensor_dims(buf, v)
                        inits[name] = dims
                    elif k == GRAPH_INPUT:
                        name, dims = _value_info(buf, v)
                        inputs[name] = dims
                    elif k == GRAPH_OUTPUT:
                        outputs.append(_value_info(buf, v)[0])
    except WireError as exc:
        raise RawedgeError(path, f"not a readable ONNX model ({exc})") from None
    return Graph(nodes, inits, {k: v for k, v in inputs.items() if k not in inits}, outputs)
