"""Writing ONNX files that are never half-written, including models over the 2 GB protobuf limit
(weights in ``MODEL.onnx.data`` next to the graph)."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from rawedge.export.clean import check_file, is_large

from rawedge.errors import RawedgeError
from rawedge.io.atomic import atomic_output, check_output_dir, temp_prefix


def external_data_name(path: str | os.PathLike) -> str:
    return Path(path).name + ".data"


def save_model(model, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` atomically; large models also write ``path.data`` (renamed first, so
    the graph never points at a missing or partial weights file)."""
    import onnx

    path = Path(path)
    if not is_large(model):
        with atomic_output(path) as tmp:
            Path(tmp).write_bytes(model.SerializeToString())
        return path
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # saving with external data rewrites the tensors of the model it is given
    data_name = external_data_name(path)
    with staging_dir(path) as stage:
        staged = stage / path.name
        onnx.save_model(copy, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        check_file(staged)
        try:
            os.replace(stage / data_name, path.parent / data_name)
            os.replace(staged, path)
        except OSError as exc:
            raise RawedgeError(path, f"cannot write: {exc.strerror or exc}") from None
    return path


@contextlib.contextmanager
def staging_dir(near: str | os.PathLike):
    """A temporary folder beside ``near`` (same file system, so its files can be renamed into place);
    removed with whatever is left in it."""
    target = check_output_dir(near)
    stage = Path(tempfile.mkdtemp(prefix=temp_prefix(), dir=target.parent))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)

