"""What every reverse-ISP model shares: the contract's forward signature and the analytic prior.

Tiles arrive in RGGB phase: the runtime and the data loader shift each image so a red site is at the
origin (any Bayer pattern shifted that way is RGGB), so models never need to know the camera's CFA.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from rawedge.isp import torch_ops as T
from rawedge.metrics import CLIP_LEVEL

# ISO 12232: a reflected-light meter (calibration constant K = 12.5) exposes a scene's mean luminance at
# H = q K / S, and saturation-based speed puts saturation at 78 / S, so the metered mean lands at
# q K / 78 = 0.65 * 12.5 / 78 of the sensor's white.
ISO_METERED_LEVEL = 0.65 * 12.5 / 78


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


def unclipped_green_mean(prior: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
    """[N,1,1,1] mean of ``values`` (default: ``prior``) over the green packed pixels that ``prior`` does
    not clip: the level the metering and exposure options compare. ``prior``: [N,4,h,w] RGGB."""
    green = prior[:, 1:3]
    valid = (green < CLIP_LEVEL).to(green.dtype)
    picked = green if values is None else values[:, 1:3]
    count = valid.sum(dim=(1, 2, 3), keepdim=True).clamp(min=1.0)
    return ((picked * valid).sum(dim=(1, 2, 3), keepdim=True) / count).clamp(min=1e-6)


def metering_gain(thumb_prior: torch.Tensor, weight: float) -> torch.Tensor:
    """[N,1,1,1] the gain that moves the thumbnail prior's mean green level (over the packed pixels it does
    not clip) toward ISO 12232's metered level by ``weight`` in [0, 1], in log: 0 keeps the analytic
    inverse's level, 1 puts the mean at 0.104 of white (docs/lofo-round7-exposure.md).

    Example: ``metering_gain(analytic_packed(thumb, wb, rgb2cam), 0.3)``."""
    log_mean = torch.log(unclipped_green_mean(thumb_prior))
    return torch.exp(weight * (math.log(ISO_METERED_LEVEL) - log_mean))


class ReverseISP(nn.Module):
    """Base class: forward(srgb, thumb, exif, wb, cam2rgb, rgb2cam) -> {"raw": [N,4,H/2,W/2], ...}."""

    model_name = "base"
    default_config: dict = {}
    align = 2
    output_names = ("raw",)  # exported outputs; training-only outputs are not listed here
    # What the exported model needs from the metadata (EXIF normalisation constants etc.)
    exif_facts: dict = {}
