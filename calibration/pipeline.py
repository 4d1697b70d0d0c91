"""`rawedge calibrate` end to end: check the inputs, build the calibration set, quantize for one
backend, gate the result against FP32 on held-out files, keep the most sensitive layers in higher
precision until the budget holds, and write the artefact (named so `rawedge infer --precision int8`
finds it) with its report.

Nothing is written when an input is wrong. When the budget cannot be met the artefact is not
written either; the report (JSON + PNG) is, and the error names the layers that were tried."""
from __future__ import annotations

import copy
import datetime
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rawedge.runtimes.base import Runner, import_backend
from rawedge.runtimes.factory import RUNTIMES, int8_artefact_path
from rawedge.runtimes.reconstructor import TRT_BATCH

from rawedge import __version__
from rawedge.errors import RawedgeError
from rawedge.io.atomic import check_output_dir
from rawedge.metadata.onnx import read_onnx_metadata
from rawedge.metadata.schema import CalibrationMeta, ModelMeta

from .base import METHODS, SCOPES, Quantizer
from .dataset import (
    Tiling,
    build_calibration_set,
    list_sources,
    load_item,
    record_feeds,
    replay,
    split_sources,
)
from .gate import Budget, Gate, GateResult, reference_quality
from .sensitivity import keep_schedule, rank_layers, remove_artefact

ARTEFACT_SUFFIX = {"ort": ".onnx", "openvino": ".xml", "trt": ".onnx"}


class GateFailed(RawedgeError):
    """The INT8 artefact could not be brought within the accuracy budget (``report``: what was tried)."""

    def __init__(self, path, problem: str, report: dict | None = None):
        super().__init__(path, problem)
        self.report = report or {}


@dataclass
class Options:
    runtime: str = "ort"
    reference: Path | None = None  # PyTorch checkpoint of the same weights (default: FP32 ONNX via ORT)
    max_drop: float = 0.3  # dB
    max_image_drop: float | None = None  # dB, worst single held-out image (None: max(1, 3 x max_drop))
    method: str = "minmax"
    scope: str = "network"  # calibration.base.SCOPES
    holdout: float = 0.25
    output: Path | None = None  # default: <model>.<runtime>.int8.<ext>
    report: Path | None = None  # default: <output stem>.report.json (+ .png)
    max_tiles: int = 64  # calibration tiles
    calibration_tile: int = 256
    tile: int | None = None  # gate tiling (default: rawedge infer's)
    overlap: int | None = None
    batch: int | None = None  # gate tiles per call (None: rawedge infer's default)
    max_keep: int | None = None  # layers allowed in higher precision (None: all)
    ranking_tiles: int = 8
    reference_psnr: float | None = None
    seed: int = 0
    threads: int | None = None
    edits: bool = True
    timing: bool = True
    max_pixels: int | None = None


@dataclass
class Outcome:
    passed: bool
    artefacts: list[Path]
    report_path: Path
    figure_path: Path | None
    report: dict = field(default_factory=dict)


# --- input checks ------------------------------------------------------------------------------------
def check_model(model_path: Path) -> ModelMeta:
    if not model_path.is_file():
        raise RawedgeError(model_path, "no such model file")
    if model_path.suffix.lower() != ".onnx":
        raise RawedgeError(model_path, "calibration needs the FP32 ONNX export (.onnx) of a model")
    meta = read_onnx_metadata(model_path)
    if meta.precision != "fp32" or meta.calibration:
        raise RawedgeError(model_path, f"is a {meta.precision} model{' already calibrated' if meta.calibration else ''};"
                                       " calibrate the FP32 export")
    return meta


def check_reference(reference: Path, meta: ModelMeta, model_path: Path) -> None:
    """The checkpoint must hold the very weights the ONNX was exported from."""
    from rawedge.models.checkpoint import read_checkpoint, weights_sha256

    ckpt = read_checkpoint(reference)
    problems = []
    if ckpt.get("model_name") != meta.model_name:
        problems.append(f"model {ckpt.get('model_name')!r} but {model_path.name} is {meta.model_name!r}")
    sha = weights_sha256(ckpt["state_dict"])
    if meta.weights_sha256 and sha != meta.weights_sha256:
        problems.append(f"weights sha256 {sha[:12]}… but {model_path.name} was exported from {meta.weights_sha256[:12]}…")
    if problems:
        raise RawedgeError(reference, "is not the checkpoint of this model: " + "; ".join(problems))


def check_options(opts: Options) -> None:
    if opts.runtime not in RUNTIMES:
        raise RawedgeError(None, f"unknown runtime {opts.runtime!r} ({', '.join(RUNTIMES)})")
    if opts.method not in METHODS:
        raise RawedgeError(None, f"unknown calibration method {opts.method!r} ({', '.join(METHODS)})")
    if opts.scope not in SCOPES:
        raise RawedgeError(None, f"unknown quantization scope {opts.scope!r} ({', '.join(SCOPES)})")
    if not opts.max_drop >= 0:
        raise RawedgeError(None, f"--max-drop must be >= 0 dB, got {opts.max_drop}")
    if opts.max_image_drop is not None and not opts.max_image_drop >= 0:
        raise RawedgeError(None, f"--max-image-drop must be >= 0 dB, got {opts.max_image_drop}")
    for name in ("max_tiles", "ranking_tiles", "batch", "calibration_tile"):
        if getattr(opts, name) is not None and getattr(opts, name) < 1:
            raise RawedgeError(None, f"--{name.replace('_', '-')} must be at least 1")
    if opts.max_keep is not None and opts.max_keep < 0:
        raise RawedgeError(None, "--max-keep must be >= 0")


def output_paths(model_path: Path, opts: Options) -> tuple[Path, Path, Path]:
    """(artefact, report JSON, report PNG), checked writable."""
    output = Path(opts.output) if opts.output else int8_artefact_path(model_path, opts.runtime)
    want = ARTEFACT_SUFFIX[opts.runtime]
    if output.suffix.lower() != want:
        raise RawedgeError(output, f"the {opts.runtime} INT8 artefact must be a {want} file")
    if output.resolve() == model_path.resolve():
        raise RawedgeError(output, "the output would overwrite the FP32 model")
    check_output_dir(output)
    report = Path(opts.report) if opts.report else output.with_suffix(".report.json")
    check_output_dir(report)
    return output, report, report.with_suffix(".png")


def make_quantizer(runtime: str, model_path: Path, opts: Options, workdir: Path, meta: ModelMeta) -> Quantizer:
    if runtime == "ort":
        from .ort_quant import OrtQuantizer

        return OrtQuantizer(model_path, opts.method, workdir, opts.threads, opts.scope)
    if runtime == "openvino":
        from .openvino_quant import OpenVinoQuantizer

        return OpenVinoQuantizer(model_path, opts.method, workdir, opts.threads, opts.scope, max_drop=opts.max_drop,
                                 max_keep=opts.max_keep)
    from .tensorrt_quant import TensorRtQuantizer

    return TensorRtQuantizer(model_path, opts.method, workdir, opts.threads,
                             tile=opts.tile or meta.static_tile or meta.tile, batch=opts.batch or TRT_BATCH)


def reference_runner(model_path: Path, opts: Options, meta: ModelMeta) -> tuple[Runner, dict]:
    """The FP32 reference, with ``meta`` (the model's metadata, read once) as its metadata."""
    if opts.reference:
        from rawedge.export.torch_runner import TorchRunner

        return (TorchRunner(opts.reference, metadata=meta, device="cpu", threads=opts.threads, name="pytorch-fp32"),
                {"kind": "pytorch", "path": os.fspath(opts.reference), "label": "PyTorch FP32 checkpoint"})
    from rawedge.runtimes.ort import OrtRunner

    return (OrtRunner(model_path, providers=["cpu"], intra_op_threads=opts.threads, name="ort-fp32", metadata=meta),
            {"kind": "onnxruntime", "path": os.fspath(model_path), "label": "FP32 ONNX through ONNX Runtime"})


def file_size(path: Path) -> int:
    n = path.stat().st_size
    data = path.with_name(path.name + ".data")
    return n + (data.stat().st_size if data.exists() else 0)


# --- the pipeline ---------------------------------------------------------------------------------------
def calibrate(model_path: str | os.PathLike, data: str | os.PathLike, opts: Options | None = None,
              log=None) -> Outcome:
    """Calibrate ``model_path`` (FP32 ONNX) on the files of ``data`` for ``opts.runtime``."""
    opts = opts or Options()
    log = log or (lambda line: None)
    model_path = Path(model_path)
    check_options(opts)
    meta = check_model(model_path)
    output, report_path, figure_path = output_paths(model_path, opts)
    if opts.reference:
        check_reference(Path(opts.reference), meta, model_path)
    import_backend("polygraphy.comparator", "rawedge[calibrate]", "Polygraphy")
    split = split_sources(list_sources(data), opts.holdout, opts.seed, folder=data)
    with tempfile.TemporaryDirectory(prefix="rawedge-calibrate-") as tmp:
        workdir = Path(tmp)
        quantizer = make_quantizer(opts.runtime, model_path, opts, workdir, meta)
        quantizer.check_available()
        reference, reference_info = reference_runner(model_path, opts, meta)
        runners: list[Runner] = [reference]
        try:
            return _run(model_path, Path(data), meta, opts, quantizer, reference, reference_info, split,
                        workdir, output, report_path, figure_path, runners, log)
        finally:
            for runner in runners:
                runner.deactivate()


def _run(model_path, data, meta, opts, quantizer, reference, reference_info, split, workdir, output,
         report_path, figure_path, runners, log) -> Outcome:
    reference.activate()
    template = reference  # the exported model's input shapes (static batch/tile) drive the Reconstructor
    if reference_info["kind"] != "onnxruntime":
        from rawedge.runtimes.ort import OrtRunner

        template = OrtRunner(model_path, providers=["cpu"], intra_op_threads=opts.threads, name="ort-fp32",
                             metadata=meta)
        runners.append(template)
        template.activate()
    static = meta.static_tile
    cal_tiling = Tiling(tile=static or opts.calibration_tile, overlap=0, batch=1)
    gate_tiling = Tiling(tile=opts.tile, overlap=opts.overlap, batch=opts.batch)
    log(f"calibration: {len(split.calibration)} files, held out for the gate: {len(split.held_out)} "
        f"({', '.join(p.name for p in split.held_out)})")
    calib = build_calibration_set(template, split.calibration, cal_tiling, opts.max_tiles, seed=opts.seed,
                                  max_pixels=opts.max_pixels, on_file=lambda p: log(f"  reading {p.name}"))
    log(f"calibration set: {len(calib)} tiles of {cal_tiling.tile} px from {len(calib.files)} files")
    if opts.runtime == "openvino" and calib.with_truth:
        quantizer.accuracy_metric = _truth_metric(template, calib.with_truth, gate_tiling, opts.max_pixels)
    quantizer.prepare(calib, log)

    psnr_ref, psnr_source = reference_quality(meta, opts.reference_psnr)
    budget = Budget(opts.max_drop, psnr_ref, psnr_source, opts.max_image_drop)
    gate = Gate(reference, split.held_out, gate_tiling, budget, edits=opts.edits, max_pixels=opts.max_pixels, log=log,
                template=template)
    suffix = ARTEFACT_SUFFIX[opts.runtime]
    layers = quantizer.layers()
    attempts: list[dict] = []

    def attempt(index: int, keep: list[str], first: bool = False) -> tuple[Path, GateResult, list[str]]:
        staged = quantizer.quantize(workdir / f"attempt{index}{suffix}", keep=keep, first=first)
        kept = list(dict.fromkeys([*keep, *quantizer.kept_by_backend(staged)]))
        log(f"gate, attempt {index + 1}: {len(kept)} of {len(layers)} layers kept in higher precision")
        candidate = quantizer.open_runner(staged, metadata=meta)  # staged from this model: its metadata
        runners.append(candidate)
        result = gate.run(candidate)
        candidate.deactivate()
        attempts.append({"kept_layers": kept, "drop_db": result.drop_db, "passed": result.passed,
                         "psnr_vs_reference_db": result.summary["psnr_vs_reference_db"]})
        log(f"  drop {result.drop_db:.3f} dB ({result.drop_kind}) against a budget of {opts.max_drop} dB, worst image "
            f"{result.summary['worst_drop_db']:.3f} dB against {budget.image_limit} dB: "
            f"{'pass' if result.passed else 'fail'}")
        return staged, result, kept

    staged, result, kept = attempt(0, [], first=True)
    ranking = None
    max_keep = len(layers) if opts.max_keep is None else opts.max_keep
    candidates = [layer for layer in layers if layer not in kept]
    if not result.passed and max_keep > len(kept) and candidates:
        rank_feeds = calib.feeds[:: max(1, len(calib.feeds) // opts.ranking_tiles)][: opts.ranking_tiles]
        log(f"ranking {len(candidates)} layers by sensitivity on {len(rank_feeds)} calibration tiles")
        ranking = rank_layers(quantizer, candidates, rank_feeds, reference, workdir, already_kept=kept,
                              suffix=suffix, log=log, metadata=meta)
        base_kept = kept
        for k in keep_schedule(min(max_keep - len(base_kept), len(ranking))):
            remove_artefact(staged)
            staged, result, kept = attempt(len(attempts), [*base_kept, *(s.layer for s in ranking[:k])])
            if result.passed:
                break

    speed = _speed(quantizer, staged, meta, template, reference_info, gate, gate_tiling, split.held_out[0], opts,
                   runners, log) if opts.timing else None
    facts = _calibration_facts(opts, quantizer, calib, split, reference_info, result, kept, speed)
    report = _report(model_path, data, meta, opts, quantizer, calib, split, reference_info, budget, attempts,
                     ranking, result, facts, speed, output if result.passed else None)
    from .report import write_figure, write_report

    figure = write_figure(report, result, figure_path)
    artefacts = []
    if result.passed:
        final_meta = copy.deepcopy(meta)
        final_meta.precision = "int8"
        final_meta.calibration = facts
        artefacts = quantizer.write(staged, output, final_meta)
        report["size"]["int8_bytes"] = sum(p.stat().st_size for p in artefacts)
    write_report(report, report_path)
    outcome = Outcome(result.passed, artefacts, report_path, figure, report)
    if not result.passed:
        tried = [a["kept_layers"] for a in attempts]
        names = list(dict.fromkeys(layer for keep in tried for layer in keep))
        raise GateFailed(model_path, f"INT8 ({opts.runtime}) loses {result.drop_db:.3f} dB ({result.drop_kind}) on "
                                     f"average and {result.summary['worst_drop_db']:.3f} dB on the worst image, over "
                                     f"the {opts.max_drop} / {gate.budget.image_limit} dB budgets, after "
                                     f"{len(attempts)} attempt(s); layers tried in "
                                     f"higher precision: {', '.join(names) if names else 'none (--max-keep 0)'}; "
                                     f"no artefact written; report: {report_path}", report)
    return outcome


def _truth_metric(template: Runner, files: list[Path], tiling: Tiling, max_pixels):
    """(ids, metric(infer, id)) for NNCF accuracy control: RAW PSNR against ground truth of the whole
    image the Reconstructor blends from ``infer``'s outputs, on calibration files with truth."""
    from rawedge.metrics import psnr

    items = {}

    def metric(infer, i: int) -> float:
        if i not in items:
            items[i] = load_item(files[i], max_pixels)
        item = items[i]
        feeds = record_feeds(template, item, tiling)
        raw = replay(template, item, tiling, feeds, [infer(f) for f in feeds])
        return psnr(raw.normalized(), item.truth.normalized())

    return list(range(len(files))), metric


def _speed(quantizer, staged, meta, template, reference_info, gate, tiling, first_file, opts, runners, log) -> dict:
    """ms per megapixel of FP32 and INT8 on the same backend, same feeds, same process (Polygraphy
    Comparator, one warm-up run)."""
    from polygraphy.comparator import Comparator
    from polygraphy.logger import G_LOGGER

    from .adapters import polygraphy_adapter

    fp32 = template if opts.runtime == "ort" else quantizer.fp32_runner(metadata=meta)  # template: FP32 ONNX on ORT
    int8 = quantizer.open_runner(staged, metadata=meta)
    runners.extend([fp32, int8])
    try:
        feeds = record_feeds(template, gate.item(first_file), tiling)
        adapters = [polygraphy_adapter(fp32, "fp32"), polygraphy_adapter(int8, "int8")]
        with G_LOGGER.verbosity(G_LOGGER.ERROR):
            results = Comparator.run(adapters, data_loader=feeds, warm_up=1)
    except RawedgeError as exc:
        log(f"speed not measured: {exc}")
        return {"measured": False, "reason": str(exc)}
    finally:
        int8.deactivate()
    pixels = sum(int(f["srgb"].shape[0] * f["srgb"].shape[2] * f["srgb"].shape[3]) for f in feeds) / 1e6
    ms = {name: 1000.0 * sum(it.runtime or 0.0 for it in its) / pixels for name, its in results.items()}
    speed = {"measured": True, "file": first_file.name, "megapixels": pixels, "fp32_ms_per_mp": ms["fp32"],
             "int8_ms_per_mp": ms["int8"], "speedup": ms["fp32"] / ms["int8"] if ms["int8"] else None,
             "threads": opts.threads, "cpu_count": os.cpu_count()}
    log(f"speed on {first_file.name}: FP32 {ms['fp32']:.0f} ms/MP, INT8 {ms['int8']:.0f} ms/MP "
        f"({speed['speedup']:.2f}x)")
    return speed


def _calibration_facts(opts, quantizer, calib, split, reference_info, result, kept, speed=None) -> CalibrationMeta:
    """The ``calibration`` object of the artefact's metadata."""
    return CalibrationMeta(
        runtime=opts.runtime, method=opts.method, scope=quantizer.scope, backend=quantizer.backend_name,
        backend_version=quantizer.facts.get("backend_version"), scheme=quantizer.facts.get("scheme"),
        isa=quantizer.facts.get("isa"), gpu=quantizer.facts.get("gpu"), calibration_tiles=len(calib),
        calibration_tile=calib.feeds[0]["srgb"].shape[-1] if calib.feeds else None,
        calibration_files=len(split.calibration), held_out_files=[p.name for p in split.held_out],
        reference=reference_info["kind"], max_drop_db=opts.max_drop, drop_db=result.drop_db,
        drop_kind=result.drop_kind, psnr_vs_reference_db=result.summary["psnr_vs_reference_db"], kept_layers=kept,
        speedup=(speed or {}).get("speedup") if (speed or {}).get("measured") else None,
        rawedge_version=__version__, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def _report(model_path, data, meta, opts, quantizer, calib, split, reference_info, budget, attempts, ranking,
            result, facts, speed, artefact) -> dict:
    return {
        "format": "rawedge-calibration", "format_version": 1, "passed": result.passed,
        "model": os.fspath(model_path), "model_name": meta.model_name, "weights_sha256": meta.weights_sha256,
        "runtime": opts.runtime, "artefact": os.fspath(artefact) if artefact else None, "method": opts.method,
        "scope": quantizer.scope,
        "backend": {k: quantizer.facts.get(k) for k in ("backend_version", "nncf_version", "tensorrt_version",
                                                           "pre_process", "gpu") if quantizer.facts.get(k)},
        "isa": quantizer.facts.get("isa"), "scheme": quantizer.facts.get("scheme"),
        "data": {"dir": os.fspath(data), "calibration_files": [p.name for p in split.calibration],
                 "held_out_files": [p.name for p in split.held_out], "calibration_tiles": len(calib),
                 "calibration_tile": facts.calibration_tile, "tiles_per_file": calib.tiles_per_file,
                 "seed": opts.seed},
        "reference": reference_info,
        "budget": {"max_drop_db": budget.max_drop, "max_image_drop_db": budget.image_limit, "drop_kind": result.drop_kind,
                   "reference_psnr_db": budget.reference_psnr if result.drop_kind == "bound" else None,
                   "reference_psnr_source": budget.reference_psnr_source if result.drop_kind == "bound" else None,
                   "correlation_bound": budget.correlation if result.drop_kind == "bound" else None},
        "attempts": attempts, "kept_layers": facts.kept_layers,
        "sensitivity": [s.to_dict() for s in ranking] if ranking is not None else None,
        "result": result.to_dict(), "speed": speed,
        "size": {"fp32_bytes": file_size(model_path), "int8_bytes": None},
        "conventions": {
            "raw": "camera mosaic normalised to [0,1] by the profile's black/white levels, as `rawedge infer` writes it; "
                   "PSNR = 10 log10(1/MSE) per image, means over held-out images",
            "drop": "measured: mean PSNR(FP32, truth) - mean PSNR(INT8, truth); bound (without truth): mean over "
                    "images of 10 log10(1 + r^2 + 2 rho r), r = RMSE(INT8 - FP32) / RMSE(FP32 - truth) with "
                    "RMSE(FP32 - truth) from reference_psnr_db, rho = correlation_bound (the largest measured "
                    "correlation of INT8 changes with the model's own error, with a margin; 1 = triangle inequality)",
            "edits": "sRGB PSNR after the five fixed edits of `rawedge eval` (render_edit), central crop of at most "
                     "4 MP",
        },
    }
