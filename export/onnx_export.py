"""Checkpoint -> one self-describing ONNX file: contract graph, cleaned and checked, metadata embedded,
PyTorch parity measured on a real photo with ONNX Runtime (and OpenVINO where installed) before the
file is written. Nothing is left at the output path when any step fails."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from rawedge.export import clean, parity
from rawedge.export.fp16 import to_fp16
from rawedge.export.graph import export_graph
from rawedge.export.metadata import build_meta
from rawedge.export.onnx_io import external_data_name, save_model, staging_dir
from rawedge.export.ort_format import convert_to_ort
from rawedge.export.receptive_field import measure, recommend

from rawedge.errors import RawedgeError
from rawedge.io.atomic import atomic_output, check_output_dir
from rawedge.metadata.onnx import embed_onnx_metadata
from rawedge.metadata.schema import ModelMeta


def default_output_path(checkpoint: str | os.PathLike, *, fp16: bool = False, static_tile: int | None = None) -> Path:
    """MODEL.pt -> MODEL.onnx next to it; variants say what they are (MODEL.tile256.fp16.onnx), so
    exporting one never overwrites another."""
    p = Path(checkpoint)
    parts = [p.stem] + ([f"tile{static_tile}"] if static_tile else []) + (["fp16"] if fp16 else [])
    return p.with_name(".".join(parts) + ".onnx")


def export_checkpoint(checkpoint: str | os.PathLike, output: str | os.PathLike | None = None, *, opset: int = 17,
                      fp16: bool = False, check: bool = True, static_tile: int | None = None,
                      ort_format: bool = False, photo: str | os.PathLike | None = None,
                      exporter: str = "legacy", log=None, accuracy: str | os.PathLike | None = None) -> ModelMeta:
    """Export a rawedge checkpoint (``rawedge.models.checkpoint.save_checkpoint``); returns the embedded metadata.

    ``log`` (e.g. ``print``) receives the progress and per-case parity lines. ``accuracy``: a
    `rawedge eval` report of these weights on held-out data; its mean and 90th-percentile RAW PSNR join
    the metadata's metrics (rawedge.training.evaluate.heldout_accuracy), where the INT8 gate finds them."""
    from rawedge.models.checkpoint import load_checkpoint

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise RawedgeError(checkpoint, "no such file")
    output = Path(output) if output is not None else default_output_path(checkpoint, fp16=fp16,
                                                                         static_tile=static_tile)
    check_output_dir(output)
    if checkpoint.exists() and output.exists() and output.resolve() == checkpoint.resolve():
        raise RawedgeError(output, "the output would overwrite the checkpoint")
    model, ckpt = load_checkpoint(checkpoint)
    if accuracy is not None:
        import json

        from rawedge.training.evaluate import heldout_accuracy

        try:
            report = json.loads(Path(accuracy).read_text())
        except (OSError, ValueError) as exc:
            raise RawedgeError(accuracy, f"cannot read the evaluation report ({type(exc).__name__})") from None
        ckpt = {**ckpt, "metrics": {**(ckpt.get("metrics") or {}),
                                    **heldout_accuracy(report, ckpt.get("weights_sha256"), os.fspath(accuracy))}}
    try:
        return export_model(model, ckpt, output, opset=opset, fp16=fp16, check=check, static_tile=static_tile,
                            ort_format=ort_format, photo=photo, exporter=exporter, log=log)
    except RawedgeError as exc:
        if exc.path is None:
            raise RawedgeError(checkpoint, exc.problem) from None
        raise


def export_model(model, ckpt: dict | None, output: str | os.PathLike, *, opset: int = 17, fp16: bool = False,
                 check: bool = True, static_tile: int | None = None, ort_format: bool = False,
                 photo: str | os.PathLike | None = None, exporter: str = "legacy", log=None) -> ModelMeta:
    """Export an in-memory registry model; ``ckpt`` supplies camera profiles, recipe and metrics (a
    checkpoint dict, or None for none). The model is put in eval mode."""
    log = log or (lambda line: None)
    ckpt = ckpt or {}
    output = check_output_dir(output)
    if output.suffix.lower() != ".onnx":
        raise RawedgeError(output, "the output must be a .onnx file (the .ort file is written next to it)")
    model = model.float().eval()
    align = int(model.align)
    if static_tile is not None and (static_tile < 2 * align or static_tile % align):
        raise RawedgeError(None, f"--static-tile {static_tile}: must be a multiple of the model's align "
                                 f"{align}, at least {2 * align}")
    config = ", ".join(f"{k}={v}" for k, v in sorted(getattr(model, "config", {}).items()))
    log(f"exporting {model.model_name}{f' ({config})' if config else ''}: {exporter} exporter, opset {opset}"
        + (f", static tile {static_tile}" if static_tile else "") + (", fp16" if fp16 else ""))

    proto = clean.finalize(export_graph(model, opset=opset, exporter=exporter, static_tile=static_tile),
                           model.output_names, static_tile, log)
    precision = "fp32"
    if fp16:
        proto, precision = clean.check_and_infer(to_fp16(proto)), "fp16"
    rf = measure(model)
    tile, overlap = recommend(align, rf, static_tile)
    log(f"receptive field: output changes up to {rf['support_px']} px from an input change, "
        f"{rf['mass_fraction']:.1%} of it within {rf['margin_px']} px -> tile {tile}, overlap {overlap}")
    if rf["reaches_border"]:
        log(f"warning: the output still changes at the border of a {rf['probe_px']} px probe: the receptive "
            f"field is larger than that, or the model computes a global statistic from srgb instead of thumb")
    meta = build_meta(model, ckpt, tile=tile, overlap=overlap, receptive_field=rf, static_tile=static_tile,
                      precision=precision)
    meta.parity = {"checked": False}
    meta = _embed(proto, meta)
    if ort_format and clean.is_large(proto):
        raise RawedgeError(output, "the ORT format holds at most 2 GB; export without --ort-format")

    checks = None
    if check:
        check_photo = parity.load_check_photo(photo, log)
        check_cases = parity.cases(check_photo, align, static_tile)
        checks = (check_cases, parity.reference(model, check_cases, meta), check_photo)
    with staging_dir(output) as stage:
        staged = stage / "model.onnx"
        if check or ort_format:
            save_model(proto, staged)
        if check:
            meta.parity = _check(staged, meta, precision, checks, output, log)
            meta = _embed(proto, meta)
        if ort_format:
            save_model(proto, staged)
            ort_file = convert_to_ort(staged, stage)
            if check:
                result = _run_check(parity.ort_runner(ort_file, meta), "onnxruntime (.ort)", precision, checks,
                                    output, log)
                meta.parity["backends"]["ort_format"] = _summary(result)
                meta = _embed(proto, meta)
            ort_out = output.with_suffix(".ort")
            with atomic_output(ort_out) as tmp:
                shutil.copyfile(ort_file, tmp)
            log(f"wrote {ort_out} ({_size(ort_out)})")
        save_model(proto, output)
    log(f"wrote {output} ({_size(output)}, opset {_opset(proto)}, {len(clean.op_types(proto))} op types: "
        f"{', '.join(clean.op_types(proto))})")
    return meta


def _embed(proto, meta: ModelMeta) -> ModelMeta:
    """Name and describe the graph, then store ``meta`` in it (with the hash of the graph as named)."""
    proto.doc_string = (f"rawedge reverse-ISP model '{meta.model_name}': sRGB tile -> packed RGGB RAW "
                        f"(contract v{meta.contract_version}, {meta.precision})")
    proto.graph.name = meta.model_name
    return embed_onnx_metadata(proto, meta)


def _check(staged: Path, meta: ModelMeta, precision, checks, output, log) -> dict:
    """ONNX Runtime parity (required) and OpenVINO parity (where installed) of the staged file: the
    ``parity`` metadata."""
    import onnxruntime as ort

    result = _run_check(parity.ort_runner(staged, meta), f"onnxruntime {ort.__version__}", precision, checks,
                        output, log)
    record = {"checked": True, "photo": result["photo"], "profile": result["profile"], "precision": precision,
              "tolerance": result["tolerance"], "backends": {"onnxruntime": _summary(result)}}
    try:
        import openvino
    except ModuleNotFoundError:
        log("OpenVINO not installed: OpenVINO parity not measured (pip install 'rawedge[openvino]')")
    else:
        ov_result = _run_check(parity.openvino_runner(staged, meta), f"openvino {openvino.__version__.split('-')[0]}",
                               precision, checks, output, log)
        record["backends"]["openvino"] = _summary(ov_result)
    backends = record["backends"].values()
    record["max_abs"] = max(b["max_abs"] for b in backends)
    psnrs = [b["min_psnr_db"] for b in backends if b["min_psnr_db"] is not None]
    record["min_psnr_db"] = min(psnrs) if psnrs else None
    return record


def _run_check(runner, backend, precision, checks, output, log) -> dict:
    check_cases, expected, check_photo = checks
    try:
        runner.activate()
    except RawedgeError as exc:  # a backend that cannot load or compile the graph; its staged copy is temporary
        raise RawedgeError(output, exc.problem) from None
    result = parity.compare(runner, check_cases, expected, backend, precision)
    result["photo"], result["profile"] = check_photo.name, check_photo.profile
    for line in parity.format_result(result):
        log(line)
    parity.require(result, output)
    return result


def _summary(result: dict) -> dict:
    return {"backend": result["backend"], "max_abs": result["max_abs"], "min_psnr_db": result["min_psnr_db"],
            "cases": [{k: r[k] for k in ("case", "shape", "max_abs", "psnr_db")} for r in result["cases"]]}


def _opset(proto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _size(path: Path) -> str:
    n = path.stat().st_size
    data = path.parent / external_data_name(path)
    if path.suffix == ".onnx" and data.exists():
        n += data.stat().st_size
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
