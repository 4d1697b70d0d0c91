"""Per-region losses of overexposure mask fusion (P2, Eq. 3): over-exposed pixels with MS-SSIM-L1,
the rest with w2 * L2 + wm * MS-SSIM-L1 (LPIPS left out: no pretrained weights are downloaded).

As in the paper, each branch output and the target are masked to their region (pixels outside set to
0) before the loss. The mask is the hard overexposure mask of the input sRGB on the packed grid (the
2x2 block mean). Models with ``raw_oe`` / ``raw_noe`` outputs (oefusion) get one loss per branch;
any other model's ``raw`` is scored in both regions. Optional: gamma before the NOE loss (P2 Sec. 3.2),
an L2 on the fused ``raw``, and the YUV loss of the optional Bayer refinement (P2 Sec. 3.6).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rawedge.losses import register_loss
from rawedge.models.oefusion import DEFAULT_THRESHOLD, overexposure_mask_torch, packed_mask_torch

# BT.601 RGB -> YUV (P2 Eq. 2), applied to packed RGGB with the two greens averaged.
_YUV = torch.tensor([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])


def packed_to_yuv(raw: torch.Tensor) -> torch.Tensor:
    """[N,4,h,w] packed RGGB -> [N,3,h,w] YUV of (R, (G1+G2)/2, B)."""
    rgb = torch.cat([raw[:, 0:1], 0.5 * (raw[:, 1:2] + raw[:, 2:3]), raw[:, 3:4]], dim=1)
    return torch.einsum("ij,njhw->nihw", _YUV.to(raw), rgb)


@register_loss("oe_region")
class OERegionLoss(nn.Module):
    def __init__(self, threshold: float = DEFAULT_THRESHOLD, mode: str = "luma", l2_weight: float = 0.05,
                 msssim_weight: float = 0.75, oe_weight: float = 1.0, gamma: float | None = None,
                 fused_l2_weight: float = 0.0, yuv_weight: float = 0.0, alpha: float = 0.84,
                 sigmas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)):
        super().__init__()
        from kornia.losses import MS_SSIMLoss

        self.threshold, self.mode = float(threshold), mode
        self.l2_weight, self.msssim_weight, self.oe_weight = l2_weight, msssim_weight, oe_weight
        self.gamma, self.fused_l2_weight, self.yuv_weight = gamma, fused_l2_weight, yuv_weight
        # MS-SSIM-L1 of Zhao et al. (alpha 0.84, no extra compensation factor)
        self.msssim_l1 = MS_SSIMLoss(sigmas=tuple(sigmas), alpha=alpha, compensation=1.0)

    def _gamma(self, x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """x ** gamma with a bounded slope at 0 ((x + eps) ** g - eps ** g)."""
        return (x.clamp(min=0) + eps) ** self.gamma - eps**self.gamma

    def region_mask(self, srgb: torch.Tensor) -> torch.Tensor:
        return packed_mask_torch(overexposure_mask_torch(srgb, self.threshold, self.mode))

    def forward(self, outputs, batch):
        target = batch["raw"]
        mask = self.region_mask(batch["srgb"]).to(target)
        raw_oe = outputs.get("raw_oe", outputs["raw"])
        raw_noe = outputs.get("raw_noe", outputs["raw"])
        # over-exposed region: MS-SSIM-L1 only
        l_oe = self.msssim_l1(raw_oe * mask, target * mask)
        # the rest: L2 + MS-SSIM-L1, optionally on gamma-encoded values (weights dark pixels up)
        pred_n, gt_n = raw_noe * (1 - mask), target * (1 - mask)
        if self.gamma:
            pred_n, gt_n = self._gamma(pred_n), self._gamma(gt_n)
        l_l2 = F.mse_loss(pred_n, gt_n)
        l_ms = self.msssim_l1(pred_n, gt_n)
        l_noe = self.l2_weight * l_l2 + self.msssim_weight * l_ms
        loss = self.oe_weight * l_oe + l_noe
        parts = {"oe_msssim_l1": float(l_oe.detach()), "noe_l2": float(l_l2.detach()),
                 "noe_msssim_l1": float(l_ms.detach()), "oe_fraction": float(mask.mean().detach())}
        if self.fused_l2_weight:
            l_fused = F.mse_loss(outputs["raw"], target)
            loss = loss + self.fused_l2_weight * l_fused
            parts["fused_l2"] = float(l_fused.detach())
        if self.yuv_weight:
            l_yuv = F.l1_loss(packed_to_yuv(outputs["raw"]), packed_to_yuv(target))
            loss = loss + self.yuv_weight * l_yuv
            parts["yuv_l1"] = float(l_yuv.detach())
        parts["oe_region"] = float(loss.detach())
        return loss, parts
