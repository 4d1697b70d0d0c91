"""Torch twins of ``rawedge.isp.ops`` (differentiable, batch-first): the training side of each ISP op.

Layouts: images [N,3,H,W]; mosaics [N,1,H,W]; packed Bayer [N,4,H/2,W/2] (R, G1, G2, B).
Each function is tested against its numpy twin (tests/test_isp_twins.py) to 1e-6.
"""
from __future__ import annotations

import kornia.color
import torch
import torch.nn.functional as F

from rawedge.isp.ops import cfa_channel_map, packing_order


def pack(mosaic: torch.Tensor, cfa: str) -> torch.Tensor:
    """[N,1,H,W] -> [N,4,H/2,W/2] packed RGGB, lossless for any Bayer phase."""
    return torch.cat([mosaic[:, :, dy::2, dx::2] for dy, dx in packing_order(cfa)], dim=1)


def unpack(packed: torch.Tensor, cfa: str) -> torch.Tensor:
    """[N,4,h,w] -> [N,1,2h,2w], inverse of :func:`pack` (pixel shuffle with the CFA's phase)."""
    order = packing_order(cfa)
    slots = [0] * 4  # pixel_shuffle expects channels in (0,0), (0,1), (1,0), (1,1) order
    for ch, (dy, dx) in enumerate(order):
        slots[2 * dy + dx] = ch
    return F.pixel_shuffle(packed[:, slots], 2)


def cfa_masks(cfa: str, h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[1,3,H,W] one-hot masks of the CFA colours."""
    ch = torch.as_tensor(cfa_channel_map(cfa, h, w), device=device)
    return torch.stack([(ch == c) for c in range(3)], dim=0)[None].to(dtype)


def mosaic(rgb: torch.Tensor, cfa: str) -> torch.Tensor:
    """[N,3,H,W] -> [N,1,H,W]."""
    return (rgb * cfa_masks(cfa, rgb.shape[2], rgb.shape[3], rgb.device, rgb.dtype)).sum(1, keepdim=True)


def _pad_symmetric(x: torch.Tensor, p: int) -> torch.Tensor:
    """Half-sample symmetric padding (numpy 'symmetric', scipy 'reflect'); torch has no such mode."""
    x = torch.cat([x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :p].flip(-1), x, x[..., -p:].flip(-1)], dim=-1)


def _correlate(x: torch.Tensor, kernel: torch.Tensor, padding: str) -> torch.Tensor:
    k = kernel.to(x)[None, None]
    p = kernel.shape[-1] // 2
    x = _pad_symmetric(x, p) if padding == "symmetric" else F.pad(x, (p, p, p, p), mode="reflect")
    return F.conv2d(x, k)


_BILINEAR = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4.0


def demosaic_bilinear(mosaic_img: torch.Tensor, cfa: str) -> torch.Tensor:
    """[N,1,H,W] -> [N,3,H,W] bilinear demosaic (normalised convolution, reflect padding)."""
    masks = cfa_masks(cfa, mosaic_img.shape[2], mosaic_img.shape[3], mosaic_img.device, mosaic_img.dtype)
    out = []
    for c in range(3):
        m = masks[:, c:c + 1]
        num = _correlate(mosaic_img * m, _BILINEAR, "reflect")
        den = _correlate(m.expand_as(mosaic_img), _BILINEAR, "reflect")
        out.append(torch.where(m > 0, mosaic_img, num / den.clamp_min(1e-8)))
    return torch.cat(out, dim=1)


_M_G = torch.tensor([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]) / 8.0
_M_ROW = torch.tensor([[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]]) / 8.0
_M_COL = _M_ROW.T.contiguous()
_M_DIAG = torch.tensor([[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]]) / 8.0


def demosaic_malvar(mosaic_img: torch.Tensor, cfa: str) -> torch.Tensor:
    """[N,1,H,W] -> [N,3,H,W] Malvar-He-Cutler (2004); matches colour-demosaicing's implementation."""
    h, w = mosaic_img.shape[2:]
    m = cfa_masks(cfa, h, w, mosaic_img.device, mosaic_img.dtype)
    r_m, b_m = m[:, 0:1], m[:, 2:3]
    g_est = _correlate(mosaic_img, _M_G, "symmetric")
    row = _correlate(mosaic_img, _M_ROW, "symmetric")
    col = _correlate(mosaic_img, _M_COL, "symmetric")
    diag = _correlate(mosaic_img, _M_DIAG, "symmetric")
    r_rows = r_m.amax(dim=3, keepdim=True).expand_as(r_m)
    r_cols = r_m.amax(dim=2, keepdim=True).expand_as(r_m)
    b_rows = b_m.amax(dim=3, keepdim=True).expand_as(b_m)
    b_cols = b_m.amax(dim=2, keepdim=True).expand_as(b_m)
    g = torch.where((r_m + b_m) > 0, g_est, mosaic_img)
    r = mosaic_img * r_m
    b = mosaic_img * b_m
    r = torch.where((r_rows * b_cols) > 0, row, r)
    r = torch.where((b_rows * r_cols) > 0, col, r)
    b = torch.where((b_rows * r_cols) > 0, row, b)
    b = torch.where((r_rows * b_cols) > 0, col, b)
    r = torch.where((b_rows * b_cols) > 0, diag, r)
    b = torch.where((r_rows * r_cols) > 0, diag, b)
    return torch.cat([r, g, b], dim=1)


def apply_wb(rgb: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """gains [N,3] or [3]."""
    return rgb * gains.reshape(-1, 3, 1, 1).to(rgb)


def apply_ccm(rgb: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """matrix [N,3,3] or [3,3]: out = M @ rgb per pixel."""
    m = matrix.to(rgb)
    if m.dim() == 2:
        m = m[None].expand(rgb.shape[0], 3, 3)
    return torch.einsum("nij,njhw->nihw", m, rgb)


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """Inverse sRGB transfer function (kornia)."""
    return kornia.color.rgb_to_linear_rgb(x)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function on [0, 1] (kornia), input clipped as in the numpy twin."""
    return kornia.color.linear_rgb_to_rgb(x.clamp(0.0, 1.0))


def smoothstep_tone(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    return 3.0 * x**2 - 2.0 * x**3


def inverse_smoothstep_tone(y: torch.Tensor) -> torch.Tensor:
    y = y.clamp(1e-7, 1.0 - 1e-7)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * y) / 3.0)


def gamma_tone(x: torch.Tensor, gamma: float) -> torch.Tensor:
    return x.clamp(1e-8, 1.0) ** (1.0 / gamma)


def libraw_gains(gains: torch.Tensor) -> torch.Tensor:
    """gains [N,3] scaled so the smallest is 1 (LibRaw's convention)."""
    return gains / gains.amin(dim=-1, keepdim=True)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] -> [N,1,H,W] Rec. 709 luma."""
    return rgb[:, 0:1] * 0.2126 + rgb[:, 1:2] * 0.7152 + rgb[:, 2:3] * 0.0722


def unprocess(srgb: torch.Tensor, rgb_to_cam: torch.Tensor, wb_gains: torch.Tensor, cfa: str) -> torch.Tensor:
    """Analytic reverse ISP, torch twin of ``rawedge.isp.pipeline.unprocess``: [N,3,H,W] -> [N,1,H,W].

    ``rgb_to_cam`` is the host-computed inverse of the profile's camera->sRGB matrix."""
    cam = apply_ccm(srgb_to_linear(srgb), rgb_to_cam)
    cam = cam / libraw_gains(wb_gains).reshape(-1, 3, 1, 1)
    return mosaic(cam, cfa).clamp(0.0, 1.0)


def process(mosaic_img: torch.Tensor, cfa: str, wb_gains: torch.Tensor, cam2rgb: torch.Tensor,
            demosaic: str = "bilinear") -> torch.Tensor:
    """Analytic forward ISP, torch twin of ``rawedge.isp.pipeline.process``."""
    rgb = demosaic_malvar(mosaic_img, cfa) if demosaic == "malvar" else demosaic_bilinear(mosaic_img, cfa)
    rgb = apply_wb(rgb, libraw_gains(wb_gains)).clamp(0.0, 1.0)
    return linear_to_srgb(apply_ccm(rgb, cam2rgb))
