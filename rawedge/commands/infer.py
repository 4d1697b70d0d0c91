"""`rawedge infer` (photos -> DNG/TIFF/NPY through an exported model) and `rawedge bench`.
Neither imports torch: `rawedge infer` works on a numpy + onnxruntime install."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import click
import numpy as np

from rawedge.commands import MAX_THREADS
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


def output_paths(photos: list[Path], output: str | None, fmt: str, many: bool) -> list[Path]:
    """Where each photo's result goes: beside the photo, into the directory ``output``, or (one photo)
    at the file ``output``. Two photos that would write the same file are refused up front."""
    suffix = FORMATS[fmt]
    if output and not many and not Path(output).is_dir():
        return [Path(output)]
    if output:
        out_dir = Path(output)
        if out_dir.exists() and not out_dir.is_dir():
            raise RawedgeError(out_dir, "several photos need an output directory, this is a file")
        out_dir.mkdir(parents=True, exist_ok=True)
        targets = [out_dir / (p.stem + suffix) for p in photos]
    else:
        targets = [p.with_suffix(suffix) for p in photos]
    seen: dict[Path, Path] = {}
    for photo, target in zip(photos, targets):
        if target in seen:
            raise RawedgeError(target, f"both {seen[target]} and {photo} would write it; convert them separately")
        seen[target] = photo
    return targets


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
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]),
              help="Default fp32 (fp16 on trt). int8 uses <model>.<runtime>.int8.* made by `rawedge calibrate`.")
@click.option("--tile", type=int, help="Tile size in pixels (default: the model's; 0 = whole photo at once).")
@click.option("--overlap", type=int, help="Tile overlap in pixels (default: the model's).")
@click.option("--batch", type=click.IntRange(1), default=4, show_default=True, help="Tiles per inference call.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="Inference threads (default: all cores).")
@click.option("--camera", help="Name of a camera profile (embedded in the model, bundled, or in the camera database).")
@click.option("--like", type=click.Path(dir_okay=False), help="A RAW file of the same camera: its profile and white balance.")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="dng", show_default=True,
              help="dng: CFA DNG with EXIF, colour data and a thumbnail; tiff: 16-bit linear camera RGB (bilinear "
                   "demosaic, not white-balanced, camera primaries; no orientation, EXIF or colour tags: for analysis, "
                   "not viewing); npy: float32 mosaic in [0,1].")
@click.option("-o", "--output", type=click.Path(), help="Output file (one photo) or directory (default: beside each photo).")
@click.option("--keep-going", is_flag=True, help="After a failed photo, go on with the others (default: stop).")
@click.option("--max-pixels", type=click.IntRange(1),
              help="Refuse photos larger than this many pixels (default 120 MP, or $RAWEDGE_MAX_PIXELS).")
@click.option("--confidence", is_flag=True,
              help="Also write OUTPUT.confidence.png: the model's predicted RAW error per photosite, 16-bit, in "
                   "1/65535 of the sensor range (needs a model with a confidence output).")
def infer(photos, model_path, runtime, precision, tile, overlap, batch, threads, camera, like, fmt, output,
          keep_going, max_pixels, confidence):
    """Convert photos to camera RAW with an exported model (ONNX Runtime, OpenVINO or TensorRT).

    PHOTOS are JPEG/PNG/TIFF files or directories of them. Photos are cut into overlapping tiles, run in
    batches and blended; each result has the photo's size and its camera's CFA phase (a DNG also its EXIF).
    Camera profile: --like RAW, --camera NAME, else the photo's EXIF model among the model's and the
    bundled profiles, then the camera database (rawedge profile list), else generic. A failed photo leaves no output file; the summary lists failures
    and the exit status is 1 if any photo failed.

    \b
    Example:  rawedge infer photo.jpg --model model.onnx -o photo.dng
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
    targets = output_paths(files, output, fmt, many)
    model = Path(model_path) if model_path else default_model_path()
    rec = Reconstructor.open(model, runtime=runtime, precision=precision, tile=tile, overlap=overlap, batch=batch,
                             threads=threads)
    if confidence and not rec.has_confidence:
        rec.close()
        raise RawedgeError(model, "--confidence: this model has no confidence output ('sigma')")
    fixed = None
    if like:  # the same for every photo: resolve (and fail) once, before any work
        fixed = resolve_profile(Exif(), like=like)
    elif camera:
        rec.choose_profile(Exif(), camera=camera)  # an unknown name fails once, before any work
    console = Console(stderr=True)
    done, failures = [], []
    with rec, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=console, transient=True, disable=not console.is_terminal) as progress:
        files_task = progress.add_task("photos", total=len(files))
        tiles_task = progress.add_task("tiles", total=None)
        for photo_path, target in zip(files, targets):
            progress.update(files_task, description=photo_path.name)
            try:
                photo = read_photo(photo_path, max_pixels=max_pixels)
                if fixed:
                    profile, gains, how = fixed
                else:
                    (profile, how), gains = rec.choose_profile(photo.exif, camera=camera), None
                if gains is None:
                    gains, wb_how = estimate_wb(profile, photo.exif)
                    how = f"{how}; {wb_how}"
                raw = rec.reconstruct_photo(photo, profile=profile, wb=gains, confidence=confidence,
                                            progress=lambda d, t: progress.update(tiles_task, completed=d, total=t))
                if confidence:
                    write_confidence(confidence_path(target), raw.sigma)
                try:
                    write_result(target, raw, fmt, preview=photo.srgb)
                except BaseException:
                    if confidence:  # no half result: the map goes with its DNG
                        confidence_path(target).unlink(missing_ok=True)
                    raise
            except Exception as exc:  # noqa: BLE001 - reported per photo in the summary
                if not many and isinstance(exc, RawedgeError):
                    raise  # one photo: the usual one-line error
                failures.append((photo_path, _failure_reason(exc)))
                if not keep_going:
                    break
            else:
                done.append((target, raw.bayer.shape, raw.cfa, raw.profile.name, how))
                del raw
            finally:
                progress.advance(files_task)
    for target, (h, w), cfa, name, how in done:
        click.echo(f"wrote {target}: {w}x{h} {cfa} mosaic, profile {name} ({how})"
                   + (f"; confidence map {confidence_path(target)}" if confidence else ""))
    if failures:
        skipped = len(files) - len(done) - len(failures)
        click.echo(f"rawedge: {len(failures)} of {len(files)} photos failed"
                   + (f", {skipped} not attempted (use --keep-going to go on after a failure)" if skipped else "")
                   + ":", err=True)
        for photo_path, reason in failures:
            click.echo(f"  {photo_path}: {reason}", err=True)
        raise SystemExit(1)
    if len(files) > 1:
        click.echo(f"converted {len(done)} photos with {model.name} on {runtime}")


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

    from rawedge.bench import BACKENDS, parse_size, run_bench
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
    if any(row["status"] != "ok" for row in result["results"]):
        click.echo("(full reasons in the JSON report, -o)" if not output else f"(full reasons in {output})")
    if output:
        with atomic_output(output) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=1, default=str))
        click.echo(f"wrote {output}")
