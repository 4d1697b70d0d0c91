"""What every backend quantizer offers the calibration pipeline: prepare once (statistics), list the
layers that can be kept in higher precision, build an INT8 artefact with some of them kept, open it
through the backend's rawedge runner, and write the final artefact with its metadata."""
from __future__ import annotations

import abc
import contextlib
import io
import os
from pathlib import Path

from rawedge.runtimes.base import Runner

from rawedge.metadata.schema import ModelMeta

from .dataset import CalibrationSet

METHODS = ("minmax", "entropy", "percentile")
# What runs in INT8:
#   network:  the network between its weighted layers (convolutions, their activations, concatenations,
#             feature adds); what only the inputs feed (the analytic prior of the sRGB input) and what
#             follows the last weighted layer (residual add onto the prior, clip: the RAW output) stay
#             float. An 8-bit output tensor alone caps INT8 at ~59 dB against FP32 (a 1/255 step in
#             linear RAW, which an exposure edit lifts straight into the shadows).
#   weighted: only Conv/ConvTranspose/MatMul/Gemm (the most accurate, the least speed-up).
#   all:      everything the backend can quantize.
SCOPES = ("network", "weighted", "all")


def network_region(successors: dict[str, list[str]], weighted: set[str], spatial: set[str] | None = None) -> set[str]:
    """The weighted nodes plus every node that lies on a path from one weighted node to another, except
    the nodes that also reach a graph output through unweighted nodes only: those carry the analytic
    prior (or a globally toned version of it) straight into the RAW output, where 8-bit steps would show
    unattenuated, so they stay in float.
    ``spatial``: the nodes that read the image input (``srgb``); when given, only their descendants
    can be in the region. The rest computes per-image constants from the thumbnail, EXIF, WB and
    matrices (a global gain, tone or bias): an 8-bit step there shifts the whole image at once, for
    almost no compute saved, so it stays in float too, and so do the unweighted nodes where such a
    value joins the image path.
    ``successors``: node -> the nodes consuming its outputs (every node of the graph is a key)."""
    predecessors: dict[str, list[str]] = {n: [] for n in successors}
    for node, nexts in successors.items():
        for nxt in nexts:
            predecessors.setdefault(nxt, []).append(node)

    def closure(start, step) -> set[str]:
        seen, stack = set(), [m for n in start for m in step.get(n, [])]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(step.get(n, []))
        return seen

    output_bound, stack = set(), [n for n, nexts in successors.items() if not nexts and n not in weighted]
    while stack:  # back from the output-producing nodes, never through a weighted node
        n = stack.pop()
        if n not in output_bound:
            output_bound.add(n)
            stack.extend(p for p in predecessors.get(n, []) if p not in weighted)
    between = closure(weighted, successors) & closure(weighted, predecessors)
    region = set(weighted) | (between - output_bound)
    if spatial is not None:
        image_nodes = set(spatial) | closure(spatial, successors)
        region &= image_nodes
        # where a per-image value joins the image path (x + bias, x * gain), the join stays in float too:
        # quantizing it would quantize the per-image value on the way in
        region -= {n for n in region - set(weighted) if any(p not in image_nodes for p in predecessors.get(n, []))}
    return region


class Quantizer(abc.ABC):
    """``model_path``: the FP32 ONNX; ``method``: minmax, entropy or percentile; ``workdir``: a
    private scratch directory for intermediate files; ``scope``: see SCOPES."""

    runtime = "base"
    backend_name = "base"

    def __init__(self, model_path: str | os.PathLike, method: str, workdir: str | os.PathLike,
                 threads: int | None = None, scope: str = "network"):
        self.model_path = Path(model_path)
        self.method = method
        self.scope = scope
        self.workdir = Path(workdir)
        self.threads = threads
        self.facts: dict = {}  # scheme, ISA, tool versions: recorded in the report and the metadata

    def check_available(self) -> None:
        """Import the backend (BackendMissing naming the extra when it is not installed)."""

    @abc.abstractmethod
    def prepare(self, calib: CalibrationSet, log=None) -> None:
        """Collect what every later ``quantize`` call reuses (pre-processed model, statistics)."""

    @abc.abstractmethod
    def layers(self) -> list[str]:
        """The Conv/ConvTranspose/MatMul/Gemm layers (backend names) that may be kept in higher precision."""

    @abc.abstractmethod
    def quantize(self, output: Path, keep: list[str] = (), first: bool = False) -> Path:
        """Build an INT8 artefact at ``output`` (a file in the workdir) with ``keep`` left unquantized.
        ``first``: the first attempt (a backend may run its own accuracy control there)."""

    @abc.abstractmethod
    def open_runner(self, artefact: Path, **opts) -> Runner:
        """An unactivated rawedge runner for the staged artefact."""

    def fp32_runner(self, **opts) -> Runner:
        """The same backend at FP32 (the speed-up baseline)."""
        from rawedge.runtimes import open_runner

        return open_runner(self.model_path, runtime=self.runtime, precision="fp32", threads=self.threads, **opts)

    def kept_by_backend(self, artefact: Path) -> list[str]:
        """Layers the backend itself left unquantized in ``artefact`` (beyond those asked for)."""
        return []

    @abc.abstractmethod
    def write(self, artefact: Path, target: Path, meta: ModelMeta) -> list[Path]:
        """Write the final artefact at ``target`` carrying ``meta`` (atomically); the files written."""


def quiet():
    """Silence the print()s of quantization libraries (their progress goes to our log instead)."""
    return contextlib.redirect_stdout(io.StringIO())

