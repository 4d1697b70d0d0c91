"""The rawedge metadata of an OpenVINO IR, kept in the model's ``rt_info``: read from the ``.xml``
with the standard library (no ``openvino`` import), written into an ``ov.Model`` before it is saved.

Two entries can hold it: ``framework/rawedge``, where OpenVINO keeps an ONNX file's ``metadata_props``
(``ov.save_model`` carries it into the IR), and a top-level ``rawedge`` entry, where `rawedge
calibrate` writes the INT8 artefact's own metadata. The top-level one wins: the "framework" entry of
an INT8 IR still holds the metadata of the FP32 ONNX it was converted from."""
from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET

from rawedge.errors import RawedgeError

from .schema import METADATA_KEY, ModelMeta

RT_INFO_PATHS = ((METADATA_KEY,), ("framework", METADATA_KEY))


def ir_metadata_text(path: str | os.PathLike) -> str | None:
    """The raw ``rawedge`` metadata string of an IR's ``.xml`` (None when absent)."""
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise RawedgeError(path, f"cannot read: {exc.strerror or exc}") from None
    except ET.ParseError as exc:
        raise RawedgeError(path, f"not an OpenVINO IR (unreadable XML: {exc})") from None
    if root.tag != "net":
        raise RawedgeError(path, f"not an OpenVINO IR (its root element is <{root.tag}>, not <net>)")
    rt_info = root.find("rt_info")
    for keys in RT_INFO_PATHS if rt_info is not None else ():
        entry = rt_info.find("/".join(keys))
        if entry is not None and "value" in entry.attrib:
            return entry.attrib["value"]
    return None


def set_ir_metadata(model, meta: ModelMeta) -> None:
    """Store ``meta`` in an ``ov.Model``'s top-level rt_info entry (``ov.save_model`` writes it)."""
    if meta.onnx_weights_sha256:  # the FP32 ONNX's hash says nothing about an IR
        meta = dataclasses.replace(meta, onnx_weights_sha256="")
    model.set_rt_info(meta.to_json(), METADATA_KEY)
