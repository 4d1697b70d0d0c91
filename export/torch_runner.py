"""A PyTorch-eager runner with the same Polygraphy-shaped contract as the runtimes' runners, so the
Reconstructor, `rawedge bench` and Polygraphy's Comparator can put the training checkpoint beside ONNX
Runtime, OpenVINO and TensorRT. It lives outside ``rawedge.runtimes`` because it needs torch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rawedge.runtimes.base import Runner, Unavailable

from rawedge.contract import INPUT_NAMES, THUMB_SIZE
from rawedge.metadata.onnx import read_onnx_metadata
from rawedge.metadata.schema import ModelMeta

INPUT_RANKS = {"srgb": (None, 3, None, None), "thumb": (None, 3, THUMB_SIZE, THUMB_SIZE), "exif": (None, 4),
               "wb": (None, 3), "cam2rgb": (None, 3, 3), "rgb2cam": (None, 3, 3)}


class TorchRunner(Runner):
    """A rawedge checkpoint run eagerly. ``meta_from``: an exported ONNX of the same model whose
    metadata (tile, overlap, camera profiles, fusion) to use, or ``metadata``: that metadata already
    read; without either it is built from the checkpoint as the exporter would. ``device``: "cpu",
    "cuda" or None (CUDA when available); ``fp16``: autocast to half precision (CUDA only); ``threads``:
    torch CPU threads."""

    backend = "torch"
    thread_safe = False

    def __init__(self, checkpoint_path, meta_from=None, device: str | None = None, fp16: bool = False,
                 threads: int | None = None, name: str | None = None, metadata: ModelMeta | None = None):
        super().__init__(checkpoint_path, name, metadata)
        self.meta_from = Path(meta_from) if meta_from else None
        self.device = device
        self.fp16 = fp16
        self.threads = threads
        self.model = None
        self._ckpt = None
        self._in_memory = None

    @classmethod
    def from_model(cls, model, ckpt: dict | None = None, device: str | None = None,
                   name: str | None = None, metadata: ModelMeta | None = None) -> TorchRunner:
        """A runner of a model already in memory (``rawedge eval``: the checkpoint under test, the analytic
        baseline by name; export parity), with no file behind it; ``ckpt``: its checkpoint dict, for the
        metadata's camera profiles, recipe and metrics. The metadata is built as the exporter would, unless
        given (``metadata``)."""
        runner = cls(__file__, device=device, name=name or f"torch:{model.model_name}",  # any file passes the check
                     metadata=metadata)
        runner.model_path = Path(f"<in-memory {model.model_name}>")
        runner._in_memory = (model, dict(ckpt or {}))
        return runner

    def _load(self):
        from rawedge.models.checkpoint import load_checkpoint

        if self.model is None:
            self.model, self._ckpt = self._in_memory or load_checkpoint(self.model_path)
        return self.model, self._ckpt

    def _read_metadata(self) -> ModelMeta:
        if self.meta_from is not None:
            return read_onnx_metadata(self.meta_from)
        from rawedge.export.metadata import build_meta
        from rawedge.export.receptive_field import DEFAULT_TILE, round_up

        model, ckpt = self._load()
        return build_meta(model, ckpt, tile=DEFAULT_TILE, overlap=round_up(64, int(model.align)), receptive_field={},
                          static_tile=None, precision="fp16" if self.fp16 else "fp32")

    def _activate(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(int(self.threads))
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.fp16 and device != "cuda":
            raise Unavailable(self.model_path, "PyTorch FP16 needs a CUDA GPU (CPU half-precision convolutions "
                                                "are not a meaningful benchmark)")
        model, _ = self._load()
        self.model = model.to(device).eval()
        self._device = device
        if self._metadata is None:
            self._metadata = self._read_metadata()

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        inputs = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(self._device) for k, v in feed.items()}
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            out = self.model(**inputs)
        return {k: out[k].float().cpu().numpy() for k in self._output_names()}

    def _deactivate(self) -> None:
        self.model = None

    def _input_specs(self) -> dict[str, tuple]:
        return {k: INPUT_RANKS[k] for k in INPUT_NAMES}

    def _output_names(self) -> list[str]:
        return list(self.model.output_names)
