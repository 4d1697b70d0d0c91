"""U-Net reverse ISP: predicts a residual on top of the analytic reverse ISP, at packed resolution,
with a global bias from ``thumb`` only (so tiles do not depend on where they were cut).

Two options bring in what ParamISP learns globally, at almost no cost per pixel:

* ``exif_dim`` > 0: ParamISP's ParamNet embeds the EXIF values (exposure time, ISO, f-number, focal
  length; missing = dropped, as in training dropout) and the canonical WB/matrix into the global vector.
* ``global_tone``: from that global vector, a per-channel gain and gamma are applied to the analytic
  prior (``prior' = gain * prior ** gamma``, identity at initialisation) before the U-Net sees it, so
  image-wide brightness and tone departures (a camera's or editor's exposure and curve) are corrected
  multiplicatively instead of by an additive residual.
* ``prior_stats``: explicit, camera-independent exposure facts of the analytic prior of the thumbnail
  (log mean, log geometric mean, log of the brightest 8x8 block, clipped and dark fractions of the
  photo) join the global vector. A CNN could learn them, but from a few cameras it learns camera
  identities instead; these facts mean the same on every camera (see :func:`prior_statistics`).
* ``confidence``: the model refines its analytic prior with a per-pixel gate and says how sure it is.
  ``raw = prior + alpha * (refined - prior)`` with ``alpha`` in (0, 1) learned per packed pixel, so where
  the network has nothing reliable to add the output stays at the analytic inverse; and an extra output
  ``sigma`` [N,4,H/2,W/2] (DESIGN.md), the predicted standard deviation of the RAW error, trained with a
  Gaussian likelihood on the detached error (rawedge.losses.confidence) and blended by the runtimes.
* ``tone_input``: what the global tone is predicted from. ``"all"``: the whole global vector (thumbnail
  CNN, EXIF, prior statistics). ``"stats"``: the prior statistics only. From a few hundred training
  pairs the thumbnail CNN can memorise each photo's exposure and curve, and then applies a confident,
  wrong tone to a camera it never saw (issue 13's fourth round: the same gamma 0.7 on every rendering of a
  held-out GoPro); five camera-independent numbers cannot memorise much.
* ``prior_blend`` (lambda in [0, 1], default 1): the output is ``analytic + lambda * (raw - analytic)``, a
  fixed hedge toward the analytic inverse for cameras the network never saw; not learned (training on a
  few cameras cannot tell how far to trust itself on others). rawedge.training.blend sweeps it and
  writes it into a checkpoint; benchmarks/lofo.py --hedge chooses it for each held-out family from the
  other folds' sweeps (0.9 for every fold of the fifth round, docs/model-card.md).
* ``tone_blend`` (mu in [0, 1], default 1): the global tone's log-gains and log-gammas are scaled by mu,
  a hedge of the image-wide exposure and curve toward the analytic inverse's. The global tone is the part
  of the model that transfers worst to an unseen camera (issue 13's sixth round: a model that never saw a
  GoPro darkens every GoPro rendering, while its local refinement still beats the analytic inverse), so
  it gets its own hedge; chosen with ``prior_blend`` by the same rule (rawedge.training.blend).
* ``metering_weight`` (kappa in [0, 1], default 0): the prior the network refines is the analytic prior
  moved toward ISO 12232's metered exposure by kappa, in log: 0 keeps the analytic inverse's level (the
  JPEG's white is the sensor's), 1 puts the photo's mean green at 0.104 of white (an averaging meter at
  saturation-based speed). The two err in opposite directions on every camera family in ../shared
  (docs/lofo-round7-exposure.md), and what the network must learn about a maker's exposure convention is
  only what is left between them. rawedge.training.metering fits kappa on the training pairs.
* ``metering_knee`` (None or in [0, 1), default None): the metering weight applies only as far as the
  JPEG's highlights (the thumbnail prior's 99th-percentile green) reach above the knee toward white
  (rawedge.models.base.highlight_gate). A JPEG that stops short of white was not stretched to it, so its
  white is the sensor's. Fitted with kappa (docs/lofo-round8-highlights.md).
* ``exposure_blend`` (eta in [0, 1], default 1): only the global tone's change of the mean level, measured
  on the thumbnail's prior (pixels below the clip level), is scaled by eta in log; its curve and colour
  stay. At eta 0 the toned prior keeps the (metered) prior's exposure: how brightly a camera exposes is not
  in its JPEGs, so on an unseen camera the learned exposure is a guess about a convention, while the curve
  is a fact of the rendering. Both options are computed from ``thumb`` only, so tiles agree.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rawedge.isp import torch_ops as T
from rawedge.models.base import (
    ReverseISP,
    analytic_packed,
    check_metering,
    metering_gain,
    unclipped_green_mean,
)
from rawedge.models.paramisp import EXIF_FACTS, ParamNet
from rawedge.models.registry import register_model


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2, inplace=True))


PRIOR_STATS = 5
TONE_LIMIT = 3.0  # |log gain| and |log gamma| of the global tone: e^3 = 20x, far beyond any real rendering
SIGMA_SCALE = 0.02  # sigma at initialisation (normalised RAW units); the head learns log-multiples of it


def prior_statistics(thumb: torch.Tensor, wb: torch.Tensor, rgb2cam: torch.Tensor) -> torch.Tensor:
    """[N, 5] exposure facts of a photo from its thumbnail [N,3,S,S] (S divisible by 8): log2 of the
    analytic prior's mean, its geometric mean and its brightest 8x8 block (camera-space green), and the
    fractions of thumbnail pixels that are clipped (max channel > 0.98) and near black (< 0.02).

    Example: ``prior_statistics(torch.rand(1, 3, 256, 256), torch.ones(1, 3), torch.eye(3)[None])``."""
    if thumb.ndim != 4 or thumb.shape[1] != 3 or thumb.shape[2] % 8 or thumb.shape[3] % 8:
        raise ValueError(f"thumb must be [N,3,S,S] with S divisible by 8, got {tuple(thumb.shape)}")
    cam = T.apply_ccm(T.srgb_to_linear(thumb.clamp(0.0, 1.0)), rgb2cam)
    green = (cam[:, 1:2] / T.libraw_gains(wb)[:, 1:2, None, None]).clamp(1e-4, 1.0)
    mean = green.mean(dim=(1, 2, 3))
    geo = torch.log2(green).mean(dim=(1, 2, 3))
    bright = F.avg_pool2d(green, 8).amax(dim=(1, 2, 3))
    peak = thumb.amax(dim=1)
    clipped = (peak > 0.98).float().mean(dim=(1, 2))
    dark = (peak < 0.02).float().mean(dim=(1, 2))
    return torch.stack([torch.log2(mean), geo, torch.log2(bright), clipped, dark], dim=1)


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
    default_config: ClassVar[dict] = {"width": 16, "depth": 3, "exif_dim": 0, "global_tone": False, "exif_dropout": 0.2,
                                      "prior_stats": False, "confidence": False,
                                      "prior_blend": 1.0, "tone_input": "all", "tone_blend": 1.0,
                                      "exposure_blend": 1.0, "metering_weight": 0.0,
                                      "metering_knee": None}

    def __init__(self, width: int = 16, depth: int = 3, exif_dim: int = 0, global_tone: bool = False,
                 exif_dropout: float = 0.2, prior_stats: bool = False, confidence: bool = False,
                 prior_blend: float = 1.0, tone_input: str = "all", tone_blend: float = 1.0,
                 exposure_blend: float = 1.0, metering_weight: float = 0.0,
                 metering_knee: float | None = None):
        super().__init__()
        if tone_input not in ("all", "stats"):
            raise ValueError(f"tone_input must be 'all' or 'stats', got {tone_input!r}")
        if tone_input == "stats" and not (prior_stats and global_tone):
            raise ValueError("tone_input='stats' needs prior_stats and global_tone")
        self.tone_input = tone_input
        if not 0.0 <= float(prior_blend) <= 1.0:
            raise ValueError(f"prior_blend must be in [0, 1], got {prior_blend}")
        self.prior_blend = float(prior_blend)
        if not 0.0 <= float(tone_blend) <= 1.0:
            raise ValueError(f"tone_blend must be in [0, 1], got {tone_blend}")
        if float(tone_blend) != 1.0 and not global_tone:
            raise ValueError("tone_blend needs global_tone (there is no tone to hedge)")
        self.tone_blend = float(tone_blend)
        if not 0.0 <= float(exposure_blend) <= 1.0:
            raise ValueError(f"exposure_blend must be in [0, 1], got {exposure_blend}")
        if float(exposure_blend) != 1.0 and not global_tone:
            raise ValueError("exposure_blend needs global_tone (there is no tone to hedge)")
        self.exposure_blend = float(exposure_blend)
        check_metering(metering_weight, metering_knee)
        self.metering_weight = float(metering_weight)
        self.metering_knee = None if metering_knee is None else float(metering_knee)
        self.confidence = bool(confidence)
        if self.confidence:
            self.output_names = ("raw", "sigma")
        self.depth = depth
        self.align = 2 * 2**depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.head = conv_block(12 + 4, chans[0])
        self.downs = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 2, stride=2) for i in range(depth))
        self.enc = nn.ModuleList(conv_block(chans[i + 1], chans[i + 1]) for i in range(depth))
        self.thumb = ThumbEncoder(chans[-1])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth)))
        self.dec = nn.ModuleList(conv_block(chans[i] * 2, chans[i]) for i in reversed(range(depth)))
        self.tail = nn.Conv2d(chans[0], 4 + (5 if self.confidence else 0), 1)  # residual [+ gate, log-sigma]
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        self.paramnet = ParamNet(exif_dim, exif_dropout, canonical=True) if exif_dim > 0 else None
        self.exif_proj = nn.Linear(exif_dim, chans[-1]) if exif_dim > 0 else None
        if exif_dim > 0:
            self.exif_facts = EXIF_FACTS  # the export embeds the equalisation constants
        self.stats_proj = nn.Sequential(nn.Linear(PRIOR_STATS, chans[-1]), nn.LeakyReLU(0.2, inplace=True),
                                        nn.Linear(chans[-1], chans[-1])) if prior_stats else None
        self.tone = nn.Linear(chans[-1], 8) if global_tone else None  # 4 log-gains, 4 log-gammas
        if self.tone is not None:
            nn.init.zeros_(self.tone.weight)
            nn.init.zeros_(self.tone.bias)

    def global_features(self, thumb, exif, wb, cam2rgb, rgb2cam) -> tuple[torch.Tensor, torch.Tensor]:
        """([N, C] image-wide features, [N, C] what the global tone reads: the same vector, or with
        ``tone_input="stats"`` the prior statistics' part of it)."""
        g = self.thumb(thumb)
        if self.paramnet is not None:
            g = g + self.exif_proj(self.paramnet(exif, wb, cam2rgb, rgb2cam))
        if self.stats_proj is None:
            return g, g
        s = self.stats_proj(prior_statistics(thumb, wb, rgb2cam))
        return g + s, (s if self.tone_input == "stats" else g + s)

    def toned_prior(self, prior: torch.Tensor, g: torch.Tensor, thumb_prior: torch.Tensor | None = None) -> torch.Tensor:
        """``gain * prior ** gamma`` per channel, both from ``g`` (the tone's input features), their logs
        scaled by ``tone_blend``; with ``exposure_blend`` < 1 the gains lose that share of the change in mean
        level the tone makes to ``thumb_prior`` (the thumbnail's prior, [N,4,h,w])."""
        if self.tone is None:
            return prior
        t = self.tone(g)
        if self.tone_blend != 1.0:
            t = self.tone_blend * t
        t = t[:, :, None, None].clamp(-TONE_LIMIT, TONE_LIMIT)  # finite gains and gammas
        log_gain, gamma = t[:, :4], torch.exp(t[:, 4:])
        if self.exposure_blend != 1.0:
            log_gain = log_gain + (1.0 - self.exposure_blend) * self.exposure_correction(thumb_prior, log_gain, gamma)
        return (torch.exp(log_gain) * prior.clamp(min=1e-6).pow(gamma)).clamp(0.0, 1.0)

    def metering_gain(self, thumb_prior: torch.Tensor) -> torch.Tensor:
        """[N,1,1,1] :func:`rawedge.models.base.metering_gain` at this model's ``metering_weight``."""
        return metering_gain(thumb_prior, self.metering_weight, self.metering_knee)

    def metered(self, analytic: torch.Tensor, thumb_prior: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        """``analytic`` times :meth:`metering_gain` (or ``gain``, when the caller has it already), clipped to
        [0, 1]: the prior the network refines."""
        if self.metering_weight == 0.0:
            return analytic
        return (analytic * (self.metering_gain(thumb_prior) if gain is None else gain)).clamp(0.0, 1.0)

    @staticmethod
    def exposure_correction(thumb_prior: torch.Tensor, log_gain: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """[N,1,1,1] log of the gain that brings the toned thumbnail prior's mean green level (over the packed
        pixels the prior does not clip) back to the prior's own."""
        toned = (torch.exp(log_gain) * thumb_prior.clamp(min=1e-6).pow(gamma)).clamp(0.0, 1.0)
        before, after = unclipped_green_mean(thumb_prior), unclipped_green_mean(thumb_prior, toned)
        return torch.log(before) - torch.log(after)

    def hedged(self, raw: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """``base + prior_blend * (raw - base)``, ``base`` the (metered) analytic prior; both in [0, 1], so
        the blend is too."""
        if self.prior_blend == 1.0:
            return raw
        return base + self.prior_blend * (raw - base)

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        g, tone_features = self.global_features(thumb, exif, wb, cam2rgb, rgb2cam)
        analytic = analytic_packed(srgb, wb, rgb2cam)
        thumb_prior = None
        if self.exposure_blend != 1.0 or self.metering_weight:
            thumb_prior = analytic_packed(thumb, wb, rgb2cam)
            gain = self.metering_gain(thumb_prior) if self.metering_weight else None  # once per photo
            base, thumb_prior = self.metered(analytic, thumb_prior, gain), self.metered(thumb_prior, thumb_prior, gain)
        else:
            base = analytic
        prior = self.toned_prior(base, tone_features, thumb_prior)
        x = self.head(torch.cat([F.pixel_unshuffle(srgb, 2), prior], dim=1))
        skips = [x]
        for down, enc in zip(self.downs, self.enc):
            x = enc(down(x))
            skips.append(x)
        x = x + g[:, :, None, None]
        for up, dec, skip in zip(self.ups, self.dec, reversed(skips[:-1])):
            x = dec(torch.cat([up(x), skip], dim=1))
        head = self.tail(x)
        if not self.confidence:
            return {"raw": self.hedged((prior + head).clamp(0.0, 1.0), base)}
        refined = prior + head[:, :4]
        alpha = torch.sigmoid(head[:, 4:5] + 2.0)  # starts near 0.88: refinements pass until shown unreliable
        raw = self.hedged((analytic + alpha * (refined - analytic)).clamp(0.0, 1.0), base)
        sigma = SIGMA_SCALE * torch.exp(6.0 * torch.tanh(head[:, 5:9] / 6.0))  # 5e-5..8, smooth (never stuck)
        return {"raw": raw, "sigma": sigma, "alpha": alpha, "analytic": analytic}
