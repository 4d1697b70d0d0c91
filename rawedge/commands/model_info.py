"""``rawedge info MODEL``: what an exported model is and how to run it, readable by a person.

Works on a runtime-only install (no torch, no onnx package): ONNX headers are read with a small
protobuf reader, inputs/outputs and ``.ort`` metadata through ONNX Runtime, OpenVINO IR ``rt_info``
through OpenVINO, TensorRT engines from their JSON sidecar (``ENGINE.engine.json`` or ``ENGINE.json``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from rawedge.errors import RawedgeError
from rawedge.model_meta import METADATA_KEY, ModelMeta

# ModelProto field numbers (onnx.proto3) read by ``onnx_header``.
_IR_VERSION, _PRODUCER, _PRODUCER_VERSION, _OPSET_IMPORT, _METADATA_PROPS = 1, 2, 3, 8, 14


def _varint(f) -> int:
    shift = result = 0
    while True:
        b = f.read(1)
        if not b:
            raise EOFError
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes):
    """(field number, value) of a small embedded message (strings/ints only)."""
    import io

    f = io.BytesIO(data)
    while f.tell() < len(data):
        key = _varint(f)
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, _varint(f)
        elif wire == 2:
            yield number, f.read(_varint(f))
        else:
            raise ValueError(f"unexpected wire type {wire}")


def onnx_header(path: str | os.PathLike) -> dict:
    """ir_version, producer, opsets and metadata_props of an ONNX file, skipping over the graph (so a
    large model costs a few seeks, not a parse)."""
    out = {"ir_version": None, "producer": "", "producer_version": "", "opsets": {}, "metadata": {}}
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as f:
            while f.tell() < size:
                key = _varint(f)
                number, wire = key >> 3, key & 7
                if wire == 0:
                    value = _varint(f)
                    if number == _IR_VERSION:
                        out["ir_version"] = value
                elif wire == 2:
                    length = _varint(f)
                    if number in (_PRODUCER, _PRODUCER_VERSION, _OPSET_IMPORT, _METADATA_PROPS):
                        data = f.read(length)
                        if number == _PRODUCER:
                            out["producer"] = data.decode("utf-8", "replace")
                        elif number == _PRODUCER_VERSION:
                            out["producer_version"] = data.decode("utf-8", "replace")
                        else:
                            d = dict(_fields(data))
                            if number == _OPSET_IMPORT:
                                out["opsets"][d.get(1, b"").decode() or "ai.onnx"] = d.get(2, 0)
                            else:
                                out["metadata"][d.get(1, b"").decode("utf-8", "replace")] = \
                                    d.get(2, b"").decode("utf-8", "replace")
                    else:
                        f.seek(length, os.SEEK_CUR)
                elif wire == 5:
                    f.seek(4, os.SEEK_CUR)
                elif wire == 1:
                    f.seek(8, os.SEEK_CUR)
                else:
                    raise ValueError(f"unexpected wire type {wire}")
                if f.tell() > size:
                    raise EOFError
    except (EOFError, ValueError, UnicodeDecodeError):
        raise RawedgeError(path, "not an ONNX model (unreadable protobuf)") from None
    if out["ir_version"] is None:
        raise RawedgeError(path, "not an ONNX model (no IR version)")
    return out


def _ort_io(path) -> tuple[list[str], list[str], dict]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        s = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise RawedgeError(path, f"ONNX Runtime cannot open it ({str(exc).strip().splitlines()[0][:200]})") from None

    def fmt(arg):
        dims = ",".join("?" if d is None else str(d) for d in arg.shape)
        dtype = arg.type.removeprefix("tensor(").removesuffix(")")
        return f"{arg.name} [{dims}] {'float32' if dtype == 'float' else dtype}"

    return ([fmt(i) for i in s.get_inputs()], [fmt(o) for o in s.get_outputs()],
            dict(s.get_modelmeta().custom_metadata_map))


def _openvino_io(path) -> tuple[list[str], list[str], str | None]:
    import openvino as ov

    model = ov.Core().read_model(os.fspath(path))

    def fmt(port):
        shape = str(port.get_partial_shape()).replace(" ", "")
        names = sorted(port.get_names(), key=lambda n: ("/" in n, len(n), n)) or [port.get_any_name()]
        return f"{names[0]} {shape} {port.get_element_type().get_type_name()}"

    text = None
    for key in (["framework", METADATA_KEY], [METADATA_KEY]):
        if model.has_rt_info(key):
            text = model.get_rt_info(key).astype(str)
            break
    return [fmt(p) for p in model.inputs], [fmt(p) for p in model.outputs], text


def _sidecar(path: Path) -> str | None:
    for candidate in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if candidate.is_file():
            text = candidate.read_text()
            try:
                d = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(d, dict) and METADATA_KEY in d and isinstance(d[METADATA_KEY], (dict, str)):
                v = d[METADATA_KEY]
                return v if isinstance(v, str) else json.dumps(v)
            return text
    return None


def _size(path: Path) -> str:
    n = path.stat().st_size
    for extra in (path.with_name(path.name + ".data"), path.with_suffix(".bin") if path.suffix == ".xml" else None):
        if extra is not None and extra.is_file():
            n += extra.stat().st_size
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _short(v, width: int = 48) -> str:
    text = json.dumps(v) if isinstance(v, (dict, list)) else str(v)
    return text if len(text) <= width else text[: width - 3] + "..."


def _kv(d: dict, limit: int = 8) -> str:
    if not d:
        return "none"
    items = [f"{k}={_short(v)}" for k, v in sorted(d.items())]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "  ".join(items[:limit]) + more


def _fmt_err(v) -> str:
    return "n/a" if v is None else f"{v:.2e}"


def _parity_lines(parity: dict) -> list[str]:
    if not parity or not parity.get("checked", bool(parity)):
        return ["parity       not checked at export"]
    tol = parity.get("tolerance", {})
    tol_text = ", ".join(f"max abs {v:g}" if k == "max_abs" else f"PSNR >= {v:g} dB" if k == "min_psnr_db"
                         else f"{k} {v}" for k, v in tol.items())
    lines = [(f"parity       vs PyTorch on {parity.get('photo', '?')} ({parity.get('profile', '?')}), "
              f"{parity.get('precision', 'fp32')}, tolerance {tol_text or '?'}")]
    for name, b in (parity.get("backends") or {}).items():
        p = b.get("min_psnr_db")
        cases = b.get("cases") or []
        lines.append(f"  {b.get('backend', name):<22} max abs {_fmt_err(b.get('max_abs'))}   "
                     f"min PSNR {'exact' if p is None else f'{p:.1f} dB'}   ({len(cases)} cases: "
                     f"{', '.join(c.get('case', '?') for c in cases)})")
    return lines


def _meta_lines(meta: ModelMeta) -> list[str]:
    rf = (meta.metrics or {}).get("receptive_field") or {}
    metrics = {k: v for k, v in (meta.metrics or {}).items() if k != "receptive_field"}
    shape = f"static tile {meta.static_tile}x{meta.static_tile}, batch 1" if meta.static_tile else "dynamic batch and size"
    contract = (f"contract     v{meta.contract_version}   align {meta.align}   tile {meta.tile}   "
                f"overlap {meta.overlap}   thumb {meta.thumb_size}x{meta.thumb_size}   {shape}")
    lines = [f"config       {_kv(meta.config, limit=32)}", contract]
    if rf:
        lines.append(f"receptive    output changes up to {rf.get('support_px')} px from an input change, "
                     f"{rf.get('mass_fraction', 0.999):.1%} within {rf.get('margin_px')} px")
    cams = ", ".join(p.get("name", "?") for p in meta.camera_profiles) or "none"
    lines += [f"cameras      {cams}",
              f"exif facts   {_kv(meta.exif_facts)}",
              f"weights      sha256 {meta.weights_sha256 or 'none'}",
              f"recipe       {_kv(meta.recipe)}",
              f"metrics      {_kv(metrics)}"]
    if meta.fusion:
        lines.append(f"fusion       {_kv(meta.fusion)}")
    if meta.calibration:
        lines.append(f"calibration  {_kv(meta.calibration)}")
    return lines + _parity_lines(meta.parity)


def describe_model(path: str | os.PathLike) -> list[str]:
    """Lines describing an .onnx, .ort, OpenVINO .xml or TensorRT .engine model."""
    path = Path(path)
    if not path.is_file():
        raise RawedgeError(path, "no such file")
    suffix = path.suffix.lower()
    header = None
    if suffix == ".onnx":
        header = onnx_header(path)
        inputs, outputs, props = _ort_io(path)
        text = props.get(METADATA_KEY, header["metadata"].get(METADATA_KEY))
        opsets = ", ".join(f"{d} {v}" for d, v in sorted(header["opsets"].items()))
        kind = f"ONNX (IR {header['ir_version']}, opset {opsets}; by {header['producer']} {header['producer_version']})"
    elif suffix == ".ort":
        inputs, outputs, props = _ort_io(path)
        text, kind = props.get(METADATA_KEY), "ONNX Runtime ORT format"
    elif suffix == ".xml":
        inputs, outputs, text = _openvino_io(path)
        kind = "OpenVINO IR"
    elif suffix in (".engine", ".plan", ".trt"):
        inputs, outputs, text = [], [], _sidecar(path)
        kind = "TensorRT engine"
    else:
        raise RawedgeError(path, "not a model file (.onnx, .ort, .xml or .engine)")
    lines = []
    if text is None:
        lines.append(f"{path}: {kind}, {_size(path)}: no rawedge metadata (not made by `rawedge export`)")
    else:
        meta = ModelMeta.from_json(text, str(path))
        lines.append(f"{path}: rawedge model '{meta.model_name}' ({meta.precision}), {kind}, {_size(path)}, "
                     f"made with rawedge {meta.rawedge_version or '?'}")
    if inputs:
        lines.append("inputs       " + " | ".join(inputs))
        lines.append("outputs      " + " | ".join(outputs))
    elif suffix in (".engine", ".plan", ".trt"):
        lines.append("inputs       (shown by the TensorRT runtime; the engine is tied to its GPU)")
    if text is not None:
        lines += _meta_lines(meta)
    return lines
