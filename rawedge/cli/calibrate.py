"""``rawedge calibrate``: FP32 ONNX -> INT8 artefact for one runtime, gated by accuracy against FP32
(torch and the quantization tools are imported only when the command runs)."""
from __future__ import annotations

from pathlib import Path

import click

from rawedge.cli import MAX_THREADS


@click.command("calibrate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--runtime", type=click.Choice(["ort", "openvino", "trt"]), default="ort", show_default=True)
@click.option("--data", required=True, type=click.Path(),
              help="Folder of photos (JPEG/PNG/TIFF with EXIF) and/or RAW files (rendered on the fly; they add "
                   "ground truth).")
@click.option("--reference", type=click.Path(dir_okay=False),
              help="PyTorch checkpoint of the same weights as the gate's FP32 reference (default: the FP32 ONNX "
                   "through ONNX Runtime).")
@click.option("--max-drop", type=float, default=0.3, show_default=True,
              help="Accuracy budget: mean RAW PSNR drop over the held-out files, in dB.")
@click.option("--max-image-drop", type=float,
              help="Budget for the worst single held-out file, in dB (default: the larger of 1 and 3 x --max-drop).")
@click.option("--method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True,
              help="Activation range estimation.")
@click.option("--scope", type=click.Choice(["network", "weighted", "all"]), default="network", show_default=True,
              help="network: the layers between the first and last weighted layer in INT8, the analytic prior and "
                   "the RAW output in float; weighted: only Conv/ConvTranspose/MatMul/Gemm; all: every operator "
                   "the backend quantizes.")
@click.option("--holdout", type=float, default=0.25, show_default=True,
              help="Fraction of the files (by file) kept out of calibration for the accuracy gate.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="INT8 artefact (default: MODEL.<runtime>.int8.onnx|xml, where `rawedge infer --precision int8` "
                   "looks).")
@click.option("--report", type=click.Path(dir_okay=False),
              help="Report JSON (default: next to the artefact, .report.json; the PNG goes beside it).")
@click.option("--max-tiles", type=click.IntRange(1), default=64, show_default=True, help="Calibration tiles.")
@click.option("--calibration-tile", type=click.IntRange(2), default=256, show_default=True,
              help="Calibration tile size in pixels (the gate uses --tile).")
@click.option("--tile", type=int, help="Gate tile size (default: rawedge infer's).")
@click.option("--overlap", type=int, help="Gate tile overlap (default: the model's).")
@click.option("--batch", type=click.IntRange(1), help="Tiles per inference call (default: rawedge infer's).")
@click.option("--max-keep", type=click.IntRange(0), help="Most layers kept in higher precision (default: all).")
@click.option("--reference-psnr", type=float,
              help="RAW PSNR (dB) of the FP32 model against ground truth, for the drop bound without RAW files "
                   "(default: the model's validation PSNR, else 40).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the held-out split and tile sampling.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="Inference threads (default: all cores).")
@click.option("--no-edits", is_flag=True, help="Skip the sRGB scores after the five edits (they need torch).")
@click.option("--no-timing", is_flag=True, help="Skip the FP32-vs-INT8 speed measurement.")
def calibrate(model, runtime, data, reference, max_drop, max_image_drop, method, scope, holdout, output, report, max_tiles,
              calibration_tile, tile, overlap, batch, max_keep, reference_psnr, seed, threads, no_edits, no_timing):
    """Quantize an exported model to INT8 for one runtime, gated by accuracy against FP32.

    A held-out part of --data is never used for calibration: on it the FP32 reference and the INT8
    artefact run side by side (Polygraphy Comparator) and the RAW PSNR drop must stay within
    --max-drop; otherwise the most sensitive layers are kept in higher precision until it does. When
    it cannot, nothing but the report is written and the exit status is 1.

    \b
    Example:  rawedge calibrate model.onnx --runtime ort --data photos/ --max-drop 0.3
              rawedge infer photo.jpg --model model.onnx --precision int8
    """
    from rich.console import Console

    from rawedge.calibration.pipeline import GateFailed, Options
    from rawedge.calibration.pipeline import calibrate as run_calibration
    from rawedge.calibration.report import summary_table

    opts = Options(runtime=runtime, reference=Path(reference) if reference else None, max_drop=max_drop,
                   max_image_drop=max_image_drop, method=method, scope=scope, holdout=holdout, output=Path(output) if output else None,
                   report=Path(report) if report else None, max_tiles=max_tiles, calibration_tile=calibration_tile,
                   tile=tile, overlap=overlap, batch=batch, max_keep=max_keep, reference_psnr=reference_psnr, seed=seed,
                   threads=threads, edits=not no_edits, timing=not no_timing)
    console = Console(stderr=True)
    try:
        outcome = run_calibration(model, data, opts, log=lambda line: console.print(line, markup=False,
                                                                                   highlight=False))
    except GateFailed as exc:
        for table in summary_table(exc.report):
            console.print(table)
        raise
    for table in summary_table(outcome.report):
        Console().print(table)
    for path in outcome.artefacts:
        click.echo(f"wrote {path}")
    click.echo(f"wrote {outcome.report_path}" + (f" and {outcome.figure_path}" if outcome.figure_path else ""))
