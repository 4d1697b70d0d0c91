"""Polygraphy runner adapter: puts any rawedge runner (ONNX Runtime, OpenVINO, TensorRT, and the
PyTorch checkpoint through ``rawedge.export.torch_runner.TorchRunner``) into a Polygraphy ``Comparator``.

Polygraphy 0.53 has no OpenVINO runner and its PyTorch runner hard-codes ``.cuda()``; this adapter
subclasses ``polygraphy.backend.base.BaseRunner`` and forwards to the rawedge runner, so one
Comparator runs the FP32 reference and the INT8 artefact on the same feeds. The adapter borrows its
runner: activating it activates the rawedge runner only if it is not active yet, and deactivating
releases only what it activated (the gate keeps sessions alive across held-out photos)."""
from __future__ import annotations

from rawedge.runtimes.base import Runner, import_backend


def polygraphy_adapter(runner: Runner, name: str | None = None):
    """A ``polygraphy.backend.base.BaseRunner`` driving ``runner``."""
    base = import_backend("polygraphy.backend.base", "rawedge[calibrate]", "Polygraphy")

    class RawedgePolygraphyRunner(base.BaseRunner):
        def __init__(self):
            super().__init__(name=name or runner.name)
            self.runner = runner
            self._owns_activation = False

        def activate_impl(self):
            if not runner.is_active:
                runner.activate()
                self._owns_activation = True

        def get_input_metadata_impl(self):
            return runner.get_input_metadata()

        def infer_impl(self, feed_dict):
            outputs = runner.infer(dict(feed_dict))
            self.inference_time = runner.inference_time
            return outputs

        def deactivate_impl(self):
            if self._owns_activation:
                runner.deactivate()
                self._owns_activation = False

    return RawedgePolygraphyRunner()
