"""Full-image inference in PyTorch by overlapping tiles (validation, evaluation, fine-tuning reports).

Tiles are multiples of the model's ``align`` and start at multiples of it, so the Bayer phase never
shifts; outputs are blended with a linear ramp over the overlap. ``thumb`` is the whole image's
thumbnail for every tile, as the contract requires. (The runtime's numpy Reconstructor does the same for
deployment; this one keeps training free of the runtime package.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from rawedge.contract import INPUT_NAMES


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _ramp(n: int, overlap: int, device) -> torch.Tensor:
    """1-D blending weights of a tile of n packed pixels: linear over ``overlap`` at each side."""
    if overlap <= 0:
        return torch.ones(n, device=device)
    x = torch.arange(n, device=device, dtype=torch.float32)
    return torch.clamp(torch.minimum(x + 0.5, n - x - 0.5) / overlap, 1e-3, 1.0)


@torch.no_grad()
def predict_full(model, inputs: dict, tile: int = 512, overlap: int = 64, batch: int = 4) -> dict:
    """Run ``model`` on a whole image. ``inputs`` holds the contract tensors with batch size 1 (srgb of
    even size). Returns {"raw": [1,4,H/2,W/2]} and every other packed-resolution output the model
    exports (``model.output_names``, e.g. ``sigma``), blended the same way."""
    align = int(getattr(model, "align", 2))
    srgb = inputs["srgb"]
    _, _, h, w = srgb.shape
    pad_h, pad_w = (-h) % align, (-w) % align
    if pad_h or pad_w:  # pad bottom/right only: the phase at the origin is kept
        srgb = F.pad(srgb, (0, pad_w, 0, pad_h), mode="replicate")
    hp, wp = srgb.shape[2:]
    tile = max(align, tile // align * align)
    overlap = min(overlap // align * align, tile // 2)
    stride = max(align, tile - overlap)
    th, tw = min(tile, hp), min(tile, wp)
    boxes = [(y, x) for y in _starts(hp, th, stride) for x in _starts(wp, tw, stride)]
    names = list(getattr(model, "output_names", ("raw",)))
    out: dict = {}
    weight = torch.zeros(1, 1, hp // 2, wp // 2, device=srgb.device)
    win = (_ramp(th // 2, overlap // 2 if len(boxes) > 1 else 0, srgb.device)[:, None]
           * _ramp(tw // 2, overlap // 2 if len(boxes) > 1 else 0, srgb.device)[None, :])
    rest = {k: inputs[k] for k in INPUT_NAMES if k != "srgb"}
    for i in range(0, len(boxes), batch):
        chunk = boxes[i:i + batch]
        tiles = torch.cat([srgb[:, :, y:y + th, x:x + tw] for y, x in chunk])
        feed = {k: v.expand(len(chunk), *v.shape[1:]) for k, v in rest.items()}
        result = model(srgb=tiles, **feed)
        for k, (y, x) in enumerate(chunk):
            for name in names:
                piece = result[name][k:k + 1]
                if name not in out:
                    out[name] = torch.zeros(1, piece.shape[1], hp // 2, wp // 2, device=srgb.device)
                out[name][:, :, y // 2:(y + th) // 2, x // 2:(x + tw) // 2] += piece * win
            weight[:, :, y // 2:(y + th) // 2, x // 2:(x + tw) // 2] += win
    return {name: (v / weight)[:, :, :h // 2, :w // 2] for name, v in out.items()}
