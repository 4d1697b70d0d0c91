"""The model contract shared by training, export and the runtimes (numpy only).

Inputs, batch-first float32 (see DESIGN.md):
  srgb    [N,3,H,W]  one tile in [0,1]; H, W multiples of the model's ``align``
  thumb   [N,3,256,256]  the whole photo resized; every global statistic comes from it
  exif    [N,4]  exposure_time, iso, f_number, focal_length; NaN where missing
  wb      [N,3]  white-balance gains (G = 1)
  cam2rgb [N,3,3]  white-balanced camera RGB -> linear sRGB
  rgb2cam [N,3,3]  its inverse, computed on the host (an addition to DESIGN.md: inverse models need
                   it, and matrix inverses never go in the graph)
Output: raw [N,4,H/2,W/2] packed RGGB in [0,1], plus named extras.
"""
from __future__ import annotations

import numpy as np

CONTRACT_VERSION = 1
THUMB_SIZE = 256
INPUT_NAMES = ("srgb", "thumb", "exif", "wb", "cam2rgb", "rgb2cam")
OUTPUT_RAW = "raw"


def make_thumb(srgb: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """HxWx3 float [0,1] -> 3xSxS float32 thumbnail (area-averaging resize via Pillow, per channel).

    The single implementation used by training data, export checks and the runtimes, so a model sees
    the same ``thumb`` everywhere."""
    from PIL import Image

    chans = []
    for c in range(3):
        im = Image.fromarray(np.ascontiguousarray(srgb[..., c], dtype=np.float32), mode="F")
        chans.append(np.asarray(im.resize((size, size), Image.BOX), dtype=np.float32))
    return np.clip(np.stack(chans, axis=0), 0.0, 1.0)


def canonical_inputs(cam2rgb: np.ndarray, wb_gains: np.ndarray) -> dict[str, np.ndarray]:
    """The ``wb``, ``cam2rgb`` and host-inverted ``rgb2cam`` inputs for one image, batch of 1."""
    m = np.asarray(cam2rgb, dtype=np.float64)
    return {"wb": np.asarray(wb_gains, dtype=np.float32).reshape(1, 3),
            "cam2rgb": m.astype(np.float32).reshape(1, 3, 3),
            "rgb2cam": np.linalg.inv(m).astype(np.float32).reshape(1, 3, 3)}
