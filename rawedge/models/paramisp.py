"""ParamISP (Kim et al., CVPR 2024): learned inverse and forward ISPs conditioned on camera parameters.

Two registry models share the same sub-networks:

* ``paramisp`` (the contract's direction, sRGB -> RAW):
  GlobalNet (inverse tone) -> LocalNet -> CanoNet^-1 (rgb2cam, 1/g, pack to RGGB).
  ``forward(srgb, thumb, exif, wb, cam2rgb, rgb2cam) -> {"raw": [N,4,H/2,W/2]}``.
* ``paramisp_forward`` (RAW -> sRGB, for evaluation and fine-tuning; not a contract model):
  CanoNet (Malvar demosaic, WB, cam2rgb) -> LocalNet -> GlobalNet.
  ``forward(raw, thumb, exif, wb, cam2rgb, rgb2cam=None) -> {"srgb": [N,3,H,W]}`` where ``raw`` is
  packed RGGB [N,4,H/2,W/2] in [0,1] and ``thumb`` is ``rawedge.contract.make_thumb`` of the *canonical*
  image of the whole frame (see :meth:`ParamISPForward.canonical_thumb`).

ParamNet turns the four EXIF values into a vector z with the paper's non-linear equalisation (the
constants live in ``exif_facts`` so export can embed them). A missing value (NaN, <= 0, inf) and a
training-time dropout are the same thing: that parameter's embedding is zeroed with ``torch.where``,
so the ONNX graph handles missing EXIF without data-dependent shapes. Unlike the authors' released
code, the dropout is actually applied.

Tile independence: GlobalNet's 156 coefficients come from ``thumb`` (and z) only, LocalNet's CBAM
blocks pool over local windows (``rawedge.models.blocks``), and everything else is per pixel, so a
tile's output equals the crop of the whole-image output more than ``receptive_radius`` (full-resolution
pixels, an upper bound) away from the tile border, provided tiles start on multiples of ``align``.

sRGB prior (``srgb_prior``, default on): the exact sRGB transfer curve is a fixed step next to
GlobalNet (its inverse before GlobalNet in ``paramisp``, the curve itself after GlobalNet in
``paramisp_forward``), and GlobalNet and LocalNet start near identity, so an untrained model *is* the
analytic ISP and training learns only the camera's departures from it. With ``srgb_prior=False``
GlobalNet learns the whole tone curve as in the paper, its first stage initialised to a gamma curve
close to the sRGB one.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rawedge.errors import RawedgeError
from rawedge.isp import torch_ops as T
from rawedge.models.base import ReverseISP
from rawedge.models.blocks import CBAMResBlock, feature_channels, handcrafted_features
from rawedge.models.registry import register_model

# ParamISP's equalisation constants (authors' code, data/utils.py), in the contract's EXIF order.
# direct = x / direct_max, inverse = inverse_min / x, log2 = (log2 x - log2_shift) / log2_span,
# sinusoids use x / divisor; each maps the camera's usual range to roughly [0, 1].
EXIF_FACTS: dict = {
    "order": ["exposure_time", "iso", "f_number", "focal_length"],
    "parameters": {
        "exposure_time": {"unit": "s", "direct_max": 30.0, "inverse_min": 1.0 / 28800.0,
                          "log2_shift": -15.0, "log2_span": 20.0, "sin_divisors": [11.0, 5.0, 2.0]},
        "iso": {"unit": "ISO", "direct_max": 8000.0, "inverse_min": 64.0,
                "log2_shift": 6.0, "log2_span": 7.0, "sin_divisors": [3100.0, 1300.0, 500.0]},
        "f_number": {"unit": "f/", "direct_max": 32.0, "inverse_min": 1.7,
                     "log2_shift": 0.7, "log2_span": 4.3, "sin_divisors": [11.0, 5.0, 2.0]},
        "focal_length": {"unit": "mm", "direct_max": 200.0, "inverse_min": 4.2,
                         "log2_shift": 1.9, "log2_span": 5.8, "sin_divisors": [50.0, 30.0, 20.0]},
    },
    "mappings": ["d", "sqrt(d)", "d^(1/4)", "i", "sqrt(i)", "i^(1/4)", "log2_norm", "sin(log2 x)",
                 "cos(log2 x)", "sin(x/c1)", "cos(x/c1)", "sin(x/c2)", "cos(x/c2)", "sin(x/c3)", "cos(x/c3)"],
    "missing": "NaN, inf or <= 0 drops the parameter (zero embedding), exactly like training dropout",
}
N_MAPPINGS = 15
N_COEFFS = 39  # per GlobalNet stage: 3x10 quadratic + 3 x (log gamma, beta, log alpha)

# Stage-1 gamma curves that start each direction at the sRGB transfer function.
# Inverse: ((x + 0.055) / 1.055)^2.4, normalised to f(0)=0, f(1)=1 (alpha + beta = 1).
INVERSE_SRGB_GAMMA = (1.0 / 1.055, 0.055 / 1.055, 2.4)
FORWARD_SRGB_GAMMA = (1.0, 1e-3, 1.0 / 2.2)


def safe_pow(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """Sign-preserving power with |x| clamped to >= 1e-6: finite values and gradients everywhere, and
    a clean ONNX Pow (no NaN from fractional powers of negatives)."""
    return torch.sign(x) * x.abs().clamp(min=1e-6).pow(exponent)


class ParamNet(nn.Module):
    """EXIF (+ canonical WB/CCM) -> z. 15 equalising maps per parameter, Linear(15->d) each, summed,
    then three ELU+Linear layers. Missing or dropped parameters contribute nothing."""

    def __init__(self, dim: int, dropout: float, canonical: bool):
        super().__init__()
        facts = [EXIF_FACTS["parameters"][name] for name in EXIF_FACTS["order"]]
        self.register_buffer("direct_max", torch.tensor([f["direct_max"] for f in facts]), persistent=False)
        self.register_buffer("inverse_min", torch.tensor([f["inverse_min"] for f in facts]), persistent=False)
        self.register_buffer("log2_shift", torch.tensor([f["log2_shift"] for f in facts]), persistent=False)
        self.register_buffer("log2_span", torch.tensor([f["log2_span"] for f in facts]), persistent=False)
        self.register_buffer("divisors", torch.tensor([f["sin_divisors"] for f in facts]), persistent=False)
        self.dropout = float(dropout)
        self.embed = nn.ModuleList(nn.Linear(N_MAPPINGS, dim) for _ in facts)
        # The authors' code also embeds [g, 1/g] and [M, M^-1]: the canonical parameters condition z too.
        self.embed_canonical = nn.Linear(24, dim) if canonical else None
        self.mlp = nn.Sequential(nn.ELU(), nn.Linear(dim, dim), nn.ELU(), nn.Linear(dim, dim),
                                 nn.ELU(), nn.Linear(dim, dim))

    def equalize(self, exif: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N,4] raw EXIF -> ([N,4,15] equalised features, [N,4] bool valid). Invalid entries get a
        harmless placeholder so no NaN or inf ever enters the graph."""
        exif = exif.to(self.direct_max.dtype)
        valid = torch.isfinite(exif) & (exif > 0)
        x = torch.where(valid, exif, torch.ones_like(exif))
        # Clamp to 16x beyond each equalisation range: absurd values stay finite and ordered.
        x = torch.minimum(torch.maximum(x, self.inverse_min / 16), self.direct_max * 16)
        d = x / self.direct_max
        i = self.inverse_min / x
        l2 = torch.log2(x)
        c = x.unsqueeze(-1) / self.divisors  # [N,4,3]
        maps = [d, d.sqrt(), d.sqrt().sqrt(), i, i.sqrt(), i.sqrt().sqrt(),
                (l2 - self.log2_shift) / self.log2_span, torch.sin(l2), torch.cos(l2)]
        for k in range(c.shape[-1]):
            maps += [torch.sin(c[..., k]), torch.cos(c[..., k])]
        return torch.stack(maps, dim=-1), valid

    def forward(self, exif, wb, cam2rgb, rgb2cam) -> torch.Tensor:
        feats, keep = self.equalize(exif)
        if self.training and self.dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.dropout)
        emb = torch.stack([embed(feats[:, k]) for k, embed in enumerate(self.embed)], dim=1)  # [N,4,d]
        emb = torch.where(keep.unsqueeze(-1), emb, torch.zeros_like(emb))
        total = emb.sum(dim=1)
        if self.embed_canonical is not None:
            wb = wb.to(total.dtype)
            canon = torch.cat([wb, 1.0 / wb.clamp(min=1e-6), cam2rgb.flatten(1), rgb2cam.flatten(1)], dim=1)
            total = total + self.embed_canonical(canon)
        return self.mlp(total)


class GlobalNet(nn.Module):
    """N stages of (residual 3x10 quadratic colour transform, then per-channel gamma curve), with the
    N*39 coefficients predicted from ``thumb`` features and z only (never from the tile)."""

    def __init__(self, feat_channels: int, width: int, z_dim: int, stages: int,
                 first_gamma: tuple[float, float, float] | None):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(feat_channels, width, 3, stride=2)] +
                                   [nn.Conv2d(width, width, 3, stride=2) for _ in range(2)])
        self.z_proj = nn.Linear(z_dim, width)
        self.stage_embed = nn.Parameter(torch.randn(stages, width) * 0.1)
        self.fc = nn.Sequential(nn.Linear(width, width), nn.ELU(), nn.Linear(width, width), nn.ELU())
        self.heads = nn.ModuleList(nn.Linear(width, N_COEFFS) for _ in range(stages))
        for s, head in enumerate(self.heads):
            nn.init.normal_(head.weight, std=1e-4)
            bias = torch.zeros(N_COEFFS)  # quadratic residual 0, gamma = alpha = 1: identity
            bias[33:36] = 0.01  # beta, away from |.|'s kink at 0
            if s == 0 and first_gamma is not None:
                alpha, beta, gamma = first_gamma
                bias[30:33], bias[33:36], bias[36:39] = math.log(gamma), beta, math.log(alpha)
            with torch.no_grad():
                head.bias.copy_(bias)

    def coefficients(self, thumb_features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """[N,C,256,256] thumbnail features, [N,d] z -> [N, stages, 39]."""
        h = thumb_features
        for conv in self.convs:
            h = F.max_pool2d(F.elu(conv(h)), 2)
        g = h.mean(dim=(2, 3)) + F.elu(self.z_proj(z))
        return torch.stack([head(self.fc(g + self.stage_embed[s])) for s, head in enumerate(self.heads)], dim=1)

    @staticmethod
    def quadratic(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x + W p', p' = [r^2, g^2, b^2, rg, gb, br, r, g, b, 1] written out term by term."""
        r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        terms = torch.cat([r * r, g * g, b * b, r * g, g * b, b * r, r, g, b, torch.ones_like(r)], dim=1)
        return x + torch.einsum("nck,nkhw->nchw", w.reshape(-1, 3, 10), terms)

    @staticmethod
    def gamma_curve(x: torch.Tensor, log_gamma, beta_raw, log_alpha) -> torch.Tensor:
        """f(p) = [(a p + b)^g - b^g] / [(a + b)^g - b^g] per channel (f(0) = 0, f(1) = 1)."""
        shape = (-1, 3, 1, 1)
        gamma = torch.exp(log_gamma.clamp(-4.0, 4.0)).reshape(shape)
        beta = beta_raw.abs().reshape(shape)
        alpha = torch.exp(log_alpha.clamp(-4.0, 4.0)).reshape(shape)
        s0 = safe_pow(beta, gamma)
        s1 = (safe_pow(alpha + beta, gamma) - s0).clamp(min=1e-6)
        return (safe_pow(alpha * x + beta, gamma) - s0) / s1

    def transform(self, x: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
        for s in range(coeffs.shape[1]):
            c = coeffs[:, s]
            x = self.quadratic(x, c[:, :30])
            x = self.gamma_curve(x, c[:, 30:33], c[:, 33:36], c[:, 36:39])
        return x


class LocalNet(nn.Module):
    """U-Net of CBAM ResBlocks on the handcrafted features; z is added as a bias after the head conv;
    predicts a 3-channel residual. 2x2 stride-2 convs down, 2x2 stride-2 deconvs up, additive skips."""

    def __init__(self, feat_channels: int, width: int, z_dim: int, num_scale: int, num_block: int,
                 reduction: int, window: int, out_channels: int = 3):
        super().__init__()

        def blocks():
            return nn.Sequential(*[CBAMResBlock(width, reduction, window) for _ in range(num_block)])

        self.head = nn.Conv2d(feat_channels, width, 3, padding=1, padding_mode="replicate")
        self.z_proj = nn.Linear(z_dim, width)
        self.enc = nn.ModuleList(blocks() for _ in range(num_scale))
        self.down = nn.ModuleList(nn.Conv2d(width, width, 2, stride=2) for _ in range(num_scale))
        self.mid = blocks()
        self.up = nn.ModuleList(nn.ConvTranspose2d(width, width, 2, stride=2) for _ in range(num_scale))
        self.dec = nn.ModuleList(blocks() for _ in range(num_scale))
        self.tail = nn.Conv2d(width, out_channels, 3, padding=1, padding_mode="replicate")
        nn.init.normal_(self.tail.weight, std=1e-4)  # near-identity start, gradients still reach the body
        nn.init.zeros_(self.tail.bias)

    def forward(self, feats: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # channels-last makes PyTorch's CPU pooling and convolutions ~3x faster; a no-op in ONNX
        feats = feats.contiguous(memory_format=torch.channels_last)
        x = self.head(feats) + self.z_proj(z)[:, :, None, None]
        skips = []
        for enc, down in zip(self.enc, self.down):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.mid(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(up(x) + skip)
        return self.tail(x)


PAPER_CONFIG = {"width": 64, "global_width": 64, "param_dim": 64}  # ~0.7 M parameters, as in the paper
# A few thousand parameters, same graph: for fast export and runtime tests.
TINY_CONFIG = {"width": 8, "global_width": 8, "param_dim": 8, "num_scale": 1, "num_block": 1,
               "attention_window": 3}


class _ParamISPCore(nn.Module):
    default_config: ClassVar[dict] = {
        "width": 32,            # LocalNet channels (paper: 64)
        "global_width": 32,     # GlobalNet channels (paper: 64)
        "param_dim": 32,        # size of z (paper code: 64)
        "num_scale": 2,         # LocalNet downsamplings
        "num_block": 2,         # CBAM ResBlocks per level (2 scales x 2 -> 10 blocks)
        "reduction": 2,         # CBAM / ResBlock channel reduction
        "attention_window": 7,  # local pooling window of the channel attention (tile independence)
        "stages": 4,            # GlobalNet stages (156 coefficients)
        "histogram_bins": [4, 8, 16],
        "dropout": 0.2,         # per-parameter EXIF dropout while training
        "canonical_embedding": True,  # ParamNet also sees [g, 1/g, M, M^-1] (authors' code)
        "dequant_noise": 0.4 / 255,   # training-time noise on the input (authors' inverse training)
        "srgb_prior": True,     # fixed exact sRGB curve beside GlobalNet (False: learned, as in the paper)
        "local_stride": 1,      # 2: LocalNet on 2x2 space-to-depth features (4x fewer pixels; not in the paper)
    }
    tiny_config: ClassVar[dict] = TINY_CONFIG
    exif_facts = EXIF_FACTS
    first_gamma = INVERSE_SRGB_GAMMA

    def __init__(self, width=32, global_width=32, param_dim=32, num_scale=2, num_block=2, reduction=2,
                 attention_window=7, stages=4, histogram_bins=(4, 8, 16), dropout=0.2,
                 canonical_embedding=True, dequant_noise=0.4 / 255, srgb_prior=True, local_stride=1):
        super().__init__()
        if not 0.0 <= dropout <= 1.0:
            raise RawedgeError(None, f"paramisp: dropout must be in [0, 1], got {dropout}")
        if attention_window < 1 or attention_window % 2 == 0:
            raise RawedgeError(None, f"paramisp: attention_window must be odd, got {attention_window}")
        if local_stride not in (1, 2):
            raise RawedgeError(None, f"paramisp: local_stride must be 1 or 2, got {local_stride}")
        self.bins = tuple(int(b) for b in histogram_bins)
        self.local_stride = int(local_stride)
        self.dequant_noise = float(dequant_noise)
        self.srgb_prior = bool(srgb_prior)
        self.align = 2 * 2**num_scale  # H/2 (packed) divisible by LocalNet's 2**num_scale
        feats = feature_channels(self.bins)
        self.paramnet = ParamNet(param_dim, dropout, canonical_embedding)
        self.globalnet = GlobalNet(feats, global_width, param_dim, stages,
                                   None if self.srgb_prior else self.first_gamma)
        s2 = self.local_stride**2
        self.localnet = LocalNet(feats * s2, width, param_dim, num_scale, num_block, reduction, attention_window,
                                 out_channels=3 * s2)
        # Upper bound of how far (full-resolution pixels) an output pixel sees: per CBAM block two 3x3
        # convs, the attention window and the 7x7 spatial attention; 2x2 down/up convs; head, Sobel, tail.
        block = 2 + attention_window // 2 + 3
        self.receptive_radius = 3 + self.local_stride * (num_block * block * 2**num_scale + sum(
            (2 * num_block * block + 2) * 2**s for s in range(num_scale)))

    def local_residual(self, x: torch.Tensor, exposure_source: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """LocalNet's 3-channel residual at full resolution (run on 2x2 blocks when local_stride=2)."""
        feats = handcrafted_features(x, exposure_source, self.bins)
        if self.local_stride == 1:
            return self.localnet(feats, z)
        return F.pixel_shuffle(self.localnet(F.pixel_unshuffle(feats, 2), z), 2)

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.dequant_noise > 0:
            return x + torch.randn_like(x) * self.dequant_noise
        return x

    def global_coefficients(self, thumb, z):
        return self.globalnet.coefficients(handcrafted_features(thumb, thumb, self.bins), z)


def pack_rggb(cam: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] camera RGB -> [N,4,H/2,W/2] packed RGGB by strided slicing (dynamic shapes in ONNX)."""
    return torch.cat([cam[:, 0:1, 0::2, 0::2], cam[:, 1:2, 0::2, 1::2],
                      cam[:, 1:2, 1::2, 0::2], cam[:, 2:3, 1::2, 1::2]], dim=1)


@register_model("paramisp")
class ParamISP(_ParamISPCore, ReverseISP):
    """Inverse ParamISP (sRGB -> packed RAW), the contract's direction."""

    default_config: ClassVar[dict] = dict(_ParamISPCore.default_config)
    exif_facts = EXIF_FACTS
    direction = "inverse"
    first_gamma = INVERSE_SRGB_GAMMA

    def forward(self, srgb, thumb, exif, wb, cam2rgb, rgb2cam):
        z = self.paramnet(exif, wb, cam2rgb, rgb2cam)
        x = self._noisy(srgb)
        if self.srgb_prior:
            x = T.srgb_to_linear(x)
        x = self.globalnet.transform(x, self.global_coefficients(thumb, z))  # inverse tone and colour
        x = x + self.local_residual(x, srgb, z)  # inverse local ops
        cam = T.apply_ccm(x, rgb2cam) / T.libraw_gains(wb).reshape(-1, 3, 1, 1)  # CanoNet^-1
        return {"raw": pack_rggb(cam).clamp(0.0, 1.0)}


@register_model("paramisp_forward")
class ParamISPForward(_ParamISPCore):
    """Forward ParamISP (packed RAW -> sRGB). Not a contract model: it is the learned camera ISP used
    to score reconstructions in sRGB and to fine-tune inverse models through a rendering.

    ``forward(raw, thumb, exif, wb, cam2rgb, rgb2cam=None) -> {"srgb": [N,3,H,W] in [0,1]}``
    ``raw`` is packed RGGB [N,4,H/2,W/2]; ``thumb`` is :meth:`canonical_thumb` of the whole frame."""

    default_config: ClassVar[dict] = {**_ParamISPCore.default_config, "dequant_noise": 0.0}
    exif_facts = EXIF_FACTS
    direction = "forward"
    first_gamma = FORWARD_SRGB_GAMMA
    output_names = ("srgb",)

    @staticmethod
    def canonical(raw: torch.Tensor, wb: torch.Tensor, cam2rgb: torch.Tensor) -> torch.Tensor:
        """CanoNet: Malvar demosaic, white balance (LibRaw gains), camera -> linear sRGB."""
        rgb = T.demosaic_malvar(T.unpack(raw, "RGGB"), "RGGB")
        rgb = T.apply_wb(rgb, T.libraw_gains(wb)).clamp(0.0, 1.0)
        return T.apply_ccm(rgb, cam2rgb)

    @classmethod
    def canonical_thumb(cls, raw: torch.Tensor, wb: torch.Tensor, cam2rgb: torch.Tensor) -> torch.Tensor:
        """The ``thumb`` input for a whole frame: ``make_thumb`` of its canonical image (no gradient)."""
        from rawedge.contract import make_thumb

        with torch.no_grad():
            canon = cls.canonical(raw, wb, cam2rgb).clamp(0.0, 1.0).permute(0, 2, 3, 1).cpu().numpy()
        return torch.stack([torch.from_numpy(make_thumb(img)) for img in canon]).to(raw.device)

    def forward(self, raw, thumb, exif, wb, cam2rgb, rgb2cam=None):
        if rgb2cam is None:  # only ParamNet's embedding needs it; this model is not exported
            rgb2cam = torch.linalg.inv(cam2rgb)
        z = self.paramnet(exif, wb, cam2rgb, rgb2cam)
        lin = self.canonical(self._noisy(raw), wb, cam2rgb)
        x = lin + self.local_residual(lin, lin, z)
        x = self.globalnet.transform(x, self.global_coefficients(thumb, z))
        if self.srgb_prior:
            x = T.linear_to_srgb(x)
        return {"srgb": x.clamp(0.0, 1.0)}
