"""Layer sensitivity: which Conv/ConvTranspose/MatMul/Gemm layers to keep in higher precision first.

"All but one": for each candidate layer, quantize the whole model except that layer (through the
backend's own quantizer) and measure the output MSE against the FP32 reference on a few calibration
tiles; a layer's sensitivity is how much error disappears when it alone stays in float. Ranking uses
calibration tiles only: the held-out files stay unseen until the gate."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rawedge.runtimes.base import Runner

from rawedge.metadata.schema import ModelMeta

from .base import Quantizer


@dataclass(frozen=True)
class LayerScore:
    layer: str
    mse: float  # output MSE against FP32 with this layer kept in float
    gain: float  # MSE removed compared with quantizing everything

    def to_dict(self) -> dict:
        return {"layer": self.layer, "mse": self.mse, "gain": self.gain}


def output_mse(runner: Runner, feeds, reference_outputs) -> float:
    """Mean squared difference over every output the reference also produced."""
    total, count = 0.0, 0
    with runner:
        for feed, ref in zip(feeds, reference_outputs):
            out = runner.infer(feed)
            for name, value in ref.items():
                if name in out:
                    d = out[name].astype(np.float64) - value
                    total += float(np.sum(d * d))
                    count += d.size
    return total / max(count, 1)


def remove_artefact(artefact: Path) -> None:
    """Delete a staged artefact and its companions (an IR's .bin)."""
    for path in artefact.parent.glob(artefact.stem + ".*"):
        path.unlink(missing_ok=True)


def keep_schedule(n: int) -> list[int]:
    """How many of the ranked layers each attempt keeps: 1, 2, 4, ... and finally all ``n``."""
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return out + [n] if n > 0 else []


def rank_layers(quantizer: Quantizer, layers: list[str], feeds, reference: Runner, workdir: Path,
                already_kept=(), suffix: str = ".onnx", log=None,
                metadata: ModelMeta | None = None) -> list[LayerScore]:
    """``layers`` sorted by sensitivity, most sensitive first (``already_kept`` stay kept throughout).
    ``metadata``: the model's, already read, for the runners of the trial artefacts."""
    log = log or (lambda line: None)
    reference.activate()
    reference_outputs = [reference.infer(f) for f in feeds]
    base = quantizer.quantize(workdir / f"rank-all{suffix}", keep=list(already_kept))
    base_mse = output_mse(quantizer.open_runner(base, metadata=metadata), feeds, reference_outputs)
    remove_artefact(base)
    scores = []
    for i, layer in enumerate(layers):
        artefact = quantizer.quantize(workdir / f"rank-{i}{suffix}", keep=[*already_kept, layer])
        mse = output_mse(quantizer.open_runner(artefact, metadata=metadata), feeds, reference_outputs)
        remove_artefact(artefact)
        scores.append(LayerScore(layer, mse, base_mse - mse))
        log(f"  sensitivity {i + 1}/{len(layers)} {layer}: MSE {mse:.3g} with it in float (all INT8: {base_mse:.3g})")
    return sorted(scores, key=lambda s: s.gain, reverse=True)
