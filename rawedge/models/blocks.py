"""Building blocks shared by learned ISP models: ParamISP's handcrafted features and CBAM ResBlocks.

Every block here is *tile independent*: its output at a pixel depends only on a bounded neighbourhood,
never on a statistic pooled over the whole tile. That is what lets the runtime cut a photo into tiles
and blend them without seams (see ``rawedge.contract``). CBAM's channel attention is the one place
where the original design pools globally; here it pools over a local window instead (see
:class:`LocalChannelAttention`).
"""
from __future__ import annotations

import kornia.filters
import torch
import torch.nn.functional as F
from torch import nn

HISTOGRAM_BINS = (4, 8, 16)
OVEREXPOSURE_KNEE = 0.95


def soft_histogram(x: torch.Tensor, bins: int) -> torch.Tensor:
    """[N,C,H,W] -> [N,C*bins,H,W]: per-pixel triangular membership of ``bins`` evenly spaced centres
    on [0, 1] (Liu et al. 2020, as in ParamISP). Purely per pixel, so tiles never see each other."""
    centres = torch.linspace(0.0, 1.0, bins, dtype=x.dtype, device=x.device).reshape(1, 1, bins, 1, 1)
    member = F.relu(1.0 - (x.unsqueeze(2) - centres).abs() * (bins - 1))
    return member.flatten(1, 2)


def overexposure_soft_mask(x: torch.Tensor, knee: float = OVEREXPOSURE_KNEE) -> torch.Tensor:
    """Per-channel soft clipping mask: 0 below ``knee``, rising linearly to 1 at full scale."""
    return (x - knee).clamp(min=0.0) / (1.0 - knee)


def handcrafted_features(x: torch.Tensor, exposure_source: torch.Tensor,
                         bins: tuple[int, ...] | list[int] = HISTOGRAM_BINS) -> torch.Tensor:
    """ParamISP's feature stack: [x (3), Sobel gradients (6), soft histograms (3*sum(bins)),
    soft overexposure mask of ``exposure_source`` (3)] -> 96 channels with the default bins.

    ``exposure_source`` is the image whose clipping matters (the input sRGB in the inverse direction),
    computed once and reused after the image has been transformed."""
    grad = kornia.filters.spatial_gradient(x, mode="sobel", normalized=True).flatten(1, 2)
    hists = [soft_histogram(x, b) for b in bins]
    return torch.cat([x, grad, *hists, overexposure_soft_mask(exposure_source)], dim=1)


def feature_channels(bins: tuple[int, ...] | list[int] = HISTOGRAM_BINS, colours: int = 3) -> int:
    return colours * (1 + 2 + sum(bins)) + colours


class LocalChannelAttention(nn.Module):
    """CBAM channel attention with *windowed* pooling.

    CBAM (Woo et al. 2018) pools each channel over the whole feature map; on a tile that statistic
    depends on where the tile was cut, so tiled and whole-image inference would disagree. Here the
    average and max pools run over a ``window`` x ``window`` neighbourhood (stride 1), and the shared
    MLP is a pair of 1x1 convolutions, giving a per-pixel channel gate. It keeps CBAM's behaviour
    (re-weighting channels by their local energy) with a bounded receptive field, and exports to
    ONNX as AveragePool/MaxPool/Conv with dynamic H and W. (The alternative, a gate computed from
    ``thumb`` features, would need the whole LocalNet run on the thumbnail as well.)"""

    def __init__(self, channels: int, reduction: int = 2, window: int = 7):
        super().__init__()
        if window % 2 != 1:
            raise ValueError(f"attention window must be odd, got {window}")
        hidden = max(1, channels // reduction)
        self.window = window
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ELU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.window // 2
        avg = F.avg_pool2d(x, self.window, stride=1, padding=pad, count_include_pad=False)
        peak = F.max_pool2d(x, self.window, stride=1, padding=pad)
        return x * torch.sigmoid(self.mlp(avg) + self.mlp(peak))


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a 7x7 conv over the channel mean and max, gating every pixel."""

    def __init__(self, kernel: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, padding_mode="replicate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(stats))


class CBAMResBlock(nn.Module):
    """conv3x3 (C -> C/r) - ELU - conv3x3 (C/r -> C) - channel attention - spatial attention, + skip.
    Replicate padding as in ParamISP, so tile borders see plausible context."""

    def __init__(self, channels: int, reduction: int = 2, window: int = 7):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1, padding_mode="replicate")
        self.conv2 = nn.Conv2d(hidden, channels, 3, padding=1, padding_mode="replicate")
        self.act = nn.ELU()
        self.channel_attention = LocalChannelAttention(channels, reduction, window)
        self.spatial_attention = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.conv2(self.act(self.conv1(x)))
        return x + self.spatial_attention(self.channel_attention(r))
