"""Reading a model's ``rawedge`` metadata without running it, and hashing model files (cache keys)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rawedge.errors import RawedgeError
from rawedge.metadata.schema import METADATA_KEY, ModelMeta

NO_METADATA = ("has no rawedge metadata (metadata_props['rawedge']); it was not exported by "
               "`rawedge export`, so its tile alignment and camera profiles are unknown")


def parse_metadata(text: str | None, source: str | os.PathLike) -> ModelMeta:
    """The ModelMeta of ``source``, or a clear error when the model carries none."""
    if not text:
        raise RawedgeError(source, NO_METADATA)
    return ModelMeta.from_json(text, os.fspath(source))


def session_properties(session, source: str | os.PathLike) -> dict[str, str]:
    """An ONNX Runtime session's ``metadata_props`` (ONNX Runtime raises UnicodeDecodeError on a
    damaged, non-UTF-8 value: a clear error instead)."""
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError:
        raise RawedgeError(source, "the model's metadata is not valid UTF-8 text (damaged file)") from None


def onnx_metadata_text(path: str | os.PathLike) -> str | None:
    """The raw ``rawedge`` metadata string of an ONNX file (None when absent), read from the protobuf
    wire format (runtimes.onnx_proto): no ``onnx`` import, no ONNX Runtime session, the graph skipped."""
    from .onnx_proto import metadata_props

    path = Path(path)
    if not path.is_file():
        raise RawedgeError(path, "no such model file")
    return metadata_props(path).get(METADATA_KEY)


def read_onnx_metadata(path: str | os.PathLike) -> ModelMeta:
    return parse_metadata(onnx_metadata_text(path), path)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def user_cache_dir(*parts: str) -> Path:
    """Where rawedge caches compiled models: $RAWEDGE_CACHE_DIR, else $XDG_CACHE_HOME/rawedge, else
    ~/.cache/rawedge (created on demand)."""
    root = os.environ.get("RAWEDGE_CACHE_DIR")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "rawedge")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
