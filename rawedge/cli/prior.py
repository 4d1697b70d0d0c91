"""``rawedge prior build``: the PriorRAW prior table of one camera, stored in a priorraw checkpoint."""
from __future__ import annotations

import click

from rawedge.cli import MAX_THREADS
from rawedge.errors import RawedgeError


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
    from rawedge.training.prior import build_prior_checkpoint

    built = build_prior_checkpoint(model, output, refs=refs, data_dir=data_dir, kinds=kinds, camera=camera,
                                   exclude=exclude, entries=entries, group_size=group_size, max_side=max_side,
                                   encoder_steps=train_encoder_steps, encoder_lr=encoder_lr, encoder_crop=encoder_crop,
                                   config=_parse_options(options), backend=kmeans, seed=seed, threads=threads,
                                   log=click.echo)
    table, psnr = built.table, built.psnr
    click.echo(f"wrote {output}: prior table of {table.entries} entries (groups of {table.group_size}) from "
               f"{table.reference_positions:,} reference positions of {built.images} images "
               f"({100 * table.fraction():.4f}%), {table.nbytes() / 1024:.1f} KiB; "
               f"assembled-RAW PSNR on the references {psnr:.2f} dB")
