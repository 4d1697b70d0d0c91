"""`rawedge infer` (photos -> DNG/TIFF/NPY through an exported model) and `rawedge bench`.
Neither imports torch: `rawedge infer` works on a numpy + onnxruntime install."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import click
import numpy as np

from rawedge.cli import MAX_THREADS
from rawedge.cli.outputs import OVERWRITE_HINT, existing_output, is_dir_spec
from rawedge.errors import RawedgeError

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}
FORMATS = {"dng": ".dng", "tiff": ".tiff", "npy": ".npy"}


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
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES
                           and not p.name.startswith("."))
            if not found:
                raise RawedgeError(path, f"no photos ({', '.join(sorted(PHOTO_SUFFIXES))}) in this directory")
            photos.extend(found)
        elif path.is_file():
            photos.append(path)
        else:
            raise RawedgeError(path, "no such file or directory")
    return photos


EXTENSION_FORMATS = {".dng": "dng", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}


def _to_file(output: str | None, many: bool) -> bool:
    """Whether ``output`` names one output file (not a directory: several photos, ``DIR/`` or an existing one)."""
    return bool(output) and not many and not is_dir_spec(output) and not Path(output).is_dir()


def choose_format(output: str | None, fmt: str | None, many: bool) -> str:
    """The output format: ``--format``, else the output file's extension (.dng, .tif/.tiff, .npy), else dng.
    An extension that disagrees with ``--format`` is an error, never a TIFF under a .dng name."""
    if not _to_file(output, many):
        return fmt or "dng"
    ext = Path(output).suffix.lower()
    by_ext = EXTENSION_FORMATS.get(ext)
    if by_ext is None:
        raise RawedgeError(output, f"unknown output extension {ext or '(none)'}: use .dng, .tif/.tiff or .npy "
                                   "(or end the name with / for a directory)")
    if fmt and fmt != by_ext:
        raise RawedgeError(output, f"the extension {ext} is {by_ext}, but --format is {fmt}; "
                                   f"use {FORMATS[fmt]} or leave --format out")
    return by_ext


def output_paths(photos: list[Path], output: str | None, fmt: str, many: bool) -> list[Path]:
    """Where each photo's result goes: beside the photo, into the directory ``output`` (made if needed;
    several photos, an existing directory, or a name ending in /), or (one photo) at the file ``output``.
    Two photos that would write the same file (in any case) are refused up front, and so is an output
    that is its own photo."""
    suffix = FORMATS[fmt]
    if _to_file(output, many):
        targets = [Path(output)]
    elif output:
        out_dir = Path(output)
        if out_dir.exists() and not out_dir.is_dir():
            raise RawedgeError(out_dir, "several photos need an output directory, this is a file")
        if not out_dir.exists() and not is_dir_spec(output) and out_dir.suffix.lower() in EXTENSION_FORMATS:
            raise RawedgeError(out_dir, "several photos need an output directory, this names a file "
                                        "(end it with / for a directory of that name)")
        out_dir.mkdir(parents=True, exist_ok=True)
        targets = [out_dir / (p.stem + suffix) for p in photos]
    else:
        targets = [p.with_suffix(suffix) for p in photos]
    seen: dict[str, Path] = {}
    for photo, target in zip(photos, targets):
        key = str(target.parent / target.name.casefold())
        if key in seen:
            raise RawedgeError(target, f"both {seen[key]} and {photo} would write it; convert them separately")
        if target.exists() and target.resolve() == photo.resolve():
            raise RawedgeError(target, "the output would replace the photo itself; choose another -o")
        seen[key] = photo
    return targets


def output_parts(target: Path, confidence: bool = False, preview: bool = False) -> list[Path]:
    """Every file one photo's conversion writes: the result, and its confidence map and preview if asked."""
    return [target] + ([confidence_path(target)] if confidence else []) + ([preview_path(target)] if preview else [])


def plan_outputs(files: list[Path], targets: list[Path], parts, many: bool, overwrite: bool):
    """(photos to convert with their targets, photos skipped). Without ``overwrite``: one photo whose output
    exists is an error; in a batch (several photos, or a directory) a photo whose outputs all exist is
    skipped (atomic writes: a present output is complete), so a rerun of an interrupted batch converts
    exactly the missing ones; one with only some of its outputs present is an error."""
    if overwrite:
        return list(zip(files, targets)), []
    todo, skipped = [], []
    for photo, target in zip(files, targets):
        wanted = parts(target)
        present = [existing_output(p) for p in wanted]
        if not any(present):
            todo.append((photo, target))
            continue
        first = next(p for p in present if p is not None)
        if not many:
            raise RawedgeError(first, f"already exists; {OVERWRITE_HINT}")
        if not all(present):
            missing = next(p for p, q in zip(wanted, present) if q is None)
            raise RawedgeError(first, f"already exists but {missing.name} does not; pass --overwrite to redo {photo}")
        skipped.append(photo)
    return todo, skipped


def write_linear_tiff(path, raw) -> None:
    """16-bit TIFF of the linear camera RGB: the mosaic normalised to [0,1] (black 0, white 65535),
    bilinear-demosaiced at full resolution, not white-balanced, in camera (not sRGB) primaries."""
    import tifffile

    from rawedge.io.atomic import atomic_output
    from rawedge.isp.ops import demosaic_bilinear

    rgb = demosaic_bilinear(raw.normalized(), raw.cfa)
    data = np.round(np.clip(rgb, 0.0, 1.0) * 65535.0).astype(np.uint16)
    description = json.dumps({"rawedge": "linear camera RGB, bilinear demosaic, not white-balanced",
                              "cfa": raw.cfa, "wb_gains": np.round(raw.wb_gains(), 6).tolist(),
                              "camera_to_srgb": np.round(raw.profile.cam2rgb(), 6).tolist(),
                              "profile": raw.profile.name})
    with atomic_output(path, suffix=".tiff") as tmp:
        tifffile.imwrite(tmp, data, photometric="rgb", description=description, metadata=None)


def write_mosaic_npy(path, raw) -> None:
    """float32 HxW mosaic in [0,1] ((raw - black) / (white - black)), camera CFA phase at the origin."""
    from rawedge.io.atomic import atomic_output

    with atomic_output(path, suffix=".npy") as tmp:
        np.save(tmp, raw.normalized())


CONFIDENCE_SUFFIX = ".confidence.png"


def confidence_path(target: Path) -> Path:
    """Where ``--confidence`` puts the map of ``target`` (``photo.dng`` -> ``photo.confidence.png``)."""
    return target.with_name(target.stem + CONFIDENCE_SUFFIX)


PREVIEW_SUFFIX = ".preview.png"


def preview_path(target: Path) -> Path:
    """Where ``--preview`` puts the side-by-side of ``target`` (``photo.dng`` -> ``photo.preview.png``)."""
    return target.with_name(target.stem + PREVIEW_SUFFIX)


ROUND_TRIP_ROWS = 256  # even: a strip keeps the CFA phase


def round_trip(raw, srgb: np.ndarray, step: int = 0, rows: int = ROUND_TRIP_ROWS):
    """(PSNR in dB, the rendered-back image subsampled by ``step`` or None): the result rendered back to
    sRGB by rawedge's analytic ISP (rawedge.isp.pipeline.process: bilinear demosaic, the RawImage's white
    balance and camera->sRGB matrix) against the input photo. In strips of rows with a 2-row margin, so
    memory stays near one strip; the figure is rawedge.training.metrics.psnr of the whole images."""
    import dataclasses

    from rawedge.isp.pipeline import process
    from rawedge.training.metrics import psnr_from_mse

    h = raw.bayer.shape[0]
    scale = np.float32(255.0 if srgb.dtype == np.uint8 else 65535.0)
    gains, cam2rgb = raw.wb_gains(), raw.profile.cam2rgb()
    sse, count, small = 0.0, 0, []
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        lo, hi = max(0, r0 - 2), min(h, r1 + 2)
        part = dataclasses.replace(raw, bayer=raw.bayer[lo:hi], sigma=None)
        rgb = process(part.normalized(), raw.cfa, gains, cam2rgb)[r0 - lo:r1 - lo].astype(np.float32)
        ref = srgb[r0:r1].astype(np.float32) / scale
        sse += float(np.sum((rgb.astype(np.float64) - ref) ** 2))
        count += ref.size
        if step:
            small.append(rgb[(-r0) % step::step, ::step])
    figure = psnr_from_mse(sse / max(count, 1))
    return figure, (np.concatenate(small, axis=0) if step else None)


def preview_step(shape, max_side: int = 1024) -> int:
    """Subsampling of each preview panel: at most ``max_side`` pixels on its longer side."""
    return max(1, -(-max(shape[:2]) // max_side))


def write_preview(path: Path, srgb: np.ndarray, back: np.ndarray, sigma: np.ndarray | None, step: int) -> None:
    """8-bit PNG of panels side by side, each subsampled by ``step``: the photo | the result rendered back
    (``back``, already subsampled) | the confidence map (white: uncertain, 5 % of full scale and more) when
    there is one | the absolute difference of the two, times 4."""
    from PIL import Image

    from rawedge.io.atomic import atomic_output

    scale = np.float32(255.0 if srgb.dtype == np.uint8 else 65535.0)
    photo = srgb[::step, ::step].astype(np.float32) / scale
    panels = [photo, back]
    if sigma is not None:
        grey = np.clip(sigma[::step, ::step] / 0.05, 0.0, 1.0)
        panels.append(np.repeat(grey[..., None], 3, axis=2))
    panels.append(np.clip(np.abs(back - photo) * 4.0, 0.0, 1.0))
    sheet = np.concatenate(panels, axis=1)
    with atomic_output(path, suffix=".png") as tmp:
        Image.fromarray(np.round(sheet * 255.0).astype(np.uint8), "RGB").save(tmp, format="PNG")


def write_confidence(path: Path, sigma: np.ndarray) -> None:
    """16-bit grey PNG, one value per photosite: the predicted standard deviation of the RAW error in
    units of 1/65535 of the sensor range (white - black), so 0 is certain and 655 is 1 % of full scale."""
    from PIL import Image

    from rawedge.io.atomic import atomic_output

    levels = np.round(np.clip(sigma, 0.0, 1.0) * 65535.0).astype(np.uint16)
    with atomic_output(path, suffix=".png") as tmp:
        Image.fromarray(levels).save(tmp, format="PNG")


def write_result(path: Path, raw, fmt: str, preview: np.ndarray | None = None) -> None:
    """``preview``: the input photo, for the DNG's thumbnail."""
    if fmt == "dng":
        from rawedge.io.dng import write_dng

        write_dng(path, raw, preview=preview)
    elif fmt == "tiff":
        write_linear_tiff(path, raw)
    else:
        write_mosaic_npy(path, raw)


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
@click.option("--tile", type=int, help="Tile size in pixels (default: the model's; 0 = whole photo at once).")
@click.option("--overlap", type=int, help="Tile overlap in pixels (default: the model's).")
@click.option("--batch", type=click.IntRange(1), default=4, show_default=True, help="Tiles per inference call.")
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

    from rawedge.io.photo import read_photo
    from rawedge.isp.illuminant import estimate_wb
    from rawedge.profiles import resolve_profile
    from rawedge.runtimes import Reconstructor
    from rawedge.types import Exif

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
    if precision == "auto":
        from rawedge.runtimes.factory import auto_precision

        precision, why = auto_precision(model, runtime)
        click.echo(f"precision {precision} ({why})", err=True)
    rec = Reconstructor.open(model, runtime=runtime, precision=precision, tile=tile, overlap=overlap, batch=batch,
                             threads=threads)
    if confidence and not rec.has_confidence:
        rec.close()
        raise RawedgeError(model, "--confidence: this model has no confidence output ('sigma')")
    fixed = None
    if camera_profile or like:  # the same for every photo: resolve (and fail) once, before any work
        fixed = resolve_profile(Exif(), like=like, profile_json=camera_profile)
    elif camera:
        rec.choose_profile(Exif(), camera=camera)  # an unknown name fails once, before any work
    console = Console(stderr=True)
    done, failures = [], []
    with rec, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=console, transient=True, disable=not console.is_terminal) as progress:
        files_task = progress.add_task("photos", total=len(todo))
        tiles_task = progress.add_task("tiles", total=None)
        for photo_path, target in todo:
            progress.update(files_task, description=photo_path.name)
            written = []
            try:
                photo = read_photo(photo_path, max_pixels=max_pixels)
                if fixed:
                    profile, gains, how = fixed
                else:
                    (profile, how), gains = rec.choose_profile(photo.exif, camera=camera), None
                if gains is None:
                    gains, wb_how = estimate_wb(profile, photo.exif)
                    how = f"{how}; {wb_how}"
                want_sigma = confidence or (preview and rec.has_confidence)
                raw = rec.reconstruct_photo(photo, profile=profile, wb=gains, confidence=want_sigma,
                                            progress=lambda d, t: progress.update(tiles_task, completed=d, total=t))
                step = preview_step(photo.srgb.shape) if preview else 0
                figure, back = round_trip(raw, photo.srgb, step)
                try:  # no half result: the map and preview go with their DNG
                    if confidence:
                        write_confidence(confidence_path(target), raw.sigma)
                        written.append(confidence_path(target))
                    if preview:
                        write_preview(preview_path(target), photo.srgb, back, raw.sigma if want_sigma else None, step)
                        written.append(preview_path(target))
                    write_result(target, raw, fmt, preview=photo.srgb)
                except BaseException:
                    for extra in written:
                        extra.unlink(missing_ok=True)
                    raise
            except Exception as exc:  # noqa: BLE001 - reported per photo in the summary
                if not many and isinstance(exc, RawedgeError):
                    raise  # one photo: the usual one-line error
                failures.append((photo_path, _failure_reason(exc)))
                if not keep_going:
                    break
            else:
                done.append((photo_path, target, raw.bayer.shape, raw.cfa, raw.profile.name, how, figure,
                             photo.converted_from, photo.exif.notes))
                del raw, back
            finally:
                progress.advance(files_task)
    for photo_path, target, (h, w), cfa, name, how, figure, icc, exif_notes in done:
        if icc:
            click.echo(f"{photo_path}: converted from its embedded ICC profile {icc!r} to sRGB")
        for note in exif_notes:
            click.echo(f"{photo_path}: {note}")
        click.echo(f"wrote {target}: {w}x{h} {cfa} mosaic, profile {name} ({how}); round trip {figure:.1f} dB"
                   + (f"; confidence map {confidence_path(target)}" if confidence else "")
                   + (f"; preview {preview_path(target)}" if preview else ""))
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
@click.option("--batch", type=click.IntRange(1), default=4, show_default=True)
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
