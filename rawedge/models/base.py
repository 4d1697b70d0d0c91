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


HIGHLIGHT_QUANTILE = 0.99  # the share of green pixels below the level the highlight gate reads


def highlight_level(thumb_prior: torch.Tensor) -> torch.Tensor:
    """[N,1,1,1] the 99th percentile of the thumbnail prior's green pixels: how far up toward white the
    JPEG's highlights reach. A top-k, so it exports to ONNX; ``thumb_prior``: [N,4,h,w] RGGB."""
    green = thumb_prior[:, 1:3].reshape(thumb_prior.shape[0], -1)
    k = max(1, round(int(green.shape[1]) * (1.0 - HIGHLIGHT_QUANTILE)))  # a constant: the thumbnail size is fixed
    return torch.topk(green, k, dim=1).values[:, -1].reshape(-1, 1, 1, 1)


def highlight_gate(thumb_prior: torch.Tensor, knee: float | None) -> torch.Tensor:
    """[N,1,1,1] in [0, 1]: how much of the metering weight applies, from :func:`highlight_level` ``h``:
    ``(h - knee) / (1 - knee)``, clipped. A JPEG whose highlights stop well below white was not stretched
    to it (LibRaw without auto-brightening, a camera leaving headroom): its white is the sensor's and the
    analytic level stands. One that reaches white may have been stretched, and the meter is evidence.
    ``knee`` None: no gate (1). docs/lofo-round8-highlights.md."""
    if knee is None:
        return torch.ones_like(thumb_prior[:, :1, :1, :1])
    return gate_from_level(highlight_level(thumb_prior), knee)


def gate_from_level(level: torch.Tensor, knee: float) -> torch.Tensor:
    """The highlight gate of highlight levels ``level`` (any shape): ``(level - knee) / (1 - knee)`` in [0, 1]."""
    return ((level - knee) / (1.0 - knee)).clamp(0.0, 1.0)


def metering_gain(thumb_prior: torch.Tensor, weight: float, knee: float | None = None) -> torch.Tensor:
    """[N,1,1,1] the gain that moves the thumbnail prior's mean green level (over the packed pixels it does
    not clip) toward ISO 12232's metered level by ``weight`` in [0, 1], in log: 0 keeps the analytic
    inverse's level, 1 puts the mean at 0.104 of white (docs/lofo-round7-exposure.md). With ``knee`` the
    weight is scaled by :func:`highlight_gate`.

    Example: ``metering_gain(analytic_packed(thumb, wb, rgb2cam), 0.45, knee=0.4)``."""
    log_mean = torch.log(unclipped_green_mean(thumb_prior))
    return torch.exp(weight * highlight_gate(thumb_prior, knee) * (math.log(ISO_METERED_LEVEL) - log_mean))


def check_metering(weight: float, knee: float | None) -> None:
    """Raise ValueError unless ``weight`` is in [0, 1] and ``knee`` is None or in [0, 1)."""
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"metering_weight must be in [0, 1], got {weight}")
    if knee is not None and not 0.0 <= float(knee) < 1.0:
        raise ValueError(f"metering_knee must be None or in [0, 1), got {knee}")


class ReverseISP(nn.Module):
    """Base class: forward(srgb, thumb, exif, wb, cam2rgb, rgb2cam) -> {"raw": [N,4,H/2,W/2], ...}."""

    model_name = "base"
    default_config: dict = {}
    align = 2
    output_names = ("raw",)  # exported outputs; training-only outputs are not listed here
    # What the exported model needs from the metadata (EXIF normalisation constants etc.)
    exif_facts: dict = {}
