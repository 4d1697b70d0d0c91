"""Hashes of model files, computed without the ``onnx`` package or an ONNX Runtime session.

``onnx_sha256``: sha256 over everything in an ONNX model except its ``metadata_props`` (graph, nodes,
constants, weights, opsets, functions), with external-data weights read from their files, so the same
model saved inline or with ``MODEL.onnx.data`` has the same hash. `rawedge export` records it in the
metadata (``onnx_weights_sha256``) and the runtimes check it before use (runtimes.integrity). It is
computed from the protobuf wire format (metadata.protobuf): the runtime install has neither ``onnx``
nor a protobuf schema for ONNX.

``file_sha256``: of a file's bytes (the TensorRT engine cache's key and sidecar)."""
from __future__ import annotations

import hashlib
import mmap
import os
import struct
from pathlib import Path

from rawedge.errors import RawedgeError

from .protobuf import GRAPH_INITIALIZER, MODEL_GRAPH, MODEL_METADATA_PROPS, WireError, wire_fields

TENSOR_RAW_DATA, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 9, 13, 14
EXTERNAL = 1
_U64 = (1 << 64) - 1


def _record(h, buf, field: int, wire: int, value) -> None:
    """One field into the hash, in a form that does not depend on how it was framed."""
    if wire == 0:
        h.update(struct.pack("<IBQ", field, 0, value & _U64))
    else:
        s, e = value
        h.update(struct.pack("<IBQ", field, wire, e - s))
        h.update(memoryview(buf)[s:e])


def _tensor_digest(buf, start: int, end: int, base_dir: Path | None) -> bytes:
    """A TensorProto's digest: every field but its data framing, plus the data bytes themselves (inline
    ``raw_data`` or the external-data slice they were moved to)."""
    h = hashlib.sha256(b"tensor")
    raw = None
    external: dict[str, str] = {}
    location = 0
    for field, wire, value in wire_fields(buf, start, end):
        if field == TENSOR_RAW_DATA and wire == 2:
            raw = value
        elif field == TENSOR_EXTERNAL_DATA and wire == 2:
            entry = {k: bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
                     for k, w, v in wire_fields(buf, *value) if w == 2}
            external[entry.get(1, "")] = entry.get(2, "")
        elif field == TENSOR_DATA_LOCATION and wire == 0:
            location = value
        else:
            _record(h, buf, field, wire, value)
    if location == EXTERNAL:
        data = _external_bytes(external, base_dir)
        h.update(struct.pack("<IBQ", TENSOR_RAW_DATA, 2, len(data)))
        h.update(data)
    elif raw is not None:
        _record(h, buf, TENSOR_RAW_DATA, 2, raw)
    return h.digest()


def _external_bytes(entries: dict[str, str], base_dir: Path | None) -> bytes:
    location = entries.get("location", "")
    if base_dir is None or not location:
        raise WireError("external data without a location")
    path = base_dir / location
    try:
        offset, length = int(entries.get("offset") or 0), entries.get("length")
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(int(length)) if length else fh.read()
    except (OSError, ValueError) as exc:
        raise WireError(f"external data {location}: {exc}") from None
    if length and len(data) != int(length):
        raise WireError(f"external data {location} is truncated")
    return data


def _graph_digest(buf, start: int, end: int, base_dir: Path | None) -> bytes:
    h = hashlib.sha256(b"graph")
    for field, wire, value in wire_fields(buf, start, end):
        if field == GRAPH_INITIALIZER and wire == 2:
            h.update(struct.pack("<IB", field, 9) + _tensor_digest(buf, *value, base_dir))
        else:
            _record(h, buf, field, wire, value)
    return h.digest()


def _model_sha256(buf, base_dir: Path | None) -> str:
    h = hashlib.sha256(b"rawedge-onnx-v1")
    for field, wire, value in wire_fields(buf):
        if field == MODEL_METADATA_PROPS:
            continue
        if field == MODEL_GRAPH and wire == 2:
            h.update(struct.pack("<IB", field, 9) + _graph_digest(buf, *value, base_dir))
        else:
            _record(h, buf, field, wire, value)
    return h.hexdigest()


def onnx_sha256(path: str | os.PathLike) -> str:
    """The hash of the ONNX file at ``path`` (external data read from beside it)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise WireError("empty file")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _model_sha256(buf, path.parent)
    except OSError as exc:
        raise RawedgeError(path, f"cannot read: {exc.strerror or exc}") from None
    except WireError as exc:
        raise RawedgeError(path, f"not a well-formed ONNX file ({exc})") from None


def proto_sha256(model_proto) -> str:
    """The same hash of an in-memory ``onnx.ModelProto`` (its weights inline), for the exporter to record.

    Works field by field, so models over the 2 GB protobuf limit (which cannot be serialised whole) are
    hashed too; the result equals ``onnx_sha256`` of the file ``onnx.save`` writes."""
    h = hashlib.sha256(b"rawedge-onnx-v1")
    for field, wire, value in _proto_fields(model_proto):
        if field == MODEL_METADATA_PROPS:
            continue
        if field == MODEL_GRAPH:
            graph = hashlib.sha256(b"graph")
            for g_field, g_wire, g_value in _proto_fields(model_proto.graph):
                if g_field == GRAPH_INITIALIZER:
                    digest = _tensor_digest(g_value, 0, len(g_value), None)
                    graph.update(struct.pack("<IB", g_field, 9) + digest)
                else:
                    _record_value(graph, g_field, g_wire, g_value)
            h.update(struct.pack("<IB", field, 9) + graph.digest())
        else:
            _record_value(h, field, wire, value)
    return h.hexdigest()


def _record_value(h, field: int, wire: int, value) -> None:
    _record(h, value, field, wire, value if wire == 0 else (0, len(value)))


def _proto_fields(message):
    """(field number, wire type, bytes or int) of a message's set fields, in wire (field number) order;
    submessages are serialised one at a time."""
    from google.protobuf.descriptor import FieldDescriptor as F

    fixed = {F.TYPE_DOUBLE: (1, "<d"), F.TYPE_FIXED64: (1, "<Q"), F.TYPE_SFIXED64: (1, "<q"),
             F.TYPE_FLOAT: (5, "<f"), F.TYPE_FIXED32: (5, "<I"), F.TYPE_SFIXED32: (5, "<i")}
    for desc, value in message.ListFields():
        repeated = desc.is_repeated if hasattr(desc, "is_repeated") else desc.label == F.LABEL_REPEATED
        for v in (value if repeated else [value]):
            if desc.type in (F.TYPE_MESSAGE, F.TYPE_GROUP):
                yield desc.number, 2, v.SerializeToString()
            elif desc.type == F.TYPE_STRING:
                yield desc.number, 2, v.encode("utf-8")
            elif desc.type == F.TYPE_BYTES:
                yield desc.number, 2, bytes(v)
            elif desc.type in fixed:
                wire, fmt = fixed[desc.type]
                yield desc.number, wire, struct.pack(fmt, v)
            else:  # varints: int32/64, uint32/64, bool, enum (ONNX uses no sint32/64)
                yield desc.number, 0, int(v)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
