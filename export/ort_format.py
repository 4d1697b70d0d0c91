"""The ``.ort`` file for ONNX Runtime's minimal and mobile builds, made by ORT's own converter."""
from __future__ import annotations

import contextlib
import io
import logging
import shutil
from pathlib import Path

from rawedge.errors import RawedgeError


def convert_to_ort(onnx_path: Path, work_dir: Path) -> Path:
    """Convert ``onnx_path`` (fixed optimisation style, ORT's default level, no platform-specific
    layouts) into ``work_dir``; the path of the ``.ort`` file."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    src = work_dir / "model.onnx"
    if Path(onnx_path) != src:
        shutil.copyfile(onnx_path, src)
    out_dir = work_dir / "ort"
    out_dir.mkdir(exist_ok=True)
    chatter = io.StringIO()  # the converter prints progress on stdout and logs its config file
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)  # and logs an INFO line about the operator config it writes
    try:
        with contextlib.redirect_stdout(chatter):
            convert_onnx_models_to_ort(src, output_dir=out_dir, optimization_styles=[OptimizationStyle.Fixed])
    except Exception as exc:
        raise RawedgeError(onnx_path, f"ORT-format conversion failed: {str(exc).strip().splitlines()[0][:200]}") from None
    finally:
        logging.disable(previous)
    found = sorted(out_dir.glob("*.ort"))
    if not found:
        raise RawedgeError(onnx_path, f"ORT-format conversion wrote no .ort file ({chatter.getvalue().strip()[-200:]})")
    return found[0]
