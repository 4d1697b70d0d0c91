"""``rawedge prior build``: the PriorRAW prior table of one camera, stored in a priorraw checkpoint."""
from __future__ import annotations

import fnmatch
from pathlib import Path

import click

from rawedge.cli import MAX_THREADS
from rawedge.errors import RawedgeError


def _raw_files(refs, exclude) -> list[Path]:
    from rawedge.profiles import RAW_SUFFIXES

    files = []
    for ref in refs:
        p = Path(ref)
        found = sorted(f for f in p.iterdir() if f.suffix.lower() in RAW_SUFFIXES) if p.is_dir() else [p]
        files += [f for f in found if not any(fnmatch.fnmatch(f.name, pat) for pat in exclude)]
    if not files:
        raise RawedgeError(refs[0] if refs else None, "no RAW files found")
    return files


def _camera_files(files, camera):
    """The files of one camera, and its profile; several cameras without --camera is an error."""
    from rawedge.io.raw import read_raw

    by_camera: dict[str, list] = {}
    profiles = {}
    for f in files:
        raw = read_raw(f)
        by_camera.setdefault(raw.profile.name, []).append(f)
        profiles.setdefault(raw.profile.name, raw.profile)
    if camera is None:
        if len(by_camera) > 1:
            raise RawedgeError(None, "the reference files come from several cameras ("
                               + ", ".join(f"{k}: {len(v)}" for k, v in sorted(by_camera.items()))
                               + "); a prior table is per camera: pick one with --camera NAME")
        camera = next(iter(by_camera))
    match = {k.lower(): k for k in by_camera}.get(camera.lower())
    partial = [k for k in by_camera if camera.lower() in k.lower()]
    if match is None and len(partial) == 1:
        match = partial[0]
    if match is None:
        raise RawedgeError(None, f"no reference file of camera {camera!r}; found: {', '.join(sorted(by_camera))}")
    return by_camera[match], profiles[match]


def _parse_options(options) -> dict:
    import yaml

    out = {}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or not key:
            raise RawedgeError(None, f"--set {opt!r}: expected key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


@click.group()
def prior():
    """PriorRAW prior metadata: per-camera tables of reference RAW pixels.

    \b
    Example:  rawedge prior build priorraw --refs raw_dir/ --camera "PowerShot S40" --train-encoder-steps 300 -o s40.pt
    """


@prior.command("build")
@click.argument("model")
@click.option("--refs", multiple=True, type=click.Path(exists=True),
              help="RAW file or folder of RAW files of the camera (repeatable). Use training files only.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True),
              help="Instead of --refs: the train split of a data folder (`rawedge data prepare`).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Checkpoint to write.")
@click.option("--kinds", multiple=True, type=click.Choice(["libraw", "camera_jpeg", "synthetic"]),
              help="With --data: pair kinds to use (repeatable; default libraw and camera_jpeg, the real sensor data).")
@click.option("--camera", help="Camera (profile name) to take from the references when they hold several.")
@click.option("--exclude", multiple=True, help="Glob of file names (or data sample ids) to leave out (repeatable).")
@click.option("--entries", type=int, help="Table entries (k-means clusters). Default: the model's table_size.")
@click.option("--group-size", default=200, show_default=True, help="Nearest members averaged into each entry.")
@click.option("--max-side", default=1024, show_default=True, help="Downscale references to this longer side (0: full).")
@click.option("--train-encoder-steps", default=0, show_default=True,
              help="First train the pixel-search encoder for N steps on the references (Algorithm 1).")
@click.option("--encoder-lr", default=1e-3, show_default=True)
@click.option("--encoder-crop", default=96, show_default=True, help="Crop size of the encoder training windows.")
@click.option("--set", "options", multiple=True, help="Model option key=value for a fresh model (repeatable).")
@click.option("--kmeans", type=click.Choice(["auto", "faiss", "sklearn"]), default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), help="CPU threads for torch and faiss.")
def build(model, refs, data_dir, kinds, output, camera, exclude, entries, group_size, max_side, train_encoder_steps, encoder_lr,
          encoder_crop, options, kmeans, seed, threads):
    """Build a camera's prior table from its RAW files and store it in a priorraw checkpoint.

    MODEL is a priorraw checkpoint, or `priorraw` for fresh weights (then --train-encoder-steps trains the
    pixel-search encoder first; --set gives model options). References are RAW files (--refs, each
    rendered by LibRaw) or the train split of a data folder (--data, its renderings and camera JPEGs),
    in RGGB phase and downscaled; its embeddings are clustered (spherical k-means) and each entry is the
    average feature, sRGB and RAW of the --group-size embeddings nearest to a centroid. Next: train the
    reconstructor with `rawedge train --model priorraw --init OUTPUT`.

    \b
    Example:  rawedge prior build priorraw --refs raw_dir/ --camera "PowerShot S40" --train-encoder-steps 300 -o s40.pt
              rawedge prior build s40.pt --data data/pairs --camera "PowerShot S40" -o s40_v2.pt
    """
    import torch

    from rawedge.io.atomic import check_output_dir
    from rawedge.models.checkpoint import load_checkpoint, save_checkpoint
    from rawedge.models.registry import create_model
    from rawedge.training.prior import (
        build_prior_table_from_pairs,
        data_reference_pairs,
        load_reference_pair,
        table_psnr,
        train_encoder,
    )
    from rawedge.types import CameraProfile

    check_output_dir(output)
    if bool(refs) == bool(data_dir):
        raise RawedgeError(None, "give the references with either --refs (RAW files) or --data (a data folder)")
    if threads:
        torch.set_num_threads(threads)
    config = _parse_options(options)
    if Path(model).is_file():
        if config:
            raise RawedgeError(model, "--set applies to fresh models only; this is a checkpoint")
        net, ckpt = load_checkpoint(model)
    elif model == "priorraw":
        try:
            net, ckpt = create_model("priorraw", **config), {}
        except (TypeError, ValueError) as exc:
            raise RawedgeError(None, f"bad priorraw option ({exc})") from None
    else:
        raise RawedgeError(model, "no such file (give a priorraw checkpoint, or `priorraw` for a fresh model)")
    if not hasattr(net, "set_prior_table"):
        raise RawedgeError(model, f"a {net.model_name} model has no prior table (only priorraw models do)")

    if data_dir:
        pairs, name, profile_dict, sources = data_reference_pairs(data_dir, camera, max_side=max_side or None,
                                                                    kinds=kinds or ("libraw", "camera_jpeg"))
        keep = [i for i, s in enumerate(sources) if not any(fnmatch.fnmatch(s, pat) for pat in exclude)]
        pairs, sources = [pairs[i] for i in keep], [sources[i] for i in keep]
        profile = CameraProfile.from_dict(profile_dict)
        click.echo(f"{len(pairs)} training pairs of {name} from {data_dir} at max side {max_side or 'full'}")
    else:
        files, profile = _camera_files(_raw_files(refs, exclude), camera)
        sources = [f.name for f in files]
        click.echo(f"{len(files)} reference files of {profile.name}; rendering at max side {max_side or 'full'}")
        pairs = [load_reference_pair(f, max_side or None) for f in files]
    if train_encoder_steps:
        losses = train_encoder(net, pairs, train_encoder_steps, lr=encoder_lr, crop=encoder_crop, seed=seed,
                               log=click.echo)
        click.echo(f"pixel-search encoder: assembled-RAW L2 {losses[0]:.3g} -> {losses[-1]:.3g}")
    net.eval()
    table = build_prior_table_from_pairs(net, pairs, entries or net.table_size, group_size, seed=seed, backend=kmeans,
                                         sources=sources)
    table.install(net)
    psnr = table_psnr(net, pairs)
    summary = {**table.summary(), "camera": profile.name, "max_side": max_side, "encoder_steps": train_encoder_steps,
               "reference_psnr": psnr}
    profiles = list(ckpt.get("camera_profiles", []))
    if not any(p.get("name") == profile.name for p in profiles):
        profiles.append(profile.to_dict())
    recipe = {**ckpt.get("recipe", {}), "prior_table": {k: v for k, v in summary.items() if k != "sources"}}
    extra = {**ckpt.get("extra", {}), "prior_table": summary}
    save_checkpoint(output, net, camera_profiles=profiles, recipe=recipe, metrics=ckpt.get("metrics", {}),
                    extra=extra)
    click.echo(f"wrote {output}: prior table of {table.entries} entries (groups of {table.group_size}) from "
               f"{table.reference_positions:,} reference positions of {len(pairs)} images "
               f"({100 * table.fraction():.4f}%), {table.nbytes() / 1024:.1f} KiB; "
               f"assembled-RAW PSNR on the references {psnr:.2f} dB")
