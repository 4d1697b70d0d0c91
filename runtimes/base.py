"""The runner contract shared by every backend, shaped like Polygraphy's ``BaseRunner`` so that a
rawedge runner can sit in a Polygraphy ``Comparator`` beside Polygraphy's own runners:
``activate() / infer(feed_dict) -> {name: array} / deactivate()``, a context manager, ``name``,
``inference_time`` (seconds, set by every ``infer``), ``last_inference_time()`` and
``get_input_metadata()``. Backends are imported inside ``activate`` only."""
from __future__ import annotations

import abc
import importlib
import os
import threading
import time
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.metadata.read import read_model_metadata
from rawedge.metadata.schema import ModelMeta


class Unavailable(RawedgeError):
    """What was asked for cannot run here (a backend, device, precision or artefact is missing), as
    opposed to a broken model or input. Benchmarks skip these combinations."""


class BackendMissing(Unavailable):
    """An optional backend is not installed; the message names the extra that installs it."""


def import_backend(module: str, package: str, what: str):
    """Import an optional backend module, or fail with the pip command that installs it
    (``package``: e.g. "rawedge[openvino]")."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if package.startswith("rawedge[") and package.endswith("]"):
            from rawedge.errors import install_command

            command = install_command(package[len("rawedge["):-1])
        else:
            command = f"pip install '{package}'"
        raise BackendMissing(None, f"{what} is not installed ({exc}): {command}") from None


class Runner(abc.ABC):
    """Base class; subclasses implement ``_activate``, ``_run``, ``_deactivate`` and ``_input_specs``.

    ``metadata``: the model's ModelMeta when the caller has read it already (open_runner does, once per
    open), else it is read from the file on first use.
    ``thread_safe``: whether ``_run`` may be called from several threads at once. When False, calls are
    serialised by a lock, so one activated runner can always be shared by threads."""

    backend = "base"
    thread_safe = False
    skip_outputs: tuple[str, ...] = ()  # model outputs this runner does not compute (OpenVinoRunner can prune)

    def __init__(self, model_path: str | os.PathLike, name: str | None = None,
                 metadata: ModelMeta | None = None):
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise RawedgeError(self.model_path, "no such model file")
        self.name = name or f"{self.backend}:{self.model_path.name}"
        self.inference_time: float | None = None
        self.is_active = False
        self._metadata = metadata
        self._lock = threading.Lock()

    # --- Polygraphy-shaped API ---------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False
            self.inference_time = None

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def infer(self, feed_dict: dict[str, np.ndarray], check_inputs: bool = True) -> dict[str, np.ndarray]:
        """Run one batch. ``feed_dict`` holds exactly the model's inputs as float32 arrays."""
        if not self.is_active:
            raise RawedgeError(self.model_path, f"runner {self.name} must be activated before infer()")
        if check_inputs:
            self._check_feed(feed_dict)
        start = time.perf_counter()
        if self.thread_safe:
            outputs = self._run(feed_dict)
        else:
            with self._lock:
                outputs = self._run(feed_dict)
        self.inference_time = time.perf_counter() - start
        return outputs

    def last_inference_time(self) -> float | None:
        return self.inference_time

    def get_input_metadata(self, use_numpy_dtypes: bool | None = None):
        """Input names -> (dtype, shape with None for dynamic axes). A Polygraphy ``TensorMetadata``
        when Polygraphy is installed (what its Comparator and data loaders expect), else a dict."""
        specs = self.input_specs()
        try:
            from polygraphy.common import TensorMetadata
        except ImportError:
            return {k: (np.dtype(np.float32), shape) for k, shape in specs.items()}
        meta = TensorMetadata()
        for k, shape in specs.items():
            meta.add(k, np.float32, shape)
        return meta

    # --- what every rawedge runner adds -------------------------------------------------------
    @property
    def metadata(self) -> ModelMeta:
        """The model's ``rawedge`` metadata (read once; also readable before activation)."""
        if self._metadata is None:
            self._metadata = self._read_metadata()
        return self._metadata

    def input_specs(self) -> dict[str, tuple]:
        """{input name: shape tuple with None for dynamic axes}, in the model's order."""
        self._require_active()
        return self._input_specs()

    @property
    def input_names(self) -> list[str]:
        return list(self.input_specs())

    @property
    def output_names(self) -> list[str]:
        self._require_active()
        return self._output_names()

    # --- helpers ---------------------------------------------------------------------------------
    def _require_active(self) -> None:
        if not self.is_active:
            raise RawedgeError(self.model_path, f"runner {self.name} is not activated")

    def _check_feed(self, feed: dict[str, np.ndarray]) -> None:
        specs = self.input_specs()
        missing = [k for k in specs if k not in feed]
        unknown = [k for k in feed if k not in specs]
        if missing or unknown:
            raise RawedgeError(self.model_path, f"feed does not match the model's inputs "
                                                f"(missing {missing}, unknown {unknown}; model takes {list(specs)})")
        for k, shape in specs.items():
            got = feed[k].shape
            if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
                raise RawedgeError(self.model_path, f"input {k!r} has shape {tuple(got)}, model expects {shape}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} active={self.is_active}>"

    # --- for subclasses -----------------------------------------------------------------------
    def _read_metadata(self) -> ModelMeta:
        """Parse the model's rawedge metadata from its file (RawedgeError when it has none)."""
        return read_model_metadata(self.model_path)

    @abc.abstractmethod
    def _activate(self) -> None:
        """Load the backend and create the session/compiled model."""

    @abc.abstractmethod
    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One inference: numpy in, numpy out, all of the model's outputs by name."""

    @abc.abstractmethod
    def _deactivate(self) -> None:
        """Release the session and its memory."""

    @abc.abstractmethod
    def _input_specs(self) -> dict[str, tuple]:
        """{input name: shape with None for dynamic axes}."""

    @abc.abstractmethod
    def _output_names(self) -> list[str]:
        """The model's output names, in order."""


def static_dims(shape) -> tuple:
    """A backend shape (ints, strings, -1, None or Dimension objects) -> tuple of int or None."""
    out = []
    for d in shape:
        if isinstance(d, (int, np.integer)) and d >= 0:
            out.append(int(d))
        else:
            out.append(None)
    return tuple(out)
