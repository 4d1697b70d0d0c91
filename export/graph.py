"""PyTorch -> ONNX through the model contract.

Exporter choice (torch 2.13): the legacy TorchScript-tracing exporter (``dynamo=False``) is the default.
Both were tried on ``unet``; both give the same outputs (max abs difference to PyTorch 6e-8), but
  * the dynamo exporter emits opset 18 at least, and its down-conversion to the contract's default
    opset 17 fails inside onnx's version converter (``axes_input_to_attribute`` assertion);
  * it takes 6-9 s per export on a 2-core machine against 0.25 s for the legacy one (the test suite
    exports every registry model several times);
  * it accepts dynamic H/W only as multiples of a ``torch.export.Dim`` (it names them ``8*hh``), and it
    needs onnxscript.
Tracing bakes Python-side values into the graph, so every export is checked by running ONNX Runtime at
several image sizes and batch sizes (``rawedge.export.parity``). ``exporter="dynamo"`` stays available
for the day the legacy exporter goes away (it then needs ``--opset 18`` or newer).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from rawedge.contract import INPUT_NAMES, OUTPUT_RAW, THUMB_SIZE
from rawedge.errors import RawedgeError

EXPORTERS = ("legacy", "dynamo")
DYNAMO_MIN_OPSET = 18


def contract_wrapper(model):
    """An nn.Module with the six contract inputs as named arguments, returning the model's exported
    outputs (``model.output_names``) as a tuple in that order; training-only outputs are dropped."""
    from torch import nn

    names = tuple(model.output_names)
    if not names or names[0] != OUTPUT_RAW:
        raise RawedgeError(None, f"model {model.model_name!r} is not a reverse-ISP model: its outputs are "
                                 f"{list(names)}, the contract needs {OUTPUT_RAW!r} first")

    class ContractGraph(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
            out = self.model(srgb, thumb, exif, wb, cam2rgb, rgb2cam)
            return tuple(out[n] for n in names)

    return ContractGraph().eval()


def example_inputs(align: int, batch: int = 2, height: int | None = None, width: int | None = None):
    """Plausible tracing inputs: a non-square tile (so H and W never get confused), batch 2 (so the
    batch dimension is never specialised to 1), realistic WB and an identity colour matrix."""
    import torch

    g = torch.Generator().manual_seed(0)
    h = height or align * max(2, -(-64 // align))
    w = width or align * max(3, -(-96 // align))
    srgb = torch.rand(batch, 3, h, w, generator=g)
    thumb = torch.rand(batch, 3, THUMB_SIZE, THUMB_SIZE, generator=g)
    exif = torch.tensor([[1 / 60, 100.0, 4.0, 7.0]]).repeat(batch, 1)
    wb = torch.tensor([[2.0, 1.0, 1.6]]).repeat(batch, 1)
    eye = torch.eye(3)[None].repeat(batch, 1, 1)
    return srgb, thumb, exif, wb, eye, eye.clone()


def check_forward(model, inputs) -> None:
    """Run the model once in PyTorch and check the contract's output layout before exporting."""
    import torch

    try:
        with torch.no_grad():
            out = model(*inputs)
    except Exception as exc:
        raise RawedgeError(None, f"model {model.model_name!r} fails on contract inputs "
                                 f"{[list(t.shape) for t in inputs]}: {_first_line(exc)}") from None
    if not isinstance(out, dict):
        raise RawedgeError(None, f"model {model.model_name!r}: forward must return a dict of outputs")
    missing = [n for n in model.output_names if n not in out]
    if missing:
        raise RawedgeError(None, f"model {model.model_name!r}: forward does not return {', '.join(missing)}")
    n, _, h, w = inputs[0].shape
    shape = tuple(out[OUTPUT_RAW].shape)
    if shape != (n, 4, h // 2, w // 2):
        raise RawedgeError(None, f"model {model.model_name!r}: output 'raw' has shape {list(shape)}, "
                                 f"the contract needs [N,4,H/2,W/2] = {[n, 4, h // 2, w // 2]}")


def export_graph(model, *, opset: int = 17, exporter: str = "legacy", static_tile: int | None = None):
    """The model's ONNX graph as an ``onnx.ModelProto`` (weights included, not yet cleaned)."""
    import onnx
    import torch

    if exporter not in EXPORTERS:
        raise RawedgeError(None, f"unknown exporter {exporter!r}; choose {' or '.join(EXPORTERS)}")
    wrapper = contract_wrapper(model)
    align = int(model.align)
    if static_tile is not None:
        inputs = example_inputs(align, batch=1, height=static_tile, width=static_tile)
    else:
        inputs = example_inputs(align)
    check_forward(model, inputs)
    outputs = list(model.output_names)
    with tempfile.TemporaryDirectory(prefix="rawedge-export-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer chatter; parity checks catch what matters
        path = Path(tmp) / "model.onnx"
        try:
            with torch.no_grad():
                if exporter == "legacy":
                    _export_legacy(wrapper, inputs, path, outputs, opset, static_tile is not None)
                else:
                    _export_dynamo(wrapper, inputs, path, outputs, opset, align, static_tile is not None)
        except RawedgeError:
            raise
        except Exception as exc:  # the exporters raise many types; the first line says what is wrong
            raise RawedgeError(None, f"model {model.model_name!r} cannot be exported to ONNX opset {opset} "
                                     f"({exporter} exporter): {_first_line(exc)}") from None
        return onnx.load(str(path))  # loads external data too, for models over 2 GB


def _export_legacy(wrapper, inputs, path, outputs, opset, static):
    import torch

    axes = None
    if not static:
        axes = {name: {0: "N"} for name in INPUT_NAMES}
        axes["srgb"] = {0: "N", 2: "H", 3: "W"}
        for name in outputs:
            axes[name] = {0: "N", 2: "h", 3: "w"}
    torch.onnx.export(wrapper, inputs, str(path), input_names=list(INPUT_NAMES), output_names=outputs,
                      opset_version=opset, dynamo=False, dynamic_axes=axes, do_constant_folding=True)


def _export_dynamo(wrapper, inputs, path, outputs, opset, align, static):
    import torch
    from torch.export import Dim

    if opset < DYNAMO_MIN_OPSET:
        raise RawedgeError(None, f"the dynamo exporter writes opset {DYNAMO_MIN_OPSET} or newer; "
                                 f"use --opset {DYNAMO_MIN_OPSET} or the legacy exporter")
    shapes = None
    if not static:
        n = Dim("N", min=1, max=4096)
        hh, ww = Dim("hh", min=1, max=65536 // align), Dim("ww", min=1, max=65536 // align)
        shapes = {name: {0: n} for name in INPUT_NAMES}
        shapes["srgb"] = {0: n, 2: align * hh, 3: align * ww}
    program = torch.onnx.export(wrapper, inputs, None, input_names=list(INPUT_NAMES), output_names=outputs,
                                opset_version=opset, dynamo=True, dynamic_shapes=shapes, optimize=True,
                                verbose=False, report=False)
    program.save(str(path))


def _first_line(exc: BaseException) -> str:
    # The useful line of an exporter error is the deepest cause's first non-empty line.
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return f"{type(exc).__name__}: {line}"[:400]
    return type(exc).__name__
