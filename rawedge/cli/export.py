"""``rawedge export``: checkpoint -> ONNX (torch is imported only when the command runs)."""
from __future__ import annotations

import click


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="ONNX file to write (default: CHECKPOINT.onnx; .tileN/.fp16 added for those variants).")
@click.option("--opset", default=17, show_default=True, type=click.IntRange(13, 23), help="ONNX opset.")
@click.option("--fp16", is_flag=True, help="Half-precision weights and activations (float32 inputs/outputs).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Compare ONNX Runtime (and OpenVINO, if installed) with PyTorch on a real photo.")
@click.option("--static-tile", type=click.IntRange(2, None), help="Fixed-shape model for one NxN tile, batch 1.")
@click.option("--ort-format", is_flag=True, help="Also write the .ort file for ONNX Runtime's minimal builds.")
@click.option("--photo", type=click.Path(dir_okay=False), help="Photo for the check (default: samples/boxes_s40.jpg).")
@click.option("--exporter", type=click.Choice(["legacy", "dynamo"]), default="legacy", show_default=True,
              help="PyTorch exporter (dynamo needs onnxscript and --opset 18 or newer).")
@click.option("--accuracy", type=click.Path(dir_okay=False),
              help="A `rawedge eval` report of this checkpoint on held-out data: its RAW PSNR (mean, 90th "
                   "percentile) goes into the metadata, where `rawedge calibrate` bounds INT8 drops on photos.")
@click.option("--overwrite", is_flag=True, help="Replace the output (and its .ort) if it exists (default: refuse).")
def export(checkpoint, output, opset, fp16, check, static_tile, ort_format, photo, exporter, accuracy, overwrite):
    """Export a trained checkpoint to one self-describing ONNX file.

    The file has the six contract inputs (srgb, thumb, exif, wb, cam2rgb, rgb2cam) with dynamic batch,
    height and width, the model's outputs (raw first), and its metadata: config, align, recommended tile
    and overlap, camera profiles, EXIF facts, weights sha256 and the PyTorch-vs-ONNX error measured here.

    \b
    Example:  rawedge export runs/unet/model.pt -o unet.onnx --ort-format
    """
    from pathlib import Path

    from rawedge.export import default_output_path, export_checkpoint
    from rawedge.outputs import refuse_existing

    target = Path(output) if output else default_output_path(checkpoint, fp16=fp16, static_tile=static_tile)
    refuse_existing([target] + ([target.with_suffix(".ort")] if ort_format else []), overwrite)
    export_checkpoint(checkpoint, output, opset=opset, fp16=fp16, check=check, static_tile=static_tile,
                      ort_format=ort_format, photo=photo, exporter=exporter, log=click.echo,
                      accuracy=accuracy)
