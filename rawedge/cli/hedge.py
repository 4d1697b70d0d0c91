"""``rawedge hedge``: fit a model's hedge toward the analytic inverse to one camera, from RAW files of it."""
from __future__ import annotations

import click


def _tones(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise click.BadParameter(f"comma-separated numbers in [0, 1], got {text!r}") from None


@click.command("hedge")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", required=True, type=click.Path(),
              help="Folder of RAW files of the camera (rendered like the leave-one-family-out protocol's held-out "
                   "files: LibRaw default, a random LibRaw rendering, a camera-engine look).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The hedged checkpoint (then `rawedge export OUTPUT`).")
@click.option("--tones", default="1,0.75,0.5,0", show_default=True,
              help="Tone blends tried (how much of the model's global exposure and curve to keep).")
@click.option("--holdout", type=float, default=0.34, show_default=True,
              help="Fraction of the files (by file) kept out of the choice to report what it is worth; 0: every "
                   "file chooses and the gains printed are in sample.")
@click.option("--crop", type=click.IntRange(64), default=1024, show_default=True,
              help="Central square scored per rendering, in pixels.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def hedge(model, data, output, tones, holdout, crop, overwrite):
    """Choose MODEL's hedge (tone_blend, prior_blend) for one camera from RAW files of it.

    A model that never saw a camera can be right in detail and wrong in overall level: how brightly a
    camera exposes is not in its JPEGs. The hedge chosen here keeps the camera's renderings no more than
    0.3 dB below the analytic inverse where it can, and gains most on average. Each file is rendered three
    ways, and every rendering is swept once per tone blend (a few seconds each on a CPU).

    Example: rawedge hedge rawedge/assets/default.pt --data my_camera_raws/ -o my_camera.pt
    """
    from rawedge.outputs import refuse_existing
    from rawedge.training.blend import fit_to_camera

    refuse_existing([output], overwrite)
    if holdout and not 0.0 < holdout < 1.0:
        raise click.BadParameter(f"must be 0 or between 0 and 1, got {holdout}", param_hint="--holdout")
    def progress(step: str) -> None:  # build_eval_set names each RAW file; sweep each rendering (not shown)
        if "." in step:
            click.echo(f"rendering {step}", err=True)

    result = fit_to_camera(model, data, output, tones=_tones(tones), holdout=holdout, center_crop=crop,
                           on_step=progress)
    click.echo(f"hedge: tone_blend {result['tone_blend']:g}, prior_blend {result['prior_blend']:g} "
               f"(chosen on {len(result['files_choosing'])} file(s))")
    for part, label in (("choosing", "files that chose it"), ("held_out", "held-out files")):
        g = result[part]
        if g["images"]:
            click.echo(f"  {label}: RAW PSNR {g['raw_db']:+.2f} dB, edited sRGB PSNR {g['srgb_db']:+.2f} dB against "
                       f"the analytic inverse ({g['images']} renderings)")
    if not result["files_held_out"]:
        click.echo("  no held-out file (--holdout 0): these gains are in sample", err=True)
    click.echo(f"wrote {output} (use it: rawedge export {output})")
