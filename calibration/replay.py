"""Two stand-in runners that let the Reconstructor (runtimes/reconstructor.py) do its own tiling for
calibration and the gate, so feeds and blended results are exactly those of `rawedge infer`:

- ``FeedRecorder`` runs nothing: it keeps the feeds the Reconstructor builds (tiles, thumbnail, EXIF,
  canonical white balance and matrices) and answers with zeros;
- ``ReplayRunner`` answers each call with outputs computed elsewhere (by a Polygraphy Comparator),
  in the order the Reconstructor asks for them, so it blends them into a RawImage.
"""
from __future__ import annotations

import numpy as np
from rawedge.runtimes.base import Runner

from rawedge.errors import RawedgeError
from rawedge.metadata.schema import ModelMeta


class _Borrowing(Runner):
    """Takes metadata, input specs and output names from an activated ``template`` runner of the same
    model; its own activation never touches the template."""

    def __init__(self, template: Runner, name: str):
        super().__init__(template.model_path, name=name)
        self._template = template

    def _read_metadata(self) -> ModelMeta:
        return self._template.metadata

    def _activate(self) -> None:
        self._template.activate()

    def _deactivate(self) -> None:
        pass

    def _input_specs(self) -> dict[str, tuple]:
        return self._template.input_specs()

    def _output_names(self) -> list[str]:
        return self._template.output_names


class FeedRecorder(_Borrowing):
    """Records feeds. ``keep``: keep at most this many (a uniform reservoir sample over the calls,
    seeded), else all of them in call order."""

    backend = "record"

    def __init__(self, template: Runner, keep: int | None = None, seed: int = 0):
        super().__init__(template, "feed-recorder")
        self.keep = keep
        self.calls = 0
        self.feeds: list[dict[str, np.ndarray]] = []
        self._rng = np.random.default_rng(seed)

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.keep is None or len(self.feeds) < self.keep:
            self.feeds.append(feed)
        else:
            j = int(self._rng.integers(0, self.calls + 1))
            if j < self.keep:
                self.feeds[j] = feed
        self.calls += 1
        n, _, h, w = feed["srgb"].shape
        zeros = np.zeros((n, 4, h // 2, w // 2), dtype=np.float32)
        return {name: zeros for name in self._output_names()}


class ReplayRunner(_Borrowing):
    """Answers the i-th call with ``outputs[i]``; refuses a call whose tile shape differs from the one
    recorded, which would mean the replay is out of step."""

    backend = "replay"

    def __init__(self, template: Runner, feeds: list[dict[str, np.ndarray]], outputs: list[dict[str, np.ndarray]],
                 name: str = "replay"):
        super().__init__(template, name)
        if len(feeds) != len(outputs):
            raise RawedgeError(template.model_path, f"replay of {len(outputs)} outputs for {len(feeds)} feeds")
        self._shapes = [f["srgb"].shape for f in feeds]
        self._outputs = outputs
        self._next = 0

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        i = self._next
        if i >= len(self._outputs) or feed["srgb"].shape != self._shapes[i]:
            raise RawedgeError(self.model_path, f"replay out of step at call {i} (tile batch {feed['srgb'].shape})")
        self._next += 1
        return {k: np.asarray(v, dtype=np.float32) for k, v in self._outputs[i].items()}
