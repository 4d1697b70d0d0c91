"""Reading a model's ``rawedge`` metadata without running it, and hashing model files (cache keys)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rawedge.errors import RawedgeError
from rawedge.model_meta import METADATA_KEY, ModelMeta

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
    """The raw ``rawedge`` metadata string of an ONNX file (None when absent).

    Uses the ``onnx`` package when installed (reads the header without external weights), else an
    ONNX Runtime session with graph optimisation off (onnxruntime is always installed)."""
    path = Path(path)
    if not path.is_file():
        raise RawedgeError(path, "no such model file")
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            model = onnx.load(os.fspath(path), load_external_data=False)
        except Exception as exc:
            raise RawedgeError(path, f"not a readable ONNX model ({type(exc).__name__})") from None
        try:
            return next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
        except UnicodeDecodeError:
            raise RawedgeError(path, "the model's metadata is not valid UTF-8 text (damaged file)") from None
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RawedgeError(path, f"not a readable ONNX model ({type(exc).__name__})") from None
    return session_properties(session, path).get(METADATA_KEY)


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
