"""Soft supervision (SSDNet, Zou & Zhang, AIM 2022), usable with every model.

Training-resampling (the paper's default, Eq. 3-4): the target is softened to
    x_rp = x_gt + z * e_gt,   e_gt = |x - x_gt| (detached),   z ~ N(0, z_scale^2) per pixel,
and the loss is L1(x, x_rp). With ``z_scale = 0`` it is the plain L1 loss.

Variance branch: when the model's output dict holds ``log_var`` (a training-only extra, see
:func:`with_variance_head`), the loss adds ``alpha`` times a term that teaches sigma = exp(log_var / 2)
the current error:
  * ``variance_term="l1"`` (paper, Eq. 4): |sigma - e_gt|, alpha = 0.001;
  * ``variance_term="nll"``: the heteroscedastic Gaussian NLL of e_gt, 0.5 (e_gt^2 / sigma^2 + log_var).
The branch exists only while training: it is never exported (not in ``output_names``) and costs
nothing at inference, as in the paper. ``variance_head`` (config, default true) tells the trainer to
wrap the model with :func:`with_variance_head` and to save :func:`unwrap_variance_head` of it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rawedge.errors import RawedgeError
from rawedge.losses import register_loss


@register_loss("soft")
class SoftSupervisionLoss(nn.Module):
    def __init__(self, z_scale: float = 1.0, alpha: float = 0.001, variance_term: str = "l1",
                 variance_head: bool = True):
        super().__init__()
        if z_scale < 0 or alpha < 0:
            raise RawedgeError(None, "soft: z_scale and alpha must be >= 0")
        if variance_term not in ("l1", "nll"):
            raise RawedgeError(None, f"soft: variance_term must be 'l1' or 'nll', got {variance_term!r}")
        self.z_scale, self.alpha, self.variance_term = float(z_scale), float(alpha), variance_term
        self.variance_head = bool(variance_head)  # a request to the trainer: wrap the model for training

    def forward(self, outputs, batch):
        pred, target = outputs["raw"], batch["raw"]
        error = (pred - target).abs().detach()
        soft_target = target + torch.randn_like(target) * self.z_scale * error if self.z_scale > 0 else target
        soft_l1 = F.l1_loss(pred, soft_target)
        total, logs = soft_l1, {"soft_l1": float(soft_l1.detach())}
        log_var = outputs.get("log_var")
        if log_var is not None:
            log_var = log_var.clamp(-30.0, 10.0)
            if self.variance_term == "l1":
                var_term = F.l1_loss(torch.exp(0.5 * log_var), error)
            else:
                var_term = 0.5 * (error**2 * torch.exp(-log_var) + log_var).mean()
            total = total + self.alpha * var_term
            logs["variance"] = float(var_term.detach())
        logs["raw_l1"] = float(error.mean())
        logs["soft"] = float(total.detach())
        return total, logs


class VarianceHead(nn.Module):
    """Predicts log sigma^2 of the packed RAW [N,4,H/2,W/2] from the input tile (pixel-unshuffled)
    and the model's prediction. Small on purpose: it is a training aid, dropped at export."""

    def __init__(self, width: int = 16, init_sigma: float = 0.01):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(16, width, 3, padding=1), nn.ELU(),
                                 nn.Conv2d(width, width, 3, padding=1), nn.ELU(),
                                 nn.Conv2d(width, 4, 3, padding=1))
        nn.init.normal_(self.net[-1].weight, std=1e-3)
        nn.init.constant_(self.net[-1].bias, 2.0 * math.log(init_sigma))

    def forward(self, srgb: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([F.pixel_unshuffle(srgb, 2), raw], dim=1))


class WithVarianceHead(nn.Module):
    """Any contract model plus a variance head. In training mode the output dict gains ``log_var``;
    in eval mode it is exactly the wrapped model. Save, export and ship :attr:`model` (see
    :func:`unwrap_variance_head`); the head's weights belong to the training run only."""

    def __init__(self, model: nn.Module, width: int = 16):
        super().__init__()
        self.model = model
        self.variance_head = VarianceHead(width)
        for attr in ("model_name", "config", "align", "output_names", "exif_facts", "default_config"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        out = self.model(srgb, thumb, exif, wb, cam2rgb, rgb2cam)
        if self.training:
            out = {**out, "log_var": self.variance_head(srgb, out["raw"])}
        return out


def with_variance_head(model: nn.Module, width: int = 16) -> WithVarianceHead:
    """Give ``model`` the soft-supervision variance branch for training."""
    return model if isinstance(model, WithVarianceHead) else WithVarianceHead(model, width)


def unwrap_variance_head(model: nn.Module) -> nn.Module:
    """The deployable model: drops the variance branch (no-op for a model without one)."""
    return model.model if isinstance(model, WithVarianceHead) else model
