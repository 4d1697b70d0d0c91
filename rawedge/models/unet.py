"""U-Net reverse ISP: predicts a residual on top of the analytic reverse ISP, at packed resolution,
with a global bias from ``thumb`` only (so tiles do not depend on where they were cut).

Two options bring in what ParamISP learns globally, at almost no cost per pixel:

* ``exif_dim`` > 0: ParamISP's ParamNet embeds the EXIF values (exposure time, ISO, f-number, focal
  length; missing = dropped, as in training dropout) and the canonical WB/matrix into the global vector.
* ``global_tone``: from that global vector, a per-channel gain and gamma are applied to the analytic
  prior (``prior' = gain * prior ** gamma``, identity at initialisation) before the U-Net sees it, so
  image-wide brightness and tone departures (a camera's or editor's exposure and curve) are corrected
  multiplicatively instead of by an additive residual.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rawedge.models.base import ReverseISP, analytic_packed
from rawedge.models.paramisp import EXIF_FACTS, ParamNet
from rawedge.models.registry import register_model


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))


class ThumbEncoder(nn.Module):
    """Global feature vector from the 256x256 thumbnail (strided convs + average pool)."""

    def __init__(self, out_dim: int, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width * 2, width * 2, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
        )
        self.fc = nn.Linear(width * 2, out_dim)

    def forward(self, thumb: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(thumb).mean(dim=(2, 3)))


@register_model("unet")
class UNet(ReverseISP):
    default_config: ClassVar[dict] = {"width": 16, "depth": 3, "exif_dim": 0, "global_tone": False, "exif_dropout": 0.2}

    def __init__(self, width: int = 16, depth: int = 3, exif_dim: int = 0, global_tone: bool = False,
                 exif_dropout: float = 0.2):
        super().__init__()
        self.depth = depth
        self.align = 2 * 2**depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.head = conv_block(12 + 4, chans[0])
        self.downs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 2, stride=2) for i in range(depth))
        self.enc = nn.ModuleList(conv_block(chans[i + 1], chans[i + 1]) for i in range(depth))
        self.thumb = ThumbEncoder(chans[-1])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth)))
        self.dec = nn.ModuleList(conv_block(chans[i] * 2, chans[i]) for i in reversed(range(depth)))
        self.tail = nn.Conv2d(chans[0], 4, 1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.paramnet = ParamNet(exif_dim, exif_dropout, canonical=True) if exif_dim > 0 else None
        self.exif_proj = nn.Linear(exif_dim, chans[-1]) if exif_dim > 0 else None
        if exif_dim > 0:
            self.exif_facts = EXIF_FACTS  # the export embeds the equalisation constants
        self.tone = nn.Linear(chans[-1], 8) if global_tone else None  # 4 log-gains, 4 log-gammas
        if self.tone is not None:
            nn.init.zeros_(self.tone.weight)
            nn.init.zeros_(self.tone.bias)

    def global_vector(self, thumb, exif, wb, cam2rgb, rgb2cam) -> torch.Tensor:
        """[N, C] image-wide features from the thumbnail (and the EXIF embedding when enabled)."""
        g = self.thumb(thumb)
        if self.paramnet is not None:
            g = g + self.exif_proj(self.paramnet(exif, wb, cam2rgb, rgb2cam))
        return g

    def toned_prior(self, prior: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.tone is None:
            return prior
        t = self.tone(g)[:, :, None, None]
        return (torch.exp(t[:, :4]) * prior.clamp(min=1e-6).pow(torch.exp(t[:, 4:]))).clamp(0.0, 1.0)

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        g = self.global_vector(thumb, exif, wb, cam2rgb, rgb2cam)
        prior = self.toned_prior(analytic_packed(srgb, wb, rgb2cam), g)
        x = self.head(torch.cat([F.pixel_unshuffle(srgb, 2), prior], dim=1))
        skips = [x]
        for down, enc in zip(self.downs, self.enc):
            x = enc(down(x))
            skips.append(x)
        x = x + g[:, :, None, None]
        for up, dec, skip in zip(self.ups, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
        return {"raw": (prior + self.tail(x)).clamp(0.0, 1.0)}
