"""The rawedge metadata of an ONNX file, under ``metadata_props["rawedge"]``: read with rawedge's own
protobuf reader (no ``onnx`` import, no ONNX Runtime session, the graph skipped), written into an
in-memory ``onnx.ModelProto`` together with the hash of the graph it describes."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from rawedge.errors import RawedgeError

from .integrity import proto_sha256
from .protobuf import metadata_props
from .schema import METADATA_KEY, ModelMeta, parse_metadata


def onnx_metadata_text(path: str | os.PathLike) -> str | None:
    """The raw ``rawedge`` metadata string of an ONNX file (None when absent)."""
    path = Path(path)
    if not path.is_file():
        raise RawedgeError(path, "no such model file")
    return metadata_props(path).get(METADATA_KEY)


def read_onnx_metadata(path: str | os.PathLike) -> ModelMeta:
    return parse_metadata(onnx_metadata_text(path), path)


def embed_onnx_metadata(model_proto, meta: ModelMeta) -> ModelMeta:
    """Store ``meta`` in ``model_proto`` (an ``onnx.ModelProto``), keeping its other properties; returns
    what was stored: ``meta`` with ``onnx_weights_sha256`` set to this proto's own hash, which runners
    check on load. The proto's graph must be final: any later change breaks that check."""
    meta = dataclasses.replace(meta, onnx_weights_sha256=proto_sha256(model_proto))
    text = meta.to_json()
    ModelMeta.from_json(text, "model metadata")  # what readers will see must validate
    for prop in model_proto.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = text
            break
    else:
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, text
    return meta
