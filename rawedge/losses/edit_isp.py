"""The randomised differentiable ISP behind the edit-aware loss (Edit-aware RAW Reconstruction, 2025).

g = tone o colour o white balance o exposure, applied to packed RGGB RAW after a bilinear demosaic:

* exposure: x * 2^ev
* white balance: illuminant gains (LibRaw convention, smallest = 1), then the batch's ``cam2rgb``
* colour: one of K "looks", each a small residual MLP (3->16->3) fitted to a procedurally generated
  3-D LUT (saturation, split-toning, channel mixing, hue rotation...), so the look is smooth and
  differentiable; index 0 is the neutral look (no MLP)
* tone: a base curve (sRGB, or sRGB followed by smoothstep for a filmic look) composed with a
  monotonic polynomial in the Bernstein basis (non-decreasing coefficients = monotonic curve)

The same module renders the five fixed edits the evaluation scores (:func:`fixed_edits`,
:func:`render_edit`) and the random edits the loss samples per batch (:class:`EditBatch`).
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from rawedge.errors import RawedgeError
from rawedge.isp import torch_ops as T

TONE_BASES = ("srgb", "filmic")
MAX_TONE_DEGREE = 5


# --- colour looks --------------------------------------------------------------------------------
def _rotation_about_grey(degrees: float) -> torch.Tensor:
    """3x3 rotation about the (1,1,1) axis: a hue rotation that keeps greys grey (Rodrigues)."""
    k = torch.full((3,), 1.0 / math.sqrt(3.0), dtype=torch.float64)
    kx = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]], dtype=torch.float64)
    t = math.radians(degrees)
    return (torch.eye(3, dtype=torch.float64) + math.sin(t) * kx + (1 - math.cos(t)) * kx @ kx).float()


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor([0.2126, 0.7152, 0.0722])).sum(-1, keepdim=True)


def _look_vivid(x):
    y = _luma(x)
    return y + 1.4 * (x - y)


def _look_muted(x):
    y = _luma(x)
    return y + 0.55 * (x - y)


def _look_teal_orange(x):  # split toning: teal shadows, orange highlights
    y = _luma(x)
    return x + (1 - y) ** 2 * torch.tensor([-0.05, 0.01, 0.06]) + y**2 * torch.tensor([0.07, 0.01, -0.06])


def _look_warm_fade(x):  # warm channel mix, lifted blacks
    mix = torch.tensor([[1.06, 0.05, -0.03], [0.02, 1.0, -0.01], [-0.03, 0.0, 0.9]])
    return 0.04 + 0.93 * (x @ mix.T)


def _look_cool_matte(x):
    return 0.05 + 0.88 * (x + torch.tensor([-0.03, 0.0, 0.05]) * (1 - x))


def _look_hue_rotate(x):
    return x @ _rotation_about_grey(18.0).T


def _look_cross_process(x):  # per-channel curves, as in cross-processed film
    r = x[..., 0:1].clamp(0, 1) ** 0.85
    g = x[..., 1:2] * (1.1 - 0.1 * x[..., 1:2])
    b = 0.08 + 0.8 * x[..., 2:3]
    return torch.cat([r, g, b], dim=-1)


def _look_bleach(x):  # bleach bypass: half desaturated, extra contrast
    y = _luma(x)
    z = 0.5 * x + 0.5 * y
    return z + 0.6 * z * (1 - z) * (2 * z - 1)


LOOKS = {"vivid": _look_vivid, "muted": _look_muted, "teal_orange": _look_teal_orange,
         "warm_fade": _look_warm_fade, "cool_matte": _look_cool_matte, "hue_rotate": _look_hue_rotate,
         "cross_process": _look_cross_process, "bleach": _look_bleach}
STYLE_NAMES = ("neutral", *LOOKS)  # index 0 is the identity


def lut_grid(size: int = 17) -> torch.Tensor:
    """The sample points of a size^3 3-D LUT on [0,1]^3, as [size^3, 3]."""
    axis = torch.linspace(0.0, 1.0, size)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


def _mlp(x: torch.Tensor, w1, b1, w2, b2) -> torch.Tensor:
    """Residual 3->h->3 MLP on [..., 3] points (one look) or batched over looks ([K, M, 3])."""
    return x + torch.tanh(x @ w1.transpose(-1, -2) + b1.unsqueeze(-2)) @ w2.transpose(-1, -2) + b2.unsqueeze(-2)


@functools.lru_cache(maxsize=4)
def _fit_looks(seed: int, steps: int, hidden: int) -> tuple[dict[str, torch.Tensor], tuple[float, ...]]:
    """Fit one MLP per look to its LUT (all looks at once: independent parameters, one Adam).
    Deterministic for a seed; cached per process so every loss instance shares the fit."""
    gen = torch.Generator().manual_seed(seed)
    grid = lut_grid(11)  # the looks are smooth: an 11^3 LUT pins them down and fits in ~0.5 s
    targets = torch.stack([look(grid).clamp(0.0, 1.0) for look in LOOKS.values()])  # [K, M, 3]
    k = targets.shape[0]
    params = {"w1": torch.randn(k, hidden, 3, generator=gen) * 0.5, "b1": torch.zeros(k, hidden),
              "w2": torch.randn(k, 3, hidden, generator=gen) * 0.01, "b2": torch.zeros(k, 3)}
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(params.values(), lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    x = grid.expand(k, -1, -1)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            loss = (_mlp(x, **params) - targets).abs().mean(dim=(1, 2)).sum()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        err = (_mlp(x, **params) - targets).abs().mean(dim=(1, 2))
    return {n: p.detach() for n, p in params.items()}, tuple(float(e) for e in err)


class ColorLooks(nn.Module):
    """The K fitted looks as buffers (never trained with the model). ``forward(rgb, style)`` applies
    look ``style[i]`` (index into :data:`STYLE_NAMES`, 0 = neutral) to image i of [N,3,H,W]."""

    def __init__(self, seed: int = 0, steps: int = 300, hidden: int = 16):
        super().__init__()
        params, errors = _fit_looks(int(seed), int(steps), int(hidden))
        for name, value in params.items():
            self.register_buffer(name, value.clone(), persistent=False)
        self.fit_errors = dict(zip(LOOKS, errors))  # mean |MLP - LUT| per look, on the LUT grid

    def apply_look(self, rgb: torch.Tensor, index: int) -> torch.Tensor:
        """One look (1..K) on [N,3,H,W]."""
        k = index - 1
        pts = rgb.permute(0, 2, 3, 1)
        weights = [w[k].to(rgb.dtype) for w in (self.w1, self.b1, self.w2, self.b2)]
        out = _mlp(pts.reshape(-1, 3), *weights)
        return out.reshape(pts.shape).permute(0, 3, 1, 2)

    def forward(self, rgb: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        out = rgb
        for index in sorted({int(s) for s in style.tolist()} - {0}):
            pick = (style == index).reshape(-1, 1, 1, 1).to(rgb.device)
            out = torch.where(pick, self.apply_look(rgb, index), out)
        return out


@functools.lru_cache(maxsize=1)
def default_looks() -> ColorLooks:
    return ColorLooks()


# --- tone curves ---------------------------------------------------------------------------------
def bernstein(x: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Polynomial sum_k c_k C(d,k) x^k (1-x)^(d-k) on [N,C,H,W] with per-image coeffs [N, d+1].
    Powers by repeated products (no pow: finite gradients at 0 and 1)."""
    d = coeffs.shape[1] - 1
    x = x.clamp(0.0, 1.0)
    up, down = [torch.ones_like(x)], [torch.ones_like(x)]
    for _ in range(d):
        up.append(up[-1] * x)
        down.append(down[-1] * (1.0 - x))
    c = coeffs.to(x).reshape(coeffs.shape[0], d + 1, 1, 1, 1)
    return sum(c[:, k] * math.comb(d, k) * up[k] * down[d - k] for k in range(d + 1))


def elevate(coeffs: torch.Tensor, degree: int) -> torch.Tensor:
    """Bernstein degree elevation: the same polynomial written with ``degree`` + 1 coefficients.
    Keeps the coefficients non-decreasing, so monotonic curves stay monotonic."""
    while coeffs.shape[1] - 1 < degree:
        n = coeffs.shape[1]  # new degree is n
        i = torch.arange(1, n, dtype=coeffs.dtype) / n
        mid = i * coeffs[:, :-1] + (1 - i) * coeffs[:, 1:]
        coeffs = torch.cat([coeffs[:, :1], mid, coeffs[:, -1:]], dim=1)
    return coeffs


def random_monotone_curves(n: int, generator: torch.Generator, max_degree: int = MAX_TONE_DEGREE,
                           strength: float = 0.5) -> torch.Tensor:
    """[n, max_degree+1] Bernstein coefficients of random monotonic curves with f(0)=0, f(1)=1:
    degree d ~ U{1..max_degree}, coefficients = normalised cumulative sums of log-normal steps."""
    degrees = torch.randint(1, max_degree + 1, (n,), generator=generator)
    out = torch.empty(n, max_degree + 1)
    for d in range(1, max_degree + 1):
        rows = torch.nonzero(degrees == d).flatten()
        steps = torch.exp(torch.randn(len(rows), d, generator=generator) * strength)
        c = torch.cat([torch.zeros(len(rows), 1), torch.cumsum(steps, 1) / steps.sum(1, keepdim=True)], 1)
        out[rows] = elevate(c, max_degree)
    return out


# --- edits ---------------------------------------------------------------------------------------
@dataclass
class EditBatch:
    """Per-image rendering parameters for a batch (tensors with a leading N)."""

    exposure_ev: torch.Tensor  # [N]
    wb_scale: torch.Tensor  # [N,3] multiplies the gains below
    style: torch.Tensor  # [N] long, index into STYLE_NAMES
    tone_base: torch.Tensor  # [N] long, index into TONE_BASES
    tone_curve: torch.Tensor  # [N, d+1] non-decreasing Bernstein coefficients
    wb_gains: torch.Tensor | None = None  # [N,3] illuminant gains; None = the batch's as-shot ``wb``

    def __len__(self) -> int:
        return self.exposure_ev.shape[0]


@dataclass(frozen=True)
class Edit:
    """One named, deterministic edit (what a photographer would do in a raw editor)."""

    name: str
    exposure_ev: float = 0.0
    wb_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)  # on top of the as-shot gains
    style: str = "neutral"
    tone_base: str = "srgb"
    tone_curve: tuple[float, ...] = (0.0, 1.0)  # Bernstein coefficients (identity)

    def __post_init__(self):
        if self.style not in STYLE_NAMES:
            raise RawedgeError(None, f"edit {self.name!r}: unknown style {self.style!r}; known: {', '.join(STYLE_NAMES)}")
        if self.tone_base not in TONE_BASES:
            raise RawedgeError(None, f"edit {self.name!r}: tone_base must be one of {', '.join(TONE_BASES)}")
        c = self.tone_curve
        if len(c) < 2 or len(c) > MAX_TONE_DEGREE + 1 or any(b < a for a, b in itertools.pairwise(c)):
            raise RawedgeError(None, f"edit {self.name!r}: tone_curve needs 2..{MAX_TONE_DEGREE + 1} "
                                     "non-decreasing coefficients")

    def batch(self, n: int) -> EditBatch:
        curve = elevate(torch.tensor([self.tone_curve], dtype=torch.float32), MAX_TONE_DEGREE)
        return EditBatch(exposure_ev=torch.full((n,), float(self.exposure_ev)),
                         wb_scale=torch.tensor([self.wb_scale], dtype=torch.float32).expand(n, 3),
                         style=torch.full((n,), STYLE_NAMES.index(self.style), dtype=torch.long),
                         tone_base=torch.full((n,), TONE_BASES.index(self.tone_base), dtype=torch.long),
                         tone_curve=curve.expand(n, -1))

    def to_dict(self) -> dict:
        return asdict(self)


def fixed_edits() -> list[Edit]:
    """The five edits the evaluation renders ground truth and reconstruction with, mildest first."""
    return [
        Edit("default"),
        Edit("bright", exposure_ev=1.0),
        Edit("cool_flat", wb_scale=(0.85, 1.0, 1.2), style="muted", tone_curve=(0.06, 0.4, 0.6, 0.94)),
        Edit("warm_contrast", wb_scale=(1.2, 1.0, 0.85), tone_curve=(0.0, 0.05, 0.95, 1.0)),
        Edit("strong_tone", exposure_ev=0.5, style="teal_orange", tone_base="filmic",
             tone_curve=(0.0, 0.55, 0.7, 0.8, 0.92, 1.0)),
    ]


def render_edit(packed_raw: torch.Tensor, wb: torch.Tensor, cam2rgb: torch.Tensor, edit: Edit | EditBatch,
                looks: ColorLooks | None = None) -> torch.Tensor:
    """Render packed RGGB RAW [N,4,h,w] in [0,1] to sRGB [N,3,2h,2w] with one edit (differentiable).

    ``wb`` [N,3] as-shot gains (G = 1) and ``cam2rgb`` [N,3,3] as in the model contract."""
    n = packed_raw.shape[0]
    if isinstance(edit, Edit):
        edit = edit.batch(n)
    looks = default_looks() if looks is None else looks
    dev = packed_raw.device
    cam = T.demosaic_bilinear(T.unpack(packed_raw, "RGGB"), "RGGB")
    cam = cam * torch.exp2(edit.exposure_ev.to(cam)).reshape(-1, 1, 1, 1)
    gains = (wb if edit.wb_gains is None else edit.wb_gains).to(cam) * edit.wb_scale.to(cam)
    rgb = T.apply_ccm(T.apply_wb(cam, T.libraw_gains(gains)), cam2rgb.to(cam)).clamp(0.0, 1.0)
    rgb = looks.to(dev)(rgb, edit.style).clamp(0.0, 1.0)
    srgb = T.linear_to_srgb(rgb)
    filmic = edit.tone_base.to(dev).reshape(-1, 1, 1, 1) == TONE_BASES.index("filmic")
    base = torch.where(filmic, T.smoothstep_tone(srgb), srgb)
    return bernstein(base, edit.tone_curve.to(cam))
