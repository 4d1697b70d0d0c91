"""Plain RAW losses on packed RGGB."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from rawedge.losses import register_loss


@register_loss("raw_l1")
class RawL1(nn.Module):
    def forward(self, outputs, batch):
        loss = F.l1_loss(outputs["raw"], batch["raw"])
        return loss, {"raw_l1": float(loss.detach())}


@register_loss("raw_l2")
class RawL2(nn.Module):
    def forward(self, outputs, batch):
        loss = F.mse_loss(outputs["raw"], batch["raw"])
        return loss, {"raw_l2": float(loss.detach())}
