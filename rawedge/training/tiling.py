"""Full-image inference in PyTorch by overlapping tiles (validation during training, fine-tuning reports).

The geometry is the Reconstructor's (rawedge.tiling): the same aligned tile starts, reflect padding of the
bottom/right to the model's ``align``, and raised-cosine blending windows over the overlap, so a
validation PSNR measures the blend `rawedge infer` writes. ``thumb`` is the whole image's thumbnail for
every tile, as the contract requires. (`rawedge eval` runs the Reconstructor itself, through the
PyTorch runner.)
"""
from __future__ import annotations

import torch

from rawedge.contract import INPUT_NAMES
from rawedge.tiling import Frame, TileGrid, tile_sizes


@torch.no_grad()
def predict_full(model, inputs: dict, tile: int = 512, overlap: int = 64, batch: int = 4) -> dict:
    """Run ``model`` on a whole image. ``inputs`` holds the contract tensors with batch size 1 (srgb of
    even size, RGGB phase at the origin). Returns {"raw": [1,4,H/2,W/2]} and every other packed-resolution
    output the model exports (``model.output_names``, e.g. ``sigma``), blended the same way."""
    align = int(getattr(model, "align", 2))
    srgb = inputs["srgb"]
    _, _, h, w = srgb.shape
    tile, overlap = tile_sizes(tile, overlap, align)
    frame = Frame.for_photo(h, w, (0, 0), align)
    grid = TileGrid.plan(frame, tile or max(frame.height, frame.width), overlap, align=align)
    device = srgb.device
    rows = torch.from_numpy(frame.rows(0, frame.height)).to(device)
    cols = torch.from_numpy(frame.cols(0, frame.width)).to(device)
    padded = srgb.index_select(2, rows).index_select(3, cols)  # reflect padding, as the Reconstructor gathers
    sy, sx = (torch.from_numpy(s).to(device) for s in grid.weight_sums(frame))
    ph, pw = grid.th // 2, grid.tw // 2
    names = list(getattr(model, "output_names", ("raw",)))
    rest = {k: inputs[k] for k in INPUT_NAMES if k != "srgb"}
    positions = list(grid.positions())
    out: dict = {}
    for start in range(0, len(positions), batch):
        chunk = positions[start:start + batch]
        tiles = torch.cat([padded[:, :, y0:y0 + grid.th, x0:x0 + grid.tw] for _, _, y0, x0 in chunk])
        feed = {k: v.expand(len(chunk), *v.shape[1:]) for k, v in rest.items()}
        result = model(srgb=tiles, **feed)
        for k, (i, j, y0, x0) in enumerate(chunk):
            win = torch.from_numpy(grid.window_y(i)[:, None] * grid.window_x(j)[None, :]).to(device)
            py, px = y0 // 2, x0 // 2
            for name in names:
                piece = result[name][k:k + 1]
                if name not in out:
                    out[name] = torch.zeros(1, piece.shape[1], frame.height // 2, frame.width // 2, device=device)
                out[name][:, :, py:py + ph, px:px + pw] += piece * win
    weight = sy[:, None] * sx[None, :]
    return {name: (v / weight)[:, :, :h // 2, :w // 2] for name, v in out.items()}
