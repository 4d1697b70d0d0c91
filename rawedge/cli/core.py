"""Foundation commands: info, render, unprocess, profile."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import click
import numpy as np

from rawedge.errors import RawedgeError
from rawedge.filekinds import PHOTO_SUFFIXES
from rawedge.isp.pipeline import UNPROCESS_STRIP_ROWS  # module-level here so that tests can shrink the strips
from rawedge.outputs import refuse_existing


def _fmt_matrix(m) -> str:
    if m is None:
        return "unknown"
    return " | ".join(" ".join(f"{v:+.4f}" for v in row) for row in np.asarray(m))


def _exif_lines(exif) -> list[str]:
    def v(x, fmt="{}"):
        return "missing" if x is None else fmt.format(x)

    t = exif.exposure_time
    shutter = "missing" if t is None else (f"1/{1 / t:.0f} s" if t < 0.5 else f"{t:.2f} s")
    return [f"camera       {v(exif.make)} / {v(exif.model)}",
            f"exposure     {shutter}   ISO {v(exif.iso, '{:.0f}')}   f/{v(exif.f_number, '{:.1f}')}   "
            f"focal {v(exif.focal_length, '{:.1f} mm')}",
            f"orientation  {v(exif.orientation)}   date {v(exif.datetime)}"]


def describe_raw(path) -> list[str]:
    from rawedge.io.raw import read_raw

    raw = read_raw(path)
    h, w = raw.bayer.shape
    p = raw.profile
    return [f"{path}: RAW mosaic {w}x{h} ({w * h / 1e6:.1f} MP), CFA {raw.cfa}",
            f"levels       black {raw.black_level.tolist()}  white {raw.white_level:.0f}  "
            f"(data max {int(raw.bayer.max())})",
            f"white bal.   as-shot neutral {np.round(raw.as_shot_neutral, 4).tolist()}  "
            f"gains {np.round(raw.wb_gains(), 4).tolist()}",
            f"colour       XYZ->camera {_fmt_matrix(p.color_matrix)}",
            f"             camera->sRGB {_fmt_matrix(p.cam2rgb())}" + ("" if p.has_color_matrix else " (identity: no matrix)"),
            f"pixels       aspect {p.pixel_aspect:.4f}", *_exif_lines(raw.exif)]


def describe_photo(path) -> list[str]:
    from rawedge.io.photo import read_photo

    photo = read_photo(path)
    h, w, _ = photo.srgb.shape
    return [f"{path}: photo {w}x{h} ({w * h / 1e6:.1f} MP), {photo.srgb.dtype} RGB", *_exif_lines(photo.exif)]


def _short_kv(d: dict, width: int = 60) -> str:
    if not d:
        return "none"
    parts = []
    for k, v in sorted(d.items()):
        text = json.dumps(v) if isinstance(v, (dict, list)) else (f"{v:.4g}" if isinstance(v, float) else str(v))
        parts.append(f"{k}={text if len(text) <= width else text[:width - 3] + '...'}")
    return "  ".join(parts)


def describe_checkpoint(path) -> list[str]:
    """A rawedge training checkpoint (.pt): model, config, training progress and metrics (needs torch)."""
    from rawedge.models.checkpoint import read_checkpoint, weights_sha256

    ckpt = read_checkpoint(path)
    state = ckpt.get("state_dict") or {}
    params = sum(int(v.numel()) for v in state.values() if hasattr(v, "numel"))
    train_state = ckpt.get("train_state") or {}
    recipe = ckpt.get("recipe") or {}
    metrics = {k: v for k, v in (ckpt.get("metrics") or {}).items()}
    size = Path(path).stat().st_size
    lines = [f"{path}: rawedge checkpoint of model '{ckpt.get('model_name', '?')}', {params:,} parameters, "
             f"{size / 1e6:.2f} MB, made with rawedge {ckpt.get('rawedge_version') or '?'}",
             f"config       {_short_kv(dict(ckpt.get('config') or {}))}"]
    if train_state:
        lines.append(f"training     step {train_state.get('step', '?')}, epoch {train_state.get('epoch', '?')}"
                     f"{', best ' + format(train_state['best'], '.2f') if isinstance(train_state.get('best'), float) else ''}"
                     f", {train_state.get('world_size', 1)} process(es); resumable (rawedge train --resume {shlex.quote(str(path))})")
    else:
        steps = f"step {metrics['step']}, " if "step" in metrics else ""
        lines.append(f"training     {steps}weights only (no optimizer state: continue with --init, or export it)")
    lines.append(f"metrics      {_short_kv(metrics)}")
    for section in ("model", "data", "loss", "train"):
        if isinstance(recipe.get(section), dict) and recipe[section]:
            lines.append(f"recipe {section:<6}{_short_kv(recipe[section])}")
    cams = ", ".join(str(p.get("name", "?")) for p in ckpt.get("camera_profiles") or [] if isinstance(p, dict))
    lines.append(f"cameras      {cams or 'none'}")
    recorded = ckpt.get("weights_sha256") or ""
    same = bool(recorded) and weights_sha256(state) == recorded
    lines.append(f"weights      sha256 {recorded[:16] or 'none'}… "
                 + ("(match)" if same else "(DO NOT MATCH: modified or damaged)" if recorded else ""))
    lines.append(f"export       rawedge export {shlex.quote(str(path))}   (writes {Path(path).with_suffix('.onnx').name} beside it)")
    return lines


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
def info(file):
    """Describe a RAW, DNG, JPEG/PNG/TIFF, rawedge model (.onnx, .ort, .xml, .engine) or checkpoint (.pt) file.

    \b
    Example:  rawedge info photo.dng
    """
    path = Path(file)
    if not path.is_file():
        raise RawedgeError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        lines = describe_checkpoint(path)
    elif suffix in (".onnx", ".ort", ".xml", ".engine"):
        from rawedge.cli.model_info import describe_model

        lines = describe_model(path)
    elif suffix in PHOTO_SUFFIXES:
        lines = describe_photo(path)
    else:
        lines = describe_raw(path)
    for line in lines:
        click.echo(line)


@click.command()
@click.argument("raw_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="JPEG (or .png) to write.")
@click.option("--quality", default=92, show_default=True, type=click.IntRange(1, 100), help="JPEG quality.")
@click.option("--bright", default=1.0, show_default=True, help="LibRaw brightness multiplier.")
@click.option("--gamma", default="srgb", type=click.Choice(["srgb", "bt709"]), show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists (default: refuse, in any letter case).")
def render(raw_file, output, quality, bright, gamma, overwrite):
    """Render a RAW with LibRaw to an sRGB JPEG that keeps the original EXIF.

    The rendering is aligned pixel-for-pixel with the RAW mosaic (no rotation, no pixel-aspect stretch),
    so the pair can be used for training and evaluation.

    \b
    Example:  rawedge render CRW_0304.CRW -o CRW_0304.jpg
    """
    from rawedge.io.photo import write_jpeg, write_png
    from rawedge.io.raw import read_raw
    from rawedge.io.render import RenderSettings, render_raw

    refuse_existing([output], overwrite)
    raw = read_raw(raw_file)
    settings = RenderSettings(bright=bright, gamma=(2.4, 12.92) if gamma == "srgb" else (2.222, 4.5))
    rgb = render_raw(raw_file, settings)
    if Path(output).suffix.lower() == ".png":
        write_png(output, rgb, raw.exif)
    else:
        write_jpeg(output, rgb, raw.exif, quality=quality)
    click.echo(f"wrote {output} ({rgb.shape[1]}x{rgb.shape[0]})")


@click.command()
@click.argument("photo_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="DNG to write (default: PHOTO.dng).")
@click.option("--like", type=click.Path(dir_okay=False), help="A RAW file of the same camera: its profile and WB.")
@click.option("--camera-profile", type=click.Path(dir_okay=False), help="Camera profile JSON (rawedge profile).")
@click.option("--camera", help="Name of a bundled or camera-database profile (rawedge profile list).")
@click.option("--max-pixels", type=click.IntRange(1),
              help="Refuse photos larger than this many pixels (default 120 MP, or $RAWEDGE_MAX_PIXELS).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists (default: refuse, in any letter case).")
def unprocess(photo_file, output, like, camera_profile, camera, max_pixels, overwrite):
    """Analytic reverse ISP: sRGB photo -> DNG (inverse sRGB curve, inverse colour matrix, inverse WB, mosaic).

    \b
    Example:  rawedge unprocess photo.jpg -o photo.dng --like CRW_0304.CRW
    """
    from rawedge.io.dng import write_dng
    from rawedge.io.photo import read_photo
    from rawedge.isp.illuminant import estimate_wb
    from rawedge.isp.pipeline import unprocess_photo
    from rawedge.profiles import resolve_profile

    out = output or str(Path(photo_file).with_suffix(".dng"))
    if Path(out).exists() and Path(out).resolve() == Path(photo_file).resolve():
        raise RawedgeError(out, "the output would replace the photo itself; choose another -o")
    refuse_existing([out], overwrite)
    photo = read_photo(photo_file, max_pixels=max_pixels)
    if photo.converted_from:
        click.echo(f"{photo_file}: converted from its embedded ICC profile {photo.converted_from!r} to sRGB")
    for note in photo.exif.notes:
        click.echo(f"{photo_file}: {note}")
    profile, gains, how = resolve_profile(photo.exif, like=like, profile_json=camera_profile, camera=camera)
    if gains is None:
        gains, wb_how = estimate_wb(profile, photo.exif)
        how = f"{how}; {wb_how}"
    raw = unprocess_photo(photo.srgb, profile, gains, photo.exif, strip_rows=UNPROCESS_STRIP_ROWS)
    h, w = raw.bayer.shape
    write_dng(out, raw, preview=photo.srgb)
    from rawedge.roundtrip import round_trip

    figure, _ = round_trip(raw, photo.srgb)
    click.echo(f"wrote {out}: {w}x{h} {profile.cfa} mosaic, profile {profile.name} ({how}); round trip {figure:.1f} dB")


class _DefaultCommandGroup(click.Group):
    """A group whose first argument, when it names no subcommand, goes to ``default_command``: so
    ``rawedge profile RAW -o out.json`` keeps working beside ``rawedge profile list`` and ``show``."""

    default_command = "build"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultCommandGroup)
def profile():
    """Camera profiles: build one from RAW files, or list and show the known ones.

    \b
    Example:  rawedge profile CRW_0304.CRW -o g2.json       # from a RAW file (or a folder of them)
              rawedge profile list nikon                     # bundled and camera-database profiles
              rawedge profile show "Nikon D850"              # one of them as JSON
    """


@profile.command("build")
@click.argument("raw_path", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="JSON to write.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists (default: refuse, in any letter case).")
def profile_build(raw_path, output, overwrite):
    """Camera profile(s) from a RAW file, or from a folder of RAW files (one per camera, WB prior fitted).
    The default subcommand: ``rawedge profile RAW_OR_DIR -o profile.json``.

    \b
    Example:  rawedge profile CRW_0304.CRW -o g2.json
              rawedge profile raw_dir/ -o cameras.json
    """
    from rawedge.io.atomic import atomic_output
    from rawedge.io.raw import read_profile
    from rawedge.profiles import build_profiles

    refuse_existing([output], overwrite)
    if Path(raw_path).is_dir():
        profiles = build_profiles(raw_path)
        with atomic_output(output) as tmp:
            Path(tmp).write_text(json.dumps([p.to_dict() for p in profiles], indent=1))
        click.echo(f"wrote {output}: {len(profiles)} camera profiles ({', '.join(p.name for p in profiles)})")
    else:
        p = read_profile(raw_path)
        p.save(output)
        click.echo(f"wrote {output}: profile {p.name}")


@profile.command("list")
@click.argument("pattern", required=False)
def profile_list(pattern):
    """Known camera profiles (bundled, then the camera database from LibRaw's table) whose name contains
    every word of PATTERN (any case): name, black and white level, source.

    \b
    Example:  rawedge profile list "eos 5d"
    """
    from rawedge import cameradb
    from rawedge.profiles import bundled_profiles

    words = (pattern or "").lower().split()
    rows = [(p.name, p.black_level[0], p.white_level, "bundled (fitted on RAW files)")
            for p in bundled_profiles().values() if all(w in p.name.lower() for w in words)]
    defaulted = False
    for entry in cameradb.search(pattern):
        p = cameradb.to_profile(entry)
        mark = "" if entry.white else "*"
        defaulted |= not entry.white
        rows.append((p.name, p.black_level[0], f"{p.white_level:.0f}{mark}", "LibRaw table"))
    width = max([len(r[0]) for r in rows] + [4])
    click.echo(f"{'name':<{width}}  {'black':>5}  {'white':>6}  source")
    for name, black, white, source in rows:
        white = f"{white:.0f}" if isinstance(white, float) else white
        click.echo(f"{name:<{width}}  {black:>5.0f}  {white:>6}  {source}")
    click.echo(f"{len(rows)} camera profiles" + (f" matching {pattern!r}" if pattern else "")
               + ("; * white level not in the table (a default by maker)" if defaulted else ""))


@profile.command("show")
@click.argument("name")
def profile_show(name):
    """One known camera profile (bundled or camera database, any case) as JSON.

    \b
    Example:  rawedge profile show "Nikon D850" > d850.json
    """
    from rawedge.profiles import bundled_profiles, named_profile

    click.echo(json.dumps(named_profile(name, bundled_profiles()).to_dict(), indent=2))
