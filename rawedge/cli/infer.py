"""`rawedge infer` (photos -> DNG/TIFF/NPY through an exported model): parse the options, plan the
outputs (rawedge.outputs), open the Reconstructor, convert the photos (rawedge.convert.convert_photos: decoding, the model and writing overlap) and
print. No torch: `rawedge infer` works on a numpy + onnxruntime install."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from rawedge.cli import MAX_THREADS
from rawedge.errors import RawedgeError
from rawedge.filekinds import PHOTO_SUFFIXES, scan
from rawedge.outputs import (
    FORMATS,
    choose_format,
    confidence_path,
    output_parts,
    output_paths,
    plan_outputs,
    preview_path,
)


def default_model_path() -> Path:
    """The bundled model (rawedge/assets/default.onnx), or a clear error telling the user what to pass."""
    path = Path(str(resources.files("rawedge").joinpath("assets/default.onnx")))
    if not path.is_file():
        raise RawedgeError(path, "no bundled model in this install; pass --model MODEL.onnx "
                                 "(make one with `rawedge export CHECKPOINT -o MODEL.onnx`)")
    return path


def collect_photos(inputs) -> list[Path]:
    """Files as given, plus the photos directly inside given directories (not recursive), sorted."""
    photos = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = scan(path, PHOTO_SUFFIXES)
            if not found:
                raise RawedgeError(path, f"no photos ({', '.join(sorted(PHOTO_SUFFIXES))}) in this directory")
            photos.extend(found)
        elif path.is_file():
            photos.append(path)
        else:
            raise RawedgeError(path, "no such file or directory")
    return photos


def _failure_reason(exc: BaseException) -> str:
    if isinstance(exc, RawedgeError):
        return exc.problem
    return f"{type(exc).__name__}: {exc}"


@click.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@click.option("--model", "model_path", type=click.Path(dir_okay=False),
              help="Exported rawedge model (.onnx; an OpenVINO .xml with --runtime openvino). Default: the bundled one.")
@click.option("--runtime", type=click.Choice(["ort", "openvino", "trt"]), default="ort", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8"]), default="auto", show_default=True,
              help="auto: the INT8 artefact <model>.<runtime>.int8.* (made by `rawedge calibrate`, which writes it "
                   "only when it passes its accuracy gate) when there is one, else fp32 (fp16 on trt).")
@click.option("--tile", type=int, help="Tile size in pixels (default: 1024, or the model's recommendation if larger, "
                                      "or on trt; 0 = whole photo at once).")
@click.option("--overlap", type=int, help="Tile overlap in pixels (default: the model's).")
@click.option("--batch", type=click.IntRange(1), help="Tiles per inference call (default: about 1 MP of tiles a call, "
                                                     "4 on trt).")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="Inference threads (default: all cores).")
@click.option("--camera", help="Name of a camera profile (embedded in the model, bundled, or in the camera database).")
@click.option("--camera-profile", type=click.Path(dir_okay=False),
              help="Camera profile JSON (from `rawedge profile` or `rawedge profile show`), for every photo.")
@click.option("--like", type=click.Path(dir_okay=False), help="A RAW file of the same camera: its profile and white balance.")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)),
              help="Default: chosen by the -o file's extension (.dng, .tif/.tiff, .npy), else dng; an extension "
                   "that disagrees with --format is an error. dng: CFA DNG with EXIF, colour data and a thumbnail; "
                   "tiff: 16-bit linear camera RGB (bilinear demosaic, not white-balanced, camera primaries; no "
                   "orientation, EXIF or colour tags: for analysis, not viewing); npy: float32 mosaic in [0,1].")
@click.option("-o", "--output", type=click.Path(),
              help="Output file (one photo), or directory (several photos, an existing directory, or a name "
                   "ending in /; made if needed). Default: beside each photo.")
@click.option("--overwrite", is_flag=True,
              help="Replace existing outputs. Without it one photo's existing output (in any letter case) is an "
                   "error, and a batch skips the photos whose outputs exist: rerun an interrupted batch to finish it.")
@click.option("--keep-going", is_flag=True, help="After a failed photo, go on with the others (default: stop).")
@click.option("--max-pixels", type=click.IntRange(1),
              help="Refuse photos larger than this many pixels (default 120 MP, or $RAWEDGE_MAX_PIXELS).")
@click.option("--confidence", is_flag=True,
              help="Also write OUTPUT.confidence.png: the model's predicted RAW error per photosite, 16-bit, in "
                   "1/65535 of the sensor range (needs a model with a confidence output).")
@click.option("--preview", is_flag=True,
              help="Also write OUTPUT.preview.png: the photo | the result rendered back by rawedge's ISP | the "
                   "confidence map (if the model has one) | the absolute difference (x4).")
def infer(photos, model_path, runtime, precision, tile, overlap, batch, threads, camera, camera_profile, like, fmt,
          output, overwrite, keep_going, max_pixels, confidence, preview):
    """Convert photos to camera RAW with an exported model (ONNX Runtime, OpenVINO or TensorRT).

    PHOTOS are JPEG/PNG/TIFF files or directories of them. Photos are cut into overlapping tiles, run in
    batches and blended; each result has the photo's size and its camera's CFA phase (a DNG also its EXIF).
    A photo with an embedded ICC profile other than sRGB (Adobe RGB, Display P3) is converted to sRGB first.
    Camera profile: --camera-profile JSON, --like RAW, --camera NAME, else the photo's EXIF model among the
    model's and the bundled profiles, then the camera database (rawedge profile list), else generic.
    Each result's line gives its round trip: the PSNR of the result rendered back by rawedge's ISP against
    the photo (low: the model is out of its depth; try `rawedge unprocess`). A failed photo leaves no
    output file; the summary lists failures and the exit status is 1 if any photo failed.

    \b
    Example:  rawedge infer photo.jpg -o photo.dng
              rawedge infer shoot/ --model model.onnx --runtime openvino -o raws/ --keep-going
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rawedge.convert import convert_photos, read_ahead
    from rawedge.runtimes import Reconstructor

    files = collect_photos(photos)
    many = len(files) > 1 or any(Path(p).is_dir() for p in photos)
    fmt = choose_format(output, fmt, many)
    targets = output_paths(files, output, fmt, many)
    todo, skipped = plan_outputs(files, targets, lambda t: output_parts(t, confidence, preview), many, overwrite)
    if skipped:
        click.echo(f"skipped {len(skipped)} of {len(files)} photos whose output exists (--overwrite redoes them)")
    if not todo:
        return
    model = Path(model_path) if model_path else default_model_path()
    ahead = {todo[0][0]: read_ahead(todo[0][0], max_pixels)}  # decodes while the model loads
    if precision == "auto":
        from rawedge.runtimes.factory import auto_precision

        precision, why = auto_precision(model, runtime)
        click.echo(f"precision {precision} ({why})", err=True)
    rec = Reconstructor.open(model, runtime=runtime, precision=precision, tile=tile, overlap=overlap, batch=batch,
                             threads=threads, confidence=confidence or preview)
    console = Console(stderr=True)
    done, failures = [], []
    with rec:
        if confidence and not rec.has_confidence:
            raise RawedgeError(model, "--confidence: this model has no confidence output ('sigma')")
        # the same for every photo: resolved (and failing) once, before any work
        options = rec.camera_options(camera=camera, camera_profile=camera_profile, like=like)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True, disable=not console.is_terminal) as progress:
            files_task = progress.add_task("photos", total=len(todo))
            tiles_task = progress.add_task("tiles", total=None)
            results = convert_photos(rec, todo, fmt, options, confidence, preview, max_pixels,
                                     lambda d, t: progress.update(tiles_task, completed=d, total=t), ahead)
            for photo_path, result in results:
                progress.update(files_task, description=photo_path.name)
                progress.advance(files_task)
                if not isinstance(result, Exception):
                    done.append(result)
                    continue
                if not many and isinstance(result, RawedgeError):
                    raise result  # one photo: the usual one-line error
                failures.append((photo_path, _failure_reason(result)))
                if not keep_going:
                    results.close()  # nothing after the failure is written
                    break
    for c in done:
        if c.converted_from:
            click.echo(f"{c.photo}: converted from its embedded ICC profile {c.converted_from!r} to sRGB")
        for note in c.notes:
            click.echo(f"{c.photo}: {note}")
        click.echo(f"wrote {c.target}: {c.width}x{c.height} {c.cfa} mosaic, profile {c.profile} ({c.how}); "
                   f"round trip {c.round_trip_db:.1f} dB"
                   + (f"; confidence map {confidence_path(c.target)}" if confidence else "")
                   + (f"; preview {preview_path(c.target)}" if preview else ""))
    if failures:
        not_tried = len(todo) - len(done) - len(failures)
        click.echo(f"rawedge: {len(failures)} of {len(todo)} photos failed"
                   + (f", {not_tried} not attempted (use --keep-going to go on after a failure)" if not_tried else "")
                   + ":", err=True)
        for photo_path, reason in failures:
            click.echo(f"  {photo_path}: {reason}", err=True)
        raise SystemExit(1)
    if len(files) > 1:
        click.echo(f"converted {len(done)} photos with {model.name} on {runtime}"
                   + (f" ({len(skipped)} skipped: output exists)" if skipped else ""))
