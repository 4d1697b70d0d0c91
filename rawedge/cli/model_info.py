"""``rawedge info MODEL``: what an exported model is and how to run it, readable by a person.

Works on a runtime-only install (no torch, no onnx package): the metadata of every kind of model file
is read by rawedge.metadata (ONNX headers with its protobuf reader, TensorRT engines from their JSON
sidecar, ``ENGINE.engine.json`` or ``ENGINE.json``), inputs and outputs through ONNX Runtime or OpenVINO.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from rawedge.errors import RawedgeError
from rawedge.metadata.protobuf import read_header
from rawedge.metadata.read import model_metadata_text
from rawedge.metadata.schema import ModelMeta
from rawedge.metrics import PSNR_CAP_DB


def _ort_io(path) -> tuple[list[str], list[str]]:
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

    return [fmt(i) for i in s.get_inputs()], [fmt(o) for o in s.get_outputs()]


def _openvino_io(path) -> tuple[list[str], list[str], str | None]:
    import openvino as ov

    model = ov.Core().read_model(os.fspath(path))

    def fmt(port):
        shape = str(port.get_partial_shape()).replace(" ", "")
        names = sorted(port.get_names(), key=lambda n: ("/" in n, len(n), n)) or [port.get_any_name()]
        return f"{names[0]} {shape} {port.get_element_type().get_type_name()}"

    return [fmt(p) for p in model.inputs], [fmt(p) for p in model.outputs], _openvino_precision(model)


def _openvino_precision(model) -> str | None:
    """What the IR's graph says: "int8" when it has FakeQuantize operations (NNCF's INT8), "fp16" when
    its weights are half precision, else None (the metadata's word stands)."""
    types = [op.get_type_name() for op in model.get_ops()]
    if "FakeQuantize" in types:
        return "int8"
    if any(op.get_type_name() == "Constant" and op.get_element_type().get_type_name() == "f16"
           for op in model.get_ops()):
        return "fp16"
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
    return "n/a" if v is None else _num(v, ".2e")


def _dict(v) -> dict:
    """Free-form metadata (parity, metrics) as written by export; anything else shows as empty."""
    return v if isinstance(v, dict) else {}


def _num(v, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _parity_lines(parity: dict) -> list[str]:
    if not parity or not parity.get("checked", bool(parity)):
        return ["parity       not checked at export"]
    tol = _dict(parity.get("tolerance"))
    tol_text = ", ".join(f"max abs {_num(v, 'g')}" if k == "max_abs" else f"PSNR >= {_num(v, 'g')} dB"
                         if k == "min_psnr_db" else f"{k} {v}" for k, v in tol.items())
    lines = [(f"parity       vs PyTorch on {parity.get('photo', '?')} ({parity.get('profile', '?')}), "
              f"{parity.get('precision', 'fp32')}, tolerance {tol_text or '?'}")]
    for name, b in _dict(parity.get("backends")).items():
        b = _dict(b)
        p = b.get("min_psnr_db")
        psnr = f">= {PSNR_CAP_DB:g} dB" if p is None else _num(p, ".1f") + " dB"  # None: at the metrics' cap
        cases = [_dict(c) for c in b.get("cases") or [] if isinstance(b.get("cases"), list)]
        lines.append(f"  {b.get('backend', name)!s:<22} max abs {_fmt_err(b.get('max_abs'))}   "
                     f"min PSNR {psnr}   ({len(cases)} cases: "
                     f"{', '.join(str(c.get('case', '?')) for c in cases)})")
    return lines


def _meta_lines(meta: ModelMeta) -> list[str]:
    rf = _dict((meta.metrics or {}).get("receptive_field"))
    metrics = {k: v for k, v in (meta.metrics or {}).items() if k != "receptive_field"}
    shape = f"static tile {meta.static_tile}x{meta.static_tile}, batch 1" if meta.static_tile else "dynamic batch and size"
    contract = (f"contract     v{meta.contract_version}   align {meta.align}   tile {meta.tile}   "
                f"overlap {meta.overlap}   thumb {meta.thumb_size}x{meta.thumb_size}   {shape}")
    lines = [f"config       {_kv(meta.config, limit=32)}", contract]
    if rf:
        lines.append(f"receptive    output changes up to {rf.get('support_px')} px from an input change, "
                     f"{_num(rf.get('mass_fraction', 0.999), '.1%')} within {rf.get('margin_px')} px")
    cams = ", ".join(str(p.get("name", "?")) for p in meta.camera_profiles) or "none"
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


def _compute_line(path: Path, meta: ModelMeta | None) -> str:
    """'compute  N kFLOP per input pixel (tile T; global branch M MFLOP per photo)', from the graph
    (runtimes.flops: convolutions and matrix products, 2 FLOPs per multiply-add)."""
    from rawedge.runtimes.flops import count_flops

    tile = (meta.static_tile or meta.tile) if meta is not None else None
    try:
        count = count_flops(path, tile=tile)
    except RawedgeError as exc:
        return f"compute      not counted ({exc.problem})"
    return (f"compute      {count.summary()}; elementwise ops {count.elementwise_per_pixel:.0f} FLOP per pixel "
            f"more")


def describe_model(path: str | os.PathLike) -> list[str]:
    """Lines describing an .onnx, .ort, OpenVINO .xml or TensorRT .engine model."""
    path = Path(path)
    if not path.is_file():
        raise RawedgeError(path, "no such file")
    suffix = path.suffix.lower()
    header = graph_precision = None
    if suffix == ".onnx":
        header = read_header(path)
        inputs, outputs = _ort_io(path)
        opsets = ", ".join(f"{d} {v}" for d, v in sorted(header["opsets"].items()))
        kind = f"ONNX (IR {header['ir_version']}, opset {opsets}; by {header['producer']} {header['producer_version']})"
    elif suffix == ".ort":
        inputs, outputs = _ort_io(path)
        kind = "ONNX Runtime ORT format"
    elif suffix == ".xml":
        inputs, outputs, graph_precision = _openvino_io(path)
        kind = "OpenVINO IR"
    elif suffix in (".engine", ".plan", ".trt"):
        inputs, outputs = [], []
        kind = "TensorRT engine"
    else:
        raise RawedgeError(path, "not a model file (.onnx, .ort, .xml or .engine)")
    text = model_metadata_text(path)
    lines = []
    if text is None:
        lines.append(f"{path}: {kind}, {_size(path)}: no rawedge metadata (not made by `rawedge export`)")
    else:
        meta = ModelMeta.from_json(text, str(path))
        precision = graph_precision or meta.precision
        lines.append(f"{path}: rawedge model '{meta.model_name}' ({precision}), {kind}, {_size(path)}, "
                     f"made with rawedge {meta.rawedge_version or '?'}")
    if inputs:
        lines.append("inputs       " + " | ".join(inputs))
        lines.append("outputs      " + " | ".join(outputs))
    elif suffix in (".engine", ".plan", ".trt"):
        lines.append("inputs       (shown by the TensorRT runtime; the engine is tied to its GPU)")
    if suffix == ".onnx":
        lines.append(_compute_line(path, meta if text is not None else None))
    if text is not None:
        lines += _meta_lines(meta)
        if suffix == ".onnx" and meta.onnx_weights_sha256 and not meta.calibration:
            from rawedge.metadata.integrity import onnx_sha256

            same = onnx_sha256(path) == meta.onnx_weights_sha256
            lines.append(f"integrity    graph and weights {'match' if same else 'DO NOT MATCH'} the sha256 recorded "
                         f"at export ({meta.onnx_weights_sha256[:16]}…)" + ("" if same else ": modified or damaged"))
    return lines
