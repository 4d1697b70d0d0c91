"""Training-side commands: ``data prepare``, ``train``, ``eval``, ``finetune``.

Nothing here imports torch at import time (the CLI must start on a torch-free install)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from rawedge.data.manifest import KINDS
from rawedge.errors import RawedgeError


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[item]}"), transient=False)


@click.group()
def data():
    """Training data: paired sRGB/RAW samples."""


@data.command("prepare")
@click.argument("raw_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Data folder to write (manifest.json, raw/, srgb/).")
@click.option("--renders", default=2, show_default=True, type=click.IntRange(0, 64),
              help="LibRaw renderings per RAW file (random WB, brightness, curve, demosaic; JPEG 80-95).")
@click.option("--camera-jpeg/--no-camera-jpeg", default=True, show_default=True,
              help="Pair the camera's embedded JPEG preview, aligned to the sensor, where there is one.")
@click.option("--synthetic-from", type=click.Path(file_okay=False), help="Folder of sRGB photos to unprocess.")
@click.option("--synthetic", default=None, type=click.IntRange(0, 100000),
              help="Number of synthetic pairs (default: one per photo of --synthetic-from).")
@click.option("--synthetic-input", default="rerender", type=click.Choice(["rerender", "original"]),
              show_default=True, help="Input of synthetic pairs: re-rendered from the noisy RAW, or the photo.")
@click.option("--val-fraction", default=0.25, show_default=True, type=float,
              help="Fraction of each camera's source files held out for validation.")
@click.option("--seed", default=0, show_default=True, type=int)
def prepare(raw_dir, out_dir, renders, camera_jpeg, synthetic_from, synthetic, synthetic_input, val_fraction, seed):
    """Make training pairs from a folder of RAW files (and optionally sRGB photos).

    Ground truth is each RAW's normalised Bayer mosaic in RGGB phase; inputs are LibRaw renderings, the
    camera's own JPEG preview (aligned and binned) and synthetic unprocessed photos. Splits are by source
    file, stratified per camera.

    \b
    Example:  rawedge data prepare ../shared/data/raw -o data/pairs --renders 2 \\
                  --synthetic-from ../shared/data/photos/kodak --synthetic 24
    """
    from rawedge.data.pairs import PrepareOptions, photo_files, raw_files
    from rawedge.data.pairs import prepare as prepare_pairs

    if synthetic and not synthetic_from:
        raise RawedgeError(None, "--synthetic needs --synthetic-from PHOTO_DIR")
    if synthetic_from and synthetic is None:
        synthetic = len(photo_files(Path(synthetic_from)))
    options = PrepareOptions(renders=renders, camera_jpeg=camera_jpeg, synthetic_from=synthetic_from,
                             synthetic=synthetic or 0, synthetic_input=synthetic_input,
                             val_fraction=val_fraction, seed=seed)
    total = len(raw_files(Path(raw_dir))) + (1 if synthetic_from and synthetic else 0)
    with _progress() as bar:
        task = bar.add_task("pairs", total=total, item="")
        state = {"first": True}

        def step(item):
            if not state["first"]:
                bar.advance(task)
            state["first"] = False
            bar.update(task, item=item)

        manifest = prepare_pairs(raw_dir, out_dir, options, on_step=step)
        bar.advance(task)
    counts = {k: sum(s.kind == k for s in manifest.samples) for k in ("libraw", "camera_jpeg", "synthetic")}
    click.echo(f"wrote {out_dir}: {len(manifest.samples)} pairs ({', '.join(f'{v} {k}' for k, v in counts.items())}); "
               f"{len(manifest.sources('train'))} train / {len(manifest.sources('val'))} val sources, "
               f"{len(manifest.cameras)} cameras")
    for skip in manifest.skipped:
        click.echo(f"skipped {skip['kind']} of {skip['source']}: {skip['reason']}")
    aligned = [s.alignment for s in manifest.samples if s.alignment]
    if aligned:
        click.echo(f"camera JPEG alignment: NCC min {min(a['ncc'] for a in aligned):.3f}, residual shift max "
                   f"{max(a['residual_shift_px'] for a in aligned):.2f} px")


def _recipe_dict(config, resume) -> dict:
    """Starting point: the YAML file, else the recipe stored in the checkpoint being resumed, else defaults."""
    import yaml

    if config:
        path = Path(config)
        if not path.is_file():
            raise RawedgeError(path, "no such recipe file")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except UnicodeDecodeError:
            raise RawedgeError(path, "not a text (YAML) recipe") from None
        except yaml.YAMLError as exc:
            raise RawedgeError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(d, dict):
            raise RawedgeError(path, "a recipe must be a YAML mapping (model:, data:, loss:, train: ...)")
        for section, value in d.items():
            if value is None:
                d[section] = {}
            elif section != "name" and section != "notes" and not isinstance(value, dict):
                raise RawedgeError(path, f"recipe section {section!r} must be a mapping")
        return d
    if resume:
        from rawedge.models.checkpoint import read_checkpoint

        return dict(read_checkpoint(resume).get("recipe") or {})
    return {}


def _yaml_mapping(text, what):
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise RawedgeError(None, f"{what} expects a mapping such as '{{width: 16, depth: 3}}', got {text!r}")
    return value


RUN_FILES = ("log.jsonl", "last.pt", "best.pt", "recipe.yaml")


def check_run_folder(out: Path, resume, overwrite: bool) -> None:
    """A run folder that is not empty is another run's: refused unless ``--resume`` continues it or
    ``--overwrite`` starts afresh (then the old run's log and checkpoints go, so nothing mixes)."""
    if resume or not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    if not overwrite:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        last = out / "last.pt"
        how = f"--resume {last} to continue it, " if last.is_file() else ""
        raise RawedgeError(out, f"the run folder is not empty ({shown}); pass {how}--overwrite to start afresh, "
                                "or another --out")
    if int(os.environ.get("RANK", "0")) == 0:
        for path in [out / name for name in RUN_FILES] + sorted(out.glob("step_*.pt")):
            path.unlink(missing_ok=True)


@click.command("train")
@click.option("--config", type=click.Path(dir_okay=False), help="Recipe YAML (see recipes/).")
@click.option("--model", help="Registry model name (unet, paramisp, analytic...).")
@click.option("--model-config", help="Model options as YAML, e.g. '{width: 16, depth: 3}'.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), help="Data folder from `rawedge data prepare`.")
@click.option("--loss", help="Registry loss name (raw_l1, raw_l2, edit_aware...).")
@click.option("--loss-config", help="Loss options as YAML.")
@click.option("--epochs", type=click.IntRange(1), help="Epochs.")
@click.option("--steps", type=click.IntRange(1), help="Stop after this many optimisation steps.")
@click.option("--batch", type=click.IntRange(1), help="Crops per batch (per process).")
@click.option("--crop", type=click.IntRange(2), help="Crop size (a multiple of the model's align).")
@click.option("--lr", type=float, help="Peak learning rate.")
@click.option("--seed", type=int, help="Seed of initialisation, crops and shuffling.")
@click.option("--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (checkpoints, log.jsonl).")
@click.option("--set", "assignments", multiple=True, help="Any recipe value: section.key=value (repeatable).")
@click.option("--resume", type=click.Path(dir_okay=False), help="Continue from a checkpoint of this run (last.pt).")
@click.option("--init", type=click.Path(dir_okay=False),
              help="Start from this checkpoint's weights and buffers (its model and config unless given).")
@click.option("--overwrite", is_flag=True,
              help="Start afresh in a run folder that is not empty (its log, last/best/step checkpoints are replaced).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def train(config, model, model_config, data_dir, loss, loss_config, epochs, steps, batch, crop, lr, seed, device, out,
          assignments, resume, init, overwrite, progress):
    """Train a reverse-ISP model from a recipe and/or flags (flags win over the recipe).

    Runs in one process, or as DDP under torchrun (gloo on CPU, NCCL on CUDA):
    torchrun --standalone --nproc_per_node 2 -m rawedge.cli train --config recipes/unet_small.yaml

    \b
    Example:  rawedge train --config recipes/unet_small.yaml --data data/pairs --out runs/unet_small
              rawedge train --model unet --data data/pairs --loss raw_l1 --epochs 5 --out runs/x
    """
    from rawedge.training.recipe import Recipe, apply_overrides
    from rawedge.training.trainer import train as run_training

    d = _recipe_dict(config, resume)
    flags = {"model.name": model, "data.dir": data_dir, "loss.name": loss, "train.epochs": epochs,
             "train.max_steps": steps, "data.batch": batch, "data.crop": crop, "optimizer.lr": lr,
             "train.seed": seed, "train.device": device, "train.out": out}
    for key, value in flags.items():
        if value is not None:
            section, leaf = key.split(".")
            d.setdefault(section, {})[leaf] = value
    if model_config:
        d.setdefault("model", {})["config"] = _yaml_mapping(model_config, "--model-config")
    if loss_config:
        d.setdefault("loss", {})["config"] = _yaml_mapping(loss_config, "--loss-config")
    if init:  # the checkpoint's model and config unless the recipe or flags name them
        from rawedge.models.checkpoint import read_checkpoint

        ckpt = read_checkpoint(init)
        spec = d.setdefault("model", {})
        if spec.setdefault("name", ckpt["model_name"]) == ckpt["model_name"] and "config" not in spec:
            spec["config"] = dict(ckpt["config"])
        spec["init"] = str(init)
    recipe = Recipe.from_dict(apply_overrides(d, list(assignments)), config)
    check_run_folder(Path(recipe.train.out), resume, overwrite)
    result = run_training(recipe, resume=resume, show_progress=progress)
    if int(os.environ.get("RANK", "0")) == 0:
        m = result.metrics
        val = f", val RAW PSNR {m['val_raw_psnr']:.2f} dB (best {m['best_val_raw_psnr']:.2f})" if "val_raw_psnr" in m else ""
        click.echo(f"trained {recipe.model.name} for {result.steps} steps{val}; wrote {result.last}"
                   + (f" and {result.best}" if result.best else ""))


@click.command("eval")
@click.argument("model", type=str)
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--split", default="val", show_default=True, type=click.Choice(["val", "train", "all"]))
@click.option("--kind", "kinds", multiple=True, type=click.Choice(list(KINDS)),
              help="Only these kinds of pairs (repeatable; default all).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="JSON report to write.")
@click.option("--figure", type=click.Path(dir_okay=False), help="PNG figure to write.")
@click.option("--tile", default=512, show_default=True, type=click.IntRange(16), help="Tile size (pixels).")
@click.option("--overlap", default=64, show_default=True, type=click.IntRange(0), help="Tile overlap (pixels).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--max-images", type=click.IntRange(1), help="Score only the first N images of the split.")
@click.option("--crop", type=click.IntRange(16), help="Score the central CROPxCROP of each image (default: whole).")
def evaluate(model, data_dir, split, kinds, output, figure, tile, overlap, device, max_images, crop):
    """Score a checkpoint (or "analytic") on a data folder, next to the analytic reverse ISP.

    RAW PSNR/SSIM on packed RGGB in [0, 1], scale-invariant RAW PSNR (after the best scalar gain) and the
    exposure error in stops (log2 of mean prediction over mean truth, unsaturated pixels), and sRGB
    PSNR/SSIM/ΔE2000 after each of five fixed edits, overall, per kind of pair and per camera; for a model
    with a confidence output, its calibration (observed RMS error by decile of predicted sigma).

    \b
    Example:  rawedge eval runs/unet_small/best.pt data/pairs -o eval.json --figure eval.png
    """
    from rawedge.training.evaluate import evaluate as run_eval
    from rawedge.training.evaluate import write_figure, write_report

    for target in (output, figure):
        if target:
            from rawedge.io.atomic import check_output_dir

            check_output_dir(target)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("eval", total=None)
        report, worst = run_eval(model, data_dir, split=split, kinds=list(kinds) or None, tile=tile, overlap=overlap,
                                 device=device, max_samples=max_images, center_crop=crop,
                                 on_step=lambda sid: bar.update(task, description=sid, advance=1))
    if output:
        write_report(report, output)
    if figure:
        write_figure(report, worst, figure)
    name = report["model"]["name"]
    what = f"central {crop}x{crop} of " if crop else ""
    click.echo(f"{what}{report['data']['images']} images ({split}); RAW metrics on packed RGGB in [0, 1]")
    header = f"{'':26}{name:>22}{'analytic':>22}"
    click.echo(header)
    s = report["summary"]

    def row(label, get, fmt):
        click.echo(f"{label:26}{fmt.format(*get(s['model'])):>22}{fmt.format(*get(s['analytic'])):>22}")

    row("RAW PSNR / SSIM", lambda m: (m["raw"]["psnr"], m["raw"]["ssim"]), "{:.2f} dB / {:.4f}")
    row("scale-invariant RAW PSNR", lambda m: (m["raw"]["si_psnr"],), "{:.2f} dB")
    row("exposure error (median |.|)", lambda m: (m["raw"]["exposure_abs_median_stops"],), "{:.2f} stops")
    for edit in s["model"]["srgb"]:
        row(f"sRGB {edit} PSNR / ΔE", lambda m, e=edit: (m["srgb"][e]["psnr"], m["srgb"][e]["delta_e2000"]),
            "{:.2f} dB / {:.2f}")
    for title, key in (("per kind", "by_kind"), ("per camera", "by_camera")):
        click.echo(f"RAW PSNR {title} ({name} vs analytic):")
        for group, g in report[key].items():
            click.echo(f"  {group}: {g['model']['raw']['psnr']:.2f} vs {g['analytic']['raw']['psnr']:.2f} dB "
                       f"({g['model']['n']} images)")
    if "confidence" in report:
        click.echo("confidence calibration (decile of predicted sigma: mean sigma -> observed RMS error):")
        for b in report["confidence"]["deciles"]:
            click.echo(f"  {b['bin'] + 1:2d}: {b['sigma']:.4f} -> {b['rms_error']:.4f}")
    for target in (output, figure):
        if target:
            click.echo(f"wrote {target}")


@click.command("finetune")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("photo", type=click.Path(dir_okay=False))
@click.option("--sample", "sample_path", required=True, type=click.Path(dir_okay=False),
              help="RAW sample: an .npz crop (raw, top, left, cfa, ...) or a RAW file of the same shot.")
@click.option("--crop", help="With a RAW file: LEFT,TOP,WIDTH,HEIGHT of the sample in photo pixels "
                             "(default: the central 256x256).")
@click.option("--edit", "edit_text", default="default", show_default=True,
              help="Target edit: a fixed edit name and/or ev=, wb=R:G:B, style=, tone=, curve= (comma-separated).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Tuned checkpoint to write.")
@click.option("--steps", default=50, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=1e-4, show_default=True, type=float)
@click.option("--raw-weight", default=1.0, show_default=True, type=float, help="Weight of the RAW MSE.")
@click.option("--srgb-weight", default=1.0, show_default=True, type=float, help="Weight of the edited-sRGB MSE.")
@click.option("--like", type=click.Path(dir_okay=False), help="RAW file for WB and colour matrix (npz samples without them).")
@click.option("--camera", help="Bundled camera profile for the colour matrix (npz samples without one).")
@click.option("--device", default="cpu", show_default=True)
def finetune(model, photo, sample_path, crop, edit_text, output, steps, lr, raw_weight, srgb_weight, like, camera,
             device):
    """Adapt a model to one photo and one edit with a small crop of the true RAW (edit-aware fine-tuning).

    The photo must be on the RAW's pixel grid (a camera JPEG or `rawedge render` output of that RAW).

    \b
    Example:  rawedge finetune runs/unet_small/best.pt photo.jpg --sample CRW_0117.CRW \\
                  --crop 1000,700,256,256 --edit ev=+0.5 -o tuned.pt
    """
    from rawedge.io.atomic import check_output_dir
    from rawedge.io.photo import read_photo
    from rawedge.models.checkpoint import load_checkpoint, save_checkpoint
    from rawedge.profiles import resolve_profile
    from rawedge.training.finetune import finetune as run_finetune
    from rawedge.training.finetune import load_raw_sample, parse_edit

    check_output_dir(output)
    edit = parse_edit(edit_text)
    net, ckpt = load_checkpoint(model)
    picture = read_photo(photo)
    sample = load_raw_sample(sample_path, crop)
    wb, cam2rgb = sample.wb, sample.cam2rgb
    if wb is None or cam2rgb is None or like or camera:
        profile, gains, _ = resolve_profile(picture.exif, like=like, camera=camera)
        wb = gains if gains is not None else (wb if wb is not None else profile.typical_wb_gains())
        cam2rgb = profile.cam2rgb() if (like or camera or cam2rgb is None) else cam2rgb
    report = run_finetune(net, picture.to_float(), sample, edit, wb=wb, cam2rgb=cam2rgb,
                          exif=picture.exif.to_vector(), steps=steps, lr=lr, raw_weight=raw_weight,
                          srgb_weight=srgb_weight, device=device)
    report.update(base_checkpoint=str(model), base_weights_sha256=ckpt.get("weights_sha256"), photo=str(photo))
    save_checkpoint(output, net.cpu(), camera_profiles=ckpt.get("camera_profiles"), recipe=ckpt.get("recipe"),
                    metrics={**(ckpt.get("metrics") or {}), "finetune_after": report["after"]},
                    extra={**(ckpt.get("extra") or {}), "finetune": report})
    b, a = report["before"], report["after"]
    click.echo(f"edit {edit.name!r}, {steps} steps on a {report['sample']['width']}x{report['sample']['height']} sample: "
               f"edited sRGB PSNR {b['srgb_psnr']:.2f} -> {a['srgb_psnr']:.2f} dB, RAW PSNR {b['raw_psnr']:.2f} -> "
               f"{a['raw_psnr']:.2f} dB (on the sample); wrote {output}")
