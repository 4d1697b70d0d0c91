"""Overexposure mask fusion (Kim, Jiang, Gu, AIM 2022; /work/shared/papers/overexposure-mask-fusion.txt).

Two branches, one specialised on over-exposed pixels (U_oe) and one on the rest (U_noe), fused with the
overexposure mask M (luma >= 0.978 on the input sRGB) as ``M * U_oe + (1 - M) * U_noe``.

Multi-step refinement, adapted so the runtime can redo the last step on the whole image:
  step 1  a host model of the registry (``branch``: "unet", "analytic" (= UPI), "paramisp", ...) maps
          sRGB to a first packed RAW estimate (one host per branch, or one shared: ``share_host``);
  step 2+ ``refine_steps`` residual refiners per branch, each reading the previous estimate, the sRGB
          2x2 blocks and the hard mask (the paper's extra mask channel), refine that branch's estimate;
  last    the fusion with the feathered mask. The model's own ``raw`` uses the tile-local mask; the
          runtime re-fuses ``raw_oe`` and ``raw_noe`` with the mask computed once on the full image
          (runtimes/fusion.py, the numpy twin of the functions below), so fusion is the only step
          that needs more than the tile and it is the one the runtime repeats.
Train with the ``oe_region`` loss (rawedge/losses/region.py): MS-SSIM-L1 on the masked over-exposed
region of ``raw_oe``, L2 + MS-SSIM-L1 on the rest for ``raw_noe``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rawedge.isp import torch_ops as T
from rawedge.models.base import ReverseISP
from rawedge.models.registry import create_model, register_model
from rawedge.models.unet import conv_block

DEFAULT_THRESHOLD = 0.978  # the paper's luma threshold (runtimes.fusion.DEFAULT_THRESHOLD)


# ---- torch twins of runtimes/fusion.py ---------------------------------------------------------------
def overexposure_mask_torch(srgb: torch.Tensor, threshold: float = DEFAULT_THRESHOLD, mode: str = "luma") -> torch.Tensor:
    """[N,3,H,W] sRGB in [0,1] -> [N,1,H,W] float {0,1}: luma >= threshold, or max(R,G,B) (mode='max')."""
    if mode == "luma":
        v = T.luma(srgb)
    elif mode == "max":
        v = srgb.amax(dim=1, keepdim=True)
    else:
        raise ValueError(f"unknown mask mode {mode!r} (luma or max)")
    return (v >= threshold).to(srgb.dtype)


def box_blur_torch(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable (2r+1)-tap box blur of [N,C,H,W] with replicate (edge) padding."""
    if radius <= 0:
        return x
    k = 2 * radius + 1
    x = F.avg_pool2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), (1, k), stride=1)
    return F.avg_pool2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), (k, 1), stride=1)


def feather_torch(mask: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """Soft mask: two box-blur passes, clipped to [0,1] (numpy twin: runtimes.fusion.feather)."""
    return box_blur_torch(box_blur_torch(mask, radius), radius).clamp(0.0, 1.0)


def packed_mask_torch(mask: torch.Tensor) -> torch.Tensor:
    """[N,1,H,W] -> [N,1,H/2,W/2], the 2x2 block mean (the packed RAW grid)."""
    return F.avg_pool2d(mask, 2)


def fuse_torch(raw_oe: torch.Tensor, raw_noe: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """M * U_oe + (1 - M) * U_noe (mask broadcasts over channels)."""
    return mask * raw_oe + (1.0 - mask) * raw_noe


class Refiner(nn.Module):
    """One refinement step: previous packed RAW + sRGB blocks + mask -> residual (zero at init)."""

    def __init__(self, width: int):
        super().__init__()
        self.body = conv_block(4 + 12 + 1, width)
        self.tail = nn.Conv2d(width, 4, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, raw, blocks, mask):
        return (raw + self.tail(self.body(torch.cat([raw, blocks, mask], dim=1)))).clamp(0.0, 1.0)


@register_model("oefusion")
class OEFusion(ReverseISP):
    default_config = {
        "branch": "unet", "branch_config": {},  # any registry model as the host of each branch
        "share_host": False,  # one host for both branches (the paper's single-network variant)
        "refine_steps": 1, "refine_width": 16,
        "threshold": DEFAULT_THRESHOLD, "mode": "luma", "feather": 4,
    }
    output_names = ("raw", "raw_oe", "raw_noe")

    def __init__(self, branch="unet", branch_config=None, share_host=False, refine_steps=1, refine_width=16,
                 threshold=DEFAULT_THRESHOLD, mode="luma", feather=4):
        super().__init__()
        if branch == "oefusion":
            raise ValueError("oefusion cannot be its own branch")
        if mode not in ("luma", "max"):
            raise ValueError(f"unknown mask mode {mode!r} (luma or max)")
        branch_config = dict(branch_config or {})
        self.host_oe = create_model(branch, **branch_config)
        self.host_noe = None if share_host else create_model(branch, **branch_config)
        self.refine_oe = nn.ModuleList(Refiner(refine_width) for _ in range(refine_steps))
        self.refine_noe = nn.ModuleList(Refiner(refine_width) for _ in range(refine_steps))
        self.threshold, self.mode, self.feather_radius = float(threshold), mode, int(feather)
        self.align = max(2, self.host_oe.align, self.host_noe.align if self.host_noe is not None else 2)
        self.exif_facts = dict(getattr(self.host_oe, "exif_facts", {}))
        self.fusion = self.fusion_settings()

    def fusion_settings(self) -> dict:
        """What the runtime needs to re-fuse at full resolution (exported as the ``fusion`` metadata)."""
        return {"threshold": self.threshold, "mode": self.mode, "feather_radius": self.feather_radius,
                "outputs": {"oe": "raw_oe", "noe": "raw_noe", "fused": "raw"},
                "mask": "overexposure_mask(srgb) on the full image, feather(radius), packed_mask (2x2 mean)"}

    def export_extras(self) -> dict:
        """Metadata the exporter embeds: the fusion settings (and the host's recommended tile, if any)."""
        host = getattr(self.host_oe, "export_extras", None)
        tile = (host() or {}).get("tile") if host else None
        return {"fusion": self.fusion_settings(), **({"tile": tile} if tile else {})}

    def masks(self, srgb: torch.Tensor):
        """(hard packed mask for the refiners, feathered packed mask for the fusion), both [N,1,H/2,W/2]."""
        hard = overexposure_mask_torch(srgb, self.threshold, self.mode)
        return packed_mask_torch(hard), packed_mask_torch(feather_torch(hard, self.feather_radius))

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        args = (srgb, thumb, exif, wb, cam2rgb, rgb2cam)
        hard, soft = self.masks(srgb)
        blocks = F.pixel_unshuffle(srgb, 2)
        raw_oe = self.host_oe(*args)["raw"]
        raw_noe = raw_oe if self.host_noe is None else self.host_noe(*args)["raw"]
        for step_oe, step_noe in zip(self.refine_oe, self.refine_noe):
            raw_oe = step_oe(raw_oe, blocks, hard)
            raw_noe = step_noe(raw_noe, blocks, hard)
        return {"raw": fuse_torch(raw_oe, raw_noe, soft), "raw_oe": raw_oe, "raw_noe": raw_noe}
