"""The ``rawedge`` command. Each stage registers its commands from its own module (see COMMAND_MODULES);
none of them imports torch at start-up, so the runtime commands work on a numpy-only install."""
from __future__ import annotations

import importlib
import sys

import click

from rawedge import __version__
from rawedge.errors import RawedgeError

# "module:attribute" of click commands/groups added to ``rawedge``, in help order.
COMMAND_MODULES = [
    "rawedge.commands.core:info",
    "rawedge.commands.core:render",
    "rawedge.commands.core:unprocess",
    "rawedge.commands.core:profile",
    "rawedge.export.cli:export",
    "rawedge.commands.train:data",
    "rawedge.commands.train:train",
    "rawedge.commands.train:evaluate",
    "rawedge.commands.train:finetune",
    "rawedge.commands.prior:prior",
    "rawedge.commands.infer:infer",
    "rawedge.commands.infer:bench",
    "rawedge.calibration.cli:calibrate",
]


class RawedgeGroup(click.Group):
    """Turns RawedgeError (and missing optional dependencies) into one clear line and exit status 1."""

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
            hint = f": pip install 'rawedge[{extra}]'" if extra else ""
            click.echo(f"rawedge: error: missing dependency {exc.name!r}{hint}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("rawedge: interrupted", err=True)
            sys.exit(130)
        except MemoryError:
            click.echo("rawedge: error: out of memory (a smaller --tile or --batch, or --max-pixels, helps)", err=True)
            sys.exit(1)
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
      rawedge unprocess photo.jpg -o photo.dng        # analytic reverse ISP
      rawedge info photo.dng                          # what is inside a RAW, DNG, JPEG or model
      rawedge render CRW_0304.CRW -o photo.jpg        # RAW -> sRGB JPEG with EXIF (make pairs)
    """


def _register() -> None:
    for spec in COMMAND_MODULES:
        module_name, attr = spec.split(":")
        module = importlib.import_module(module_name)
        main.add_command(getattr(module, attr))


_register()

if __name__ == "__main__":
    main()
