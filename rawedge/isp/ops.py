"""ISP operations in numpy: the runtime's implementation (torch twins in ``rawedge.isp.torch_ops``).

Layouts: images are HxWx3 float32 in [0, 1]; mosaics are HxW; packed Bayer is 4x(H/2)x(W/2) in
R, G1, G2, B order, where G1 shares a row with R and G2 shares a row with B, whatever the CFA phase.
"""
from __future__ import annotations

import functools

import numpy as np

from rawedge.types import BAYER_PATTERNS


def cfa_offsets(cfa: str) -> dict[str, tuple[int, int]]:
    """(row, col) inside the 2x2 tile of R, G1 (R's row), G2 (B's row) and B for a Bayer pattern."""
    if cfa not in BAYER_PATTERNS:
        raise ValueError(f"unsupported CFA pattern {cfa!r}")
    pos = {(i, j): cfa[2 * i + j] for i in range(2) for j in range(2)}
    r = next(p for p, c in pos.items() if c == "R")
    b = next(p for p, c in pos.items() if c == "B")
    g1 = (r[0], 1 - r[1])
    g2 = (b[0], 1 - b[1])
    return {"R": r, "G1": g1, "G2": g2, "B": b}


def packing_order(cfa: str) -> list[tuple[int, int]]:
    o = cfa_offsets(cfa)
    return [o["R"], o["G1"], o["G2"], o["B"]]


def pack(mosaic: np.ndarray, cfa: str) -> np.ndarray:
    """HxW mosaic (H, W even) -> 4x(H/2)x(W/2) packed RGGB, lossless for any Bayer phase."""
    h, w = mosaic.shape
    if h % 2 or w % 2:
        raise ValueError(f"packing needs even sizes, got {h}x{w}")
    return np.stack([mosaic[dy::2, dx::2] for dy, dx in packing_order(cfa)], axis=0)


def unpack(packed: np.ndarray, cfa: str) -> np.ndarray:
    """Inverse of :func:`pack`."""
    c, h, w = packed.shape
    if c != 4:
        raise ValueError(f"packed Bayer needs 4 channels, got {c}")
    out = np.empty((2 * h, 2 * w), dtype=packed.dtype)
    for ch, (dy, dx) in enumerate(packing_order(cfa)):
        out[dy::2, dx::2] = packed[ch]
    return out


def cfa_channel_map(cfa: str, h: int, w: int) -> np.ndarray:
    """HxW array of colour index (0 R, 1 G, 2 B) at each pixel."""
    idx = np.array([{"R": 0, "G": 1, "B": 2}[c] for c in cfa]).reshape(2, 2)
    return np.tile(idx, ((h + 1) // 2, (w + 1) // 2))[:h, :w]


def mosaic(rgb: np.ndarray, cfa: str) -> np.ndarray:
    """HxWx3 -> HxW, sampling each pixel's CFA colour (any size, odd included)."""
    h, w, _ = rgb.shape
    ch = cfa_channel_map(cfa, h, w)
    return np.take_along_axis(rgb, ch[..., None], axis=2)[..., 0]


def _conv2d_same(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation with reflect padding (small kernels; numpy only, for the runtime)."""
    kh, kw = kernel.shape
    py, px = kh // 2, kw // 2
    padded = np.pad(img, ((py, py), (px, px)), mode="reflect")
    out = np.zeros_like(img, dtype=np.float32)
    h, w = img.shape
    for i in range(kh):
        for j in range(kw):
            if kernel[i, j]:
                out += np.float32(kernel[i, j]) * padded[i:i + h, j:j + w]
    return out


def _tent_same(img: np.ndarray) -> np.ndarray:
    """:func:`_conv2d_same` with the bilinear kernel [1,2,1]x[1,2,1]/4, done as its two separable 3-tap
    passes (a third of the work: the rendering back of a 12 MP result spends most of its time here)."""
    rows = np.pad(img, ((1, 1), (0, 0)), mode="reflect")
    v = rows[:-2] + 2 * rows[1:-1] + rows[2:]
    cols = np.pad(v, ((0, 0), (1, 1)), mode="reflect")
    return ((cols[:, :-2] + 2 * cols[:, 1:-1] + cols[:, 2:]) * np.float32(0.25)).astype(np.float32)


def demosaic_bilinear(mosaic_img: np.ndarray, cfa: str) -> np.ndarray:
    """Bilinear demosaic, HxW -> HxWx3: at each pixel a missing colour is the tent-weighted mean of its
    3x3 neighbours of that colour (a normalised convolution with the kernel [1,2,1]x[1,2,1], reflect
    padding). Even sizes take :func:`_bilinear_packed`, the same sums on the four CFA planes (a quarter
    of the work); odd sizes the full-resolution normalised convolution."""
    h, w = mosaic_img.shape
    m = np.asarray(mosaic_img, dtype=np.float32)
    if h % 2 == 0 and w % 2 == 0 and h >= 2 and w >= 2:
        return _bilinear_packed(m, cfa)
    masks, dens = _bilinear_weights(cfa, h, w)
    out = np.empty((h, w, 3), dtype=np.float32)
    for c in range(3):
        num = _tent_same(m * masks[c])
        out[..., c] = np.where(masks[c] > 0, m, num / dens[c])
    return out


_TENT = {-1: 1, 0: 2, 1: 1}


def _bilinear_packed(m: np.ndarray, cfa: str) -> np.ndarray:
    """The bilinear demosaic of an even-sized mosaic from its four 2x2 phase planes. Reflect padding of
    the full image is edge padding of each plane for the neighbours one pixel away (the pixel beyond
    row 0 is row 1, the same phase plane's first row), so every output pixel is a fixed average of at
    most four plane samples."""
    h, w = m.shape
    colour = np.array([{"R": 0, "G": 1, "B": 2}[c] for c in cfa]).reshape(2, 2)
    planes = {(a, b): np.pad(m[a::2, b::2], 1, mode="edge") for a in (0, 1) for b in (0, 1)}
    ph, pw = h // 2, w // 2
    out = np.empty((h, w, 3), dtype=np.float32)
    for a in (0, 1):
        for b in (0, 1):
            for c in range(3):
                if colour[a, b] == c:
                    out[a::2, b::2, c] = m[a::2, b::2]
                    continue
                total, weight = None, 0
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        pa, pb = (a + dy) % 2, (b + dx) % 2
                        if colour[pa, pb] != c:
                            continue
                        oy, ox = 1 + (a + dy) // 2, 1 + (b + dx) // 2  # offsets into the padded plane
                        k = _TENT[dy] * _TENT[dx]
                        term = planes[pa, pb][oy:oy + ph, ox:ox + pw]
                        term = term * np.float32(k) if k != 1 else term
                        total = term.copy() if total is None else total.__iadd__(term)
                        weight += k
                out[a::2, b::2, c] = total * np.float32(1.0 / weight)
    return out


@functools.lru_cache(maxsize=4)
def _bilinear_weights(cfa: str, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel site masks and their tent-filtered sums (the normalisers) for one mosaic shape: the
    same for every strip of a round trip, so computed once (a third of the demosaic's work)."""
    ch = cfa_channel_map(cfa, h, w)
    masks = np.stack([(ch == c).astype(np.float32) for c in range(3)])
    dens = np.stack([np.maximum(_tent_same(masks[c]), np.float32(1e-8)) for c in range(3)])
    masks.setflags(write=False)
    dens.setflags(write=False)
    return masks, dens


def demosaic_malvar(mosaic_img: np.ndarray, cfa: str) -> np.ndarray:
    """Malvar-He-Cutler (2004) demosaic through colour-demosaicing (training/evaluation side)."""
    import colour_demosaicing

    return np.asarray(colour_demosaicing.demosaicing_CFA_Bayer_Malvar2004(mosaic_img, pattern=cfa), dtype=np.float32)


def apply_wb(rgb: np.ndarray, gains: np.ndarray) -> np.ndarray:
    return rgb * np.asarray(gains, dtype=np.float32).reshape(1, 1, 3)


def apply_ccm(rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Per-pixel 3x3 colour matrix: out = M @ rgb."""
    return np.asarray(rgb, dtype=np.float32) @ np.asarray(matrix, dtype=np.float32).T  # BLAS: 4x einsum


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function (IEC 61966-2-1), float in [0, 1]."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """sRGB transfer function; input clipped to [0, 1].

    The piecewise curve as one minimum: the power segment evaluated on x clipped to [0.0031308, 1] is
    constant below the knee and, being concave with a slope under 12.92 above it, lies below the linear toe
    12.92 x there, so min(power(clip(x)), 12.92 max(x, 0)) is the sRGB curve (to the last bit but at the
    knee itself) without a masked gather, which cost as much as the rest of the curve."""
    x = np.asarray(x, dtype=np.float32)
    out = np.clip(x, np.float32(0.0031308), np.float32(1.0))
    np.power(out, np.float32(1 / 2.4), out=out)
    out *= np.float32(1.055)
    out -= np.float32(0.055)
    toe = np.maximum(x, np.float32(0.0))
    toe *= np.float32(12.92)
    return np.minimum(out, toe, out=out)


def smoothstep_tone(x: np.ndarray) -> np.ndarray:
    """Global S-curve of Brooks et al. (2019): 3x^2 - 2x^3."""
    x = np.clip(x, 0.0, 1.0)
    return (3.0 * x**2 - 2.0 * x**3).astype(np.float32)


def inverse_smoothstep_tone(y: np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`smoothstep_tone` on [0, 1]."""
    y = np.clip(y, 0.0, 1.0)
    return (0.5 - np.sin(np.arcsin(1.0 - 2.0 * y) / 3.0)).astype(np.float32)


def gamma_tone(x: np.ndarray, gamma: float) -> np.ndarray:
    """Power-law tone curve x ** (1 / gamma) on [0, 1]."""
    return np.power(np.clip(x, 0.0, 1.0), 1.0 / gamma).astype(np.float32)


def libraw_gains(gains: np.ndarray) -> np.ndarray:
    """White-balance gains scaled so the smallest is 1, as LibRaw applies them (no highlight recovery)."""
    g = np.asarray(gains, dtype=np.float64)
    return g / g.min()


def luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 luma of an HxWx3 image (for overexposure masks)."""
    return (rgb[..., 0] * 0.2126 + rgb[..., 1] * 0.7152 + rgb[..., 2] * 0.0722).astype(np.float32)
