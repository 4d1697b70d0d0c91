"""Edit-aware loss (Edit-aware RAW Reconstruction, 2025): L = raw_weight * L1(raw) + srgb_weight *
L1(g(pred), g(target)), where g is the randomised differentiable ISP of :mod:`rawedge.losses.edit_isp`
with parameters drawn afresh for every batch (per image) and shared by prediction and ground truth,
so the loss measures how differently the two RAWs *render* under edits a photographer might make,
not the randomness of the rendering.

Sampling (defaults follow the paper):
  exposure ev ~ N(0, 0.75^2); illuminant: (log R/G, log B/G) ~ N(wb_prior_mean, wb_prior_cov)
  (``CameraProfile.wb_prior_*`` fitted from the training files; ``wb_mode="as_shot"`` instead jitters
  each image's as-shot gains with the prior's covariance); look ~ U{neutral, K fitted looks};
  tone base ~ U{srgb, filmic}; tone polynomial of degree ~ U{1..5}, monotonic.

The evaluation's fixed edits are re-exported here: :func:`fixed_edits`, :func:`render_edit`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rawedge.errors import RawedgeError
from rawedge.losses import register_loss
from rawedge.losses.edit_isp import (
    STYLE_NAMES,
    TONE_BASES,
    ColorLooks,
    Edit,
    EditBatch,
    fixed_edits,
    random_monotone_curves,
    render_edit,
)
from rawedge.types import CameraProfile

__all__ = ["Edit", "EditAwareLoss", "EditBatch", "fixed_edits", "render_edit"]


def _wb_prior(mean, cov, camera_profile) -> tuple[torch.Tensor, torch.Tensor]:
    if camera_profile is not None:
        prof = camera_profile if isinstance(camera_profile, CameraProfile) else CameraProfile.from_dict(camera_profile)
    else:
        prof = CameraProfile.generic()  # the dataclass defaults: a daylight-ish prior
    mean = np.asarray(prof.wb_prior_mean if mean is None else mean, dtype=np.float64)
    cov = np.asarray(prof.wb_prior_cov if cov is None else cov, dtype=np.float64)
    if mean.shape != (2,) or cov.shape != (2, 2) or not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise RawedgeError(None, "edit_aware: wb_prior_mean needs 2 values and wb_prior_cov a 2x2 matrix")
    if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
        raise RawedgeError(None, "edit_aware: wb_prior_cov must be symmetric positive-definite")
    return torch.tensor(mean, dtype=torch.float32), torch.linalg.cholesky(torch.tensor(cov)).float()


@register_loss("edit_aware")
class EditAwareLoss(nn.Module):
    def __init__(self, srgb_weight: float = 1.0, raw_weight: float = 1.0, exposure_sigma: float = 0.75,
                 wb_prior_mean=None, wb_prior_cov=None, camera_profile=None, wb_mode: str = "prior",
                 max_tone_degree: int = 5, tone_strength: float = 0.5, seed: int = 0, look_seed: int = 0):
        super().__init__()
        if srgb_weight < 0 or raw_weight < 0 or exposure_sigma < 0 or tone_strength < 0:
            raise RawedgeError(None, "edit_aware: weights, exposure_sigma and tone_strength must be >= 0")
        if wb_mode not in ("prior", "as_shot"):
            raise RawedgeError(None, f"edit_aware: wb_mode must be 'prior' or 'as_shot', got {wb_mode!r}")
        if not 1 <= max_tone_degree <= 5:
            raise RawedgeError(None, "edit_aware: max_tone_degree must be in 1..5")
        self.srgb_weight, self.raw_weight = float(srgb_weight), float(raw_weight)
        self.exposure_sigma, self.tone_strength = float(exposure_sigma), float(tone_strength)
        self.wb_mode, self.max_tone_degree = wb_mode, int(max_tone_degree)
        self.wb_mean, self.wb_chol = _wb_prior(wb_prior_mean, wb_prior_cov, camera_profile)
        self.looks = ColorLooks(seed=look_seed)
        self.generator = torch.Generator().manual_seed(int(seed))

    def sample(self, n: int) -> EditBatch:
        """Draw the rendering parameters for ``n`` images (on the CPU, from the loss's own generator)."""
        g = self.generator
        log_ratio = torch.randn(n, 2, generator=g) @ self.wb_chol.T  # zero-mean, prior covariance
        ones = torch.ones(n, 1)
        if self.wb_mode == "prior":
            lr = log_ratio + self.wb_mean
            gains, scale = torch.cat([lr[:, :1].exp(), ones, lr[:, 1:].exp()], 1), torch.ones(n, 3)
        else:
            gains, scale = None, torch.cat([log_ratio[:, :1].exp(), ones, log_ratio[:, 1:].exp()], 1)
        return EditBatch(exposure_ev=torch.randn(n, generator=g) * self.exposure_sigma,
                         wb_scale=scale, wb_gains=gains,
                         style=torch.randint(0, len(STYLE_NAMES), (n,), generator=g),
                         tone_base=torch.randint(0, len(TONE_BASES), (n,), generator=g),
                         tone_curve=random_monotone_curves(n, g, self.max_tone_degree, self.tone_strength))

    def forward(self, outputs, batch):
        pred, target = outputs["raw"], batch["raw"]
        edit = self.sample(pred.shape[0])
        wb, cam2rgb = batch["wb"], batch["cam2rgb"]
        rendered = render_edit(pred, wb, cam2rgb, edit, self.looks)
        with torch.no_grad():
            rendered_target = render_edit(target, wb, cam2rgb, edit, self.looks)
        raw_l1 = F.l1_loss(pred, target)
        srgb_l1 = F.l1_loss(rendered, rendered_target)
        total = self.raw_weight * raw_l1 + self.srgb_weight * srgb_l1
        return total, {"raw_l1": float(raw_l1.detach()), "srgb_l1": float(srgb_l1.detach()),
                       "edit_aware": float(total.detach())}
