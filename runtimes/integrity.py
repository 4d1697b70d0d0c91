"""Is this model file, or this INT8/FP16 variant of it, what its metadata says it is?

``open_runner`` (so ``Reconstructor.open``, `rawedge infer` and `rawedge bench`) refuses an ONNX file
whose graph or weights do not match the ``onnx_weights_sha256`` recorded at export (metadata.integrity
computes it), with the reason. (Runner classes built directly, as the calibration stage does for its
intermediate files, are not checked.)

INT8 artefacts (`rawedge calibrate`) and FP16 exports found next to a model are matched to it by model
name and the PyTorch weights' sha256 (``weights_sha256``), which every variant carries unchanged."""
from __future__ import annotations

import os
from pathlib import Path

from rawedge.errors import RawedgeError
from rawedge.metadata.integrity import onnx_sha256
from rawedge.metadata.schema import ModelMeta


def verify_onnx(path: str | os.PathLike, meta: ModelMeta) -> None:
    """Refuse an ONNX file whose content does not match the hash recorded in its metadata at export.
    Files without a recorded hash (older exports) and calibrated artefacts (rewritten by calibration,
    matched to their model by ``check_variant``) are not checked."""
    expected = meta.onnx_weights_sha256
    if not expected or meta.calibration:
        return
    actual = onnx_sha256(path)
    if actual != expected:
        raise RawedgeError(path, f"graph or weights do not match the sha256 recorded at export "
                                 f"({actual[:12]}… instead of {expected[:12]}…): the file was modified or "
                                 f"damaged after `rawedge export`; export it again")


def check_variant(model_path: str | os.PathLike, model_meta: ModelMeta, variant_path: str | os.PathLike,
                  variant_meta: ModelMeta, what: str) -> None:
    """Refuse ``variant_path`` (an INT8 artefact or FP16 export found next to ``model_path``) when it was
    made from another model: its model name or PyTorch weights differ."""
    variant_path = Path(variant_path)
    problems = []
    if variant_meta.model_name != model_meta.model_name:
        problems.append(f"it is a {variant_meta.model_name!r} model, {Path(model_path).name} is "
                        f"{model_meta.model_name!r}")
    a, b = variant_meta.weights_sha256, model_meta.weights_sha256
    if a and b and a != b:
        problems.append(f"it was made from weights {a[:12]}…, {Path(model_path).name} has {b[:12]}…")
    if problems:
        raise RawedgeError(variant_path, f"this {what} belongs to another model ({'; '.join(problems)}); "
                                         f"remove it or make it again from {Path(model_path).name}")
