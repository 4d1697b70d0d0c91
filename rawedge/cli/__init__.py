"""The ``rawedge`` command: the one CLI folder. Each command module here parses options, calls one library
function and prints; modules are imported only when their command runs (see COMMANDS), so the runtime
commands work on a numpy-only install and `rawedge --help` loads no stage."""
from __future__ import annotations

import importlib
import sys

import click

from rawedge import __version__
from rawedge.errors import RawedgeError, install_command

MAX_THREADS = 256  # a typo such as --threads 100000 would otherwise spend minutes creating threads

# name -> ("module:attribute", one-line help), in help order. Commands are imported only when run (or
# asked for their own --help), so `rawedge --help` and `rawedge infer` load no other stage.
COMMANDS = {
    "infer": ("rawedge.cli.infer:infer", "Convert photos to camera RAW (DNG) with the learned model."),
    "unprocess": ("rawedge.cli.core:unprocess", "Analytic reverse ISP: sRGB photo -> DNG (no model)."),
    "info": ("rawedge.cli.core:info", "Describe a RAW, DNG, JPEG/PNG/TIFF, model or checkpoint."),
    "render": ("rawedge.cli.core:render", "Render a RAW with LibRaw to an sRGB JPEG that keeps the EXIF."),
    "profile": ("rawedge.cli.core:profile", "Camera profiles: build from RAW files, list, show."),
    "bench": ("rawedge.cli.bench:bench", "Time one model on one photo across runtimes and precisions."),
    "export": ("rawedge.cli.export:export", "Export a trained checkpoint to one self-describing ONNX file."),
    "calibrate": ("rawedge.cli.calibrate:calibrate", "Quantize an exported model to INT8, gated by accuracy."),
    "data": ("rawedge.cli.train:data", "Training data: paired sRGB/RAW samples."),
    "train": ("rawedge.cli.train:train", "Train a reverse-ISP model from a recipe and/or flags."),
    "eval": ("rawedge.cli.train:evaluate", "Score a checkpoint on a data folder, next to the analytic inverse."),
    "finetune": ("rawedge.cli.train:finetune", "Adapt a model to one photo and one edit."),
    "hedge": ("rawedge.cli.hedge:hedge", "Fit a model's hedge toward the analytic inverse to one camera's RAW files."),
    "prior": ("rawedge.cli.prior:prior", "PriorRAW prior metadata: per-camera tables of reference pixels."),
}


class RawedgeGroup(click.Group):
    """Loads each command lazily (COMMANDS), and turns RawedgeError (and missing optional dependencies)
    into one clear line and exit status 1."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        """The command list from COMMANDS' one-line help, without importing any command."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RawedgeError as exc:
            click.echo(f"rawedge: error: {exc}", err=True)
            sys.exit(1)
        except ModuleNotFoundError as exc:
            extra = {"torch": "train", "onnx": "train", "openvino": "openvino", "nncf": "openvino",
                     "tensorrt": "tensorrt", "polygraphy": "calibrate", "kornia": "train"}.get(
                (exc.name or "").split(".")[0])
            hint = f": {install_command(extra)}" if extra else ""
            click.echo(f"rawedge: error: missing dependency {exc.name!r}{hint}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("rawedge: interrupted", err=True)
            sys.exit(130)
        except MemoryError:
            click.echo("rawedge: error: out of memory (a smaller --tile or --batch, or --max-pixels, helps)", err=True)
            sys.exit(1)
        except BrokenPipeError:  # `rawedge info FILE | head`: click ends quietly on EPIPE
            raise
        except OSError as exc:  # the file system's refusals (name too long, permission, I/O error) as one line
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"rawedge: error: {where}{exc.strerror or exc}", err=True)
            sys.exit(1)


@click.group(cls=RawedgeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="rawedge")
def main():
    """rawedge: camera JPEGs back to camera RAW (DNG).

    \b
    Quick start:
      rawedge infer photo.jpg -o photo.dng            # learned reverse ISP (the bundled model)
      rawedge unprocess photo.jpg -o photo.dng        # analytic reverse ISP
      rawedge info photo.dng                          # what is inside a RAW, DNG, JPEG or model
      rawedge render CRW_0304.CRW -o photo.jpg        # RAW -> sRGB JPEG with EXIF (make pairs)
    """
