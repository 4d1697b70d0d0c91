"""Plain U-Net baseline: predicts a residual on top of the analytic reverse ISP, at packed resolution,
with a global bias from ``thumb`` only (so tiles do not depend on where they were cut)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rawedge.models.base import ReverseISP, analytic_packed
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
    default_config = {"width": 16, "depth": 3}

    def __init__(self, width: int = 16, depth: int = 3):
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

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        prior = analytic_packed(srgb, wb, rgb2cam)
        x = self.head(torch.cat([F.pixel_unshuffle(srgb, 2), prior], dim=1))
        skips = [x]
        for down, enc in zip(self.downs, self.enc):
            x = enc(down(x))
            skips.append(x)
        x = x + self.thumb(thumb)[:, :, None, None]
        for up, dec, skip in zip(self.ups, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
        return {"raw": (prior + self.tail(x)).clamp(0.0, 1.0)}
