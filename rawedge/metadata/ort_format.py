"""The rawedge metadata of an ONNX Runtime ``.ort`` file, read straight from its FlatBuffers layout
(ONNX Runtime's ort.fbs: ``InferenceSession.model.metadata_props``), so reading it needs no ONNX
Runtime session."""
from __future__ import annotations

import os
import struct

from rawedge.errors import RawedgeError

from .schema import METADATA_KEY

IDENTIFIER = b"ORTM"
SESSION_MODEL = 1  # InferenceSession: ort_version, model, ...
MODEL_METADATA_PROPS = 9  # Model: ir_version, opset_import, ..., graph_doc_string, metadata_props
ENTRY_KEY, ENTRY_VALUE = 0, 1  # StringStringEntry


class _Buffer:
    """Bounds-checked FlatBuffers access (a damaged file gives a ValueError, never a wrong read)."""

    def __init__(self, data: bytes):
        self.data = data

    def word(self, pos: int, fmt: str = "<I") -> int:
        if not 0 <= pos <= len(self.data) - 4:
            raise ValueError("offset out of range")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def field(self, table: int, index: int) -> int | None:
        """Where field ``index`` of the table at ``table`` is stored, or None when it is absent."""
        vtable = table - self.word(table, "<i")  # a table starts with the signed offset of its vtable
        if not 0 <= vtable <= len(self.data) - 4:
            raise ValueError("vtable out of range")
        size = struct.unpack_from("<H", self.data, vtable)[0]
        slot = 4 + 2 * index
        if slot + 2 > size or vtable + slot + 2 > len(self.data):
            return None
        offset = struct.unpack_from("<H", self.data, vtable + slot)[0]
        return table + offset if offset else None

    def target(self, pos: int) -> int:
        return pos + self.word(pos)

    def vector(self, pos: int) -> list[int]:
        start = self.target(pos)
        count = self.word(start)
        if start + 4 + 4 * count > len(self.data):
            raise ValueError("vector out of range")
        return [start + 4 + 4 * i for i in range(count)]

    def string(self, pos: int) -> str:
        start = self.target(pos)
        end = start + 4 + self.word(start)
        if end > len(self.data):
            raise ValueError("string out of range")
        return self.data[start + 4:end].decode("utf-8")


def ort_metadata_text(path: str | os.PathLike) -> str | None:
    """The raw ``rawedge`` metadata string of an ``.ort`` file (None when absent)."""
    try:
        with open(path, "rb") as f:
            buf = _Buffer(f.read())
    except OSError as exc:
        raise RawedgeError(path, f"cannot read: {exc.strerror or exc}") from None
    if buf.data[4:8] != IDENTIFIER:
        raise RawedgeError(path, "not an ONNX Runtime ORT-format model")
    try:
        model = buf.field(buf.target(0), SESSION_MODEL)
        props = buf.field(buf.target(model), MODEL_METADATA_PROPS) if model is not None else None
        for entry in buf.vector(props) if props is not None else []:
            table = buf.target(entry)
            key, value = buf.field(table, ENTRY_KEY), buf.field(table, ENTRY_VALUE)
            if key is not None and buf.string(key) == METADATA_KEY:
                return buf.string(value) if value is not None else ""
    except UnicodeDecodeError:
        raise RawedgeError(path, "the model's metadata is not valid UTF-8 text (damaged file)") from None
    except ValueError as exc:
        raise RawedgeError(path, f"not a readable ORT-format model ({exc})") from None
    return None
