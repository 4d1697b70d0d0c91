"""`rawedge bench`: one model on one photo across runtimes and precisions (rawedge.bench.speed does the
work; this command parses options and prints the table). No torch in this process: the PyTorch row runs
in its own worker."""
from __future__ import annotations

import json
from pathlib import Path

import click

from rawedge.cli import MAX_THREADS
from rawedge.cli.infer import default_model_path
from rawedge.errors import RawedgeError


def _sample_photo() -> Path:
    import rawedge

    sample = Path(rawedge.__file__).resolve().parents[1] / "samples" / "boxes_s40.jpg"
    if not sample.is_file():
        raise RawedgeError(None, "no sample photo in this install; pass --photo PHOTO")
    return sample


def _short_reason(reason: str, limit: int = 60) -> str:
    """The gist of a skip/failure reason for a table cell: its first clause, bounded."""
    text = reason.split(" (")[0].split("; ")[0]
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _split(text: str, allowed, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise RawedgeError(None, f"bad {what} {', '.join(bad) or text!r} (choose from {', '.join(allowed)})")
    return items


@click.command()
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Exported model (default: the bundled one).")
@click.option("--checkpoint", type=click.Path(dir_okay=False),
              help="PyTorch checkpoint of the same model (default: MODEL.pt next to the model, if any).")
@click.option("--photo", type=click.Path(dir_okay=False), help="Photo to tile up to --size (default: the sample).")
@click.option("--size", default="12mp", show_default=True, help="Benchmark image size: 12mp, 48mp, 0.5mp or WxH.")
@click.option("--runtimes", "backends", default="torch,ort,openvino,trt", show_default=True,
              help="Comma-separated: torch, ort, openvino, trt (unavailable ones are reported as skipped).")
@click.option("--precisions", default="fp32,fp16,int8", show_default=True, help="Comma-separated: fp32, fp16, int8.")
@click.option("--tile", type=int, help="Tile size (default: the model's).")
@click.option("--overlap", type=int, help="Tile overlap (default: the model's).")
@click.option("--batch", type=click.IntRange(1), help="Tiles per call (default: rawedge infer's).")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="Inference threads (default: all cores).")
@click.option("--repeat", type=click.IntRange(1), default=3, show_default=True, help="Timed runs; the best counts.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report as JSON.")
def bench(model_path, checkpoint, photo, size, backends, precisions, tile, overlap, batch, threads, repeat, output):
    """Time one model on one photo across PyTorch eager, ONNX Runtime, OpenVINO and TensorRT.

    Each backend x precision runs in its own process: ms per megapixel, MP/s, peak RSS, and the PSNR
    of its RAW output against PyTorch FP32 (ONNX Runtime FP32 without a checkpoint).

    \b
    Example:  rawedge bench --model model.onnx --size 12mp --runtimes ort,openvino -o bench.json
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from rawedge.bench.speed import BACKENDS, parse_size, run_bench, summary_lines
    from rawedge.io.atomic import atomic_output
    from rawedge.io.photo import read_photo
    from rawedge.runtimes.factory import PRECISIONS

    model = Path(model_path) if model_path else default_model_path()
    if not model.is_file():
        raise RawedgeError(model, "no such model file")
    if checkpoint is None:
        candidate = model.with_suffix(".pt")
        checkpoint = candidate if candidate.is_file() else None
    pixels = parse_size(size)
    backend_list = _split(backends, BACKENDS, "runtime")
    precision_list = _split(precisions, PRECISIONS, "precision")
    source = read_photo(photo or _sample_photo())
    console = Console(stderr=True)

    def report(row):
        done = f"{row['ms_per_mp']:.0f} ms/MP" if row["status"] == "ok" else _short_reason(row.get("reason", ""))
        console.print(f"  {row['backend']:>8} {row['precision']:<4} {row['status']}: {done}", markup=False,
                      highlight=False)

    console.print(f"benchmarking {model.name} at {pixels / 1e6:.2f} MP")
    result = run_bench(model, source.srgb, source.exif, pixels, backend_list, precision_list, checkpoint=checkpoint,
                       tile=tile, overlap=overlap, batch=batch, threads=threads, repeat=repeat, on_result=report)
    table = Table(title=f"{model.name}: {result['width']}x{result['height']} ({result['megapixels']:.2f} MP), "
                        f"PSNR vs {result['reference'] or 'nothing'}")
    for col in ("runtime", "precision", "ms/MP", "MP/s", "peak RSS MB", "PSNR dB", "note"):
        table.add_column(col, justify="left" if col in ("runtime", "precision", "note") else "right")
    for row in result["results"]:
        if row["status"] == "ok":
            psnr_db = row.get("psnr_db")
            psnr_text = "identical" if row.get("identical") else ("-" if psnr_db is None else f"{psnr_db:.1f}")
            table.add_row(row["backend"], row["precision"], f"{row['ms_per_mp']:.0f}", f"{row['mp_per_s']:.2f}",
                          f"{row['peak_rss_mb']:.0f}", psnr_text, "")
        else:
            table.add_row(row["backend"], row["precision"], "", "", "", "",
                          escape(f"{row['status']}: {_short_reason(row.get('reason', ''))}"))
    Console().print(table)
    for line in summary_lines(result):
        click.echo(line)
    if any(row["status"] != "ok" for row in result["results"]):
        click.echo("(full reasons in the JSON report, -o)" if not output else f"(full reasons in {output})")
    if output:
        with atomic_output(output) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1, default=str))
        click.echo(f"wrote {output}")
