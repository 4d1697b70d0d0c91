"""What every reverse-ISP model shares: the contract's forward signature and the analytic prior.

Tiles arrive in RGGB phase: the runtime and the data loader shift each image so a red site is at the
origin (any Bayer pattern shifted that way is RGGB), so models never need to know the camera's CFA.
"""
from __future__ import annotations

import torch
from torch import nn

from rawedge.isp import torch_ops as T


def analytic_packed(srgb: torch.Tensor, wb: torch.Tensor, rgb2cam: torch.Tensor) -> torch.Tensor:
    """Analytic reverse ISP (inverse sRGB, inverse matrix, inverse WB) packed to [N,4,H/2,W/2] RGGB."""
    cam = T.apply_ccm(T.srgb_to_linear(srgb.clamp(0.0, 1.0)), rgb2cam)
    cam = cam / T.libraw_gains(wb).reshape(-1, 3, 1, 1)
    cam = cam.clamp(0.0, 1.0)
    r = cam[:, 0:1, 0::2, 0::2]
    g1 = cam[:, 1:2, 0::2, 1::2]
    g2 = cam[:, 1:2, 1::2, 0::2]
    b = cam[:, 2:3, 1::2, 1::2]
    return torch.cat([r, g1, g2, b], dim=1)


class ReverseISP(nn.Module):
    """Base class: forward(srgb, thumb, exif, wb, cam2rgb, rgb2cam) -> {"raw": [N,4,H/2,W/2], ...}."""

    model_name = "base"
    default_config: dict = {}
    align = 2
    output_names = ("raw",)  # exported outputs; training-only outputs are not listed here
    # What the exported model needs from the metadata (EXIF normalisation constants etc.)
    exif_facts: dict = {}
