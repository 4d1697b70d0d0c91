"""Render linear camera RGB the way real camera and phone JPEG engines do, with random plausible settings.

Why: a reverse ISP trained on one rendering (LibRaw's plain sRGB curve) learns that rendering, not the
task. Real JPEG engines differ in exposure bias, highlight roll-off, tone curve (sRGB, BT.709, pure power,
S-shaped contrast, filmic, local tone mapping), saturation and sharpening; drawing those per pair makes the
model undo *a* plausible engine rather than one fixed pipeline. Every drawn value goes into ``settings``
(JSON-serialisable) so a data folder says how each input was made.

Order of operations (as in-camera pipelines): white balance (LibRaw-style gains, smallest = 1) ->
exposure gain -> highlight clipping / soft shoulder (in camera space, so sensor-saturated pixels stay
neutral) -> colour matrix -> clip to [0, 1] -> tone curve (global or local) -> saturation and unsharp
mask in a luma-chroma space -> 8-bit quantisation. JPEG compression is left to the caller
(``rawedge.io.photo.write_jpeg`` with ``sample_jpeg_quality``).

``style="plain"`` turns every engine step off and reproduces ``rawedge.isp.pipeline.process`` (after its
demosaic) exactly; the other styles force one tone family with the remaining settings still drawn.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from rawedge.isp import ops

TONE_FAMILIES = ("srgb", "bt709", "gamma22", "scurve", "filmic", "local")
STYLES = ("plain", *TONE_FAMILIES)
EV_RANGE = (-1.0, 1.5)  # exposure bias / brightness gain, uniform in EV (log-uniform gain)
SHOULDER_PROBABILITY = 0.7  # most engines roll highlights off instead of clipping hard
KNEE_RANGE = (0.6, 0.9)  # linear level where the shoulder starts
SCURVE_STRENGTH_RANGE = (0.2, 0.9)  # blend towards a smoothstep contrast curve (encoded values)
HABLE_WHITE_RANGE = (1.0, 4.0)  # Hable's white point for input 1.0: mid grey 0.18 -> 0.51-0.61 encoded
ACES_SCALE_RANGE = (0.4, 1.0)  # input scale of Narkowicz's ACES fit: mid grey 0.18 -> 0.41-0.61 encoded
LOCAL_STRENGTH_RANGE = (0.2, 0.6)  # exponent of the base-layer gain (0 = global, 1 = flat base)
LOCAL_SIGMA_RANGE = (0.02, 0.08)  # base-layer blur, fraction of the short side
LOCAL_MID = 0.18  # base luminance above which local tone mapping leaves the image alone (mid grey)
LOCAL_GAIN_LIMITS = (1.0, 4.0)  # shadow lift: none .. 2 EV
SATURATION_RANGE = (0.8, 1.4)  # chroma scale, log-uniform
SHARPEN_PROBABILITY = 0.8
SHARPEN_AMOUNT_RANGE = (0.1, 1.2)
SHARPEN_SIGMA_RANGE = (0.6, 2.0)  # pixels
JPEG_QUALITY_RANGE = (70, 98)  # inclusive


def sample_jpeg_quality(rng: np.random.Generator) -> int:
    """JPEG quality for the caller's ``write_jpeg``: 70..98, the span of camera and phone defaults."""
    return int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))


# ---- tone curves: linear [0, 1] -> encoded [0, 1], each monotonic non-decreasing ----

def bt709_curve(x: np.ndarray) -> np.ndarray:
    """ITU-R BT.709 OETF (video cameras, LibRaw's 'bt709' gamma)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x < 0.018, 4.5 * x, 1.099 * np.power(np.maximum(x, 0.018), 0.45) - 0.099).astype(np.float32)


def hable_curve(x: np.ndarray, white: float) -> np.ndarray:
    """Hable's filmic curve (Uncharted 2), input 1.0 placed at ``white`` and normalised so 1 -> 1, then
    sRGB-encoded: a toe in the shadows and a long shoulder, as film-look presets have."""
    a, b, c, d, e, f = 0.15, 0.50, 0.10, 0.20, 0.02, 0.30

    def h(v):
        return (v * (a * v + c * b) + d * e) / (v * (a * v + b) + d * f) - e / f

    y = h(np.clip(x, 0.0, 1.0) * np.float32(white)) / np.float32(h(white))
    return ops.linear_to_srgb(y)


def aces_curve(x: np.ndarray, scale: float) -> np.ndarray:
    """Narkowicz's fit of the ACES filmic curve, normalised so 1 -> 1, then sRGB-encoded."""
    def f(v):
        return v * (2.51 * v + 0.03) / (v * (2.43 * v + 0.59) + 0.14)

    y = f(np.clip(x, 0.0, 1.0) * np.float32(scale)) / np.float32(f(scale))
    return ops.linear_to_srgb(y)


def scurve_curve(x: np.ndarray, strength: float) -> np.ndarray:
    """sRGB then an S-shaped contrast boost: a blend of the identity and a smoothstep on encoded values
    (both non-decreasing, so the blend is too), as 'vivid'/'contrast +' picture styles do."""
    base = ops.linear_to_srgb(x)
    return (base + np.float32(strength) * (ops.smoothstep_tone(base) - base)).astype(np.float32)


def _blur_large(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a large sigma, done on a block-averaged copy (fast: a base layer is smooth)."""
    h, w = img.shape
    factor = max(1, int(sigma // 4))
    if factor > 1:
        ph, pw = -h % factor, -w % factor
        padded = np.pad(img, ((0, ph), (0, pw)), mode="edge")
        small = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).mean(axis=(1, 3))
        small = ndimage.gaussian_filter(small, sigma / factor, mode="reflect")
        return ndimage.zoom(small, (padded.shape[0] / small.shape[0], padded.shape[1] / small.shape[1]),
                            order=1, mode="nearest", grid_mode=True)[:h, :w].astype(np.float32)
    return ndimage.gaussian_filter(img, sigma, mode="reflect").astype(np.float32)


def local_tone_map(rgb_linear: np.ndarray, strength: float, sigma: float) -> np.ndarray:
    """Luminance-guided shadow lift from a blurred log-luminance base layer (phone 'HDR' look): where the
    base is darker than mid grey the gain is g = (mid / base) ** strength (up to 4x), applied to luminance
    as Y g / (1 + (g - 1) Y), which is ~g Y in the shadows and keeps white at white, with one factor for
    the three channels (hue kept). Linear in, linear out; the caller applies a global curve after."""
    y = ops.luma(rgb_linear)
    base = _blur_large(np.log(np.maximum(y, 0.0) + 1e-4), sigma)
    gain = np.exp(np.float32(strength) * (np.float32(math.log(LOCAL_MID)) - base))
    gain = np.clip(gain, *LOCAL_GAIN_LIMITS).astype(np.float32)
    factor = gain / (1.0 + (gain - 1.0) * np.clip(y, 0.0, 1.0))
    return np.clip(rgb_linear * factor[..., None], 0.0, 1.0)


def highlight_shoulder(x: np.ndarray, gain: float, knee: float) -> np.ndarray:
    """Map [0, gain] to [0, 1]: identity below ``knee``, then an extended-Reinhard roll-off whose end
    (a sensor-saturated value after an exposure gain > 1) lands exactly on 1. Monotonic for gain > 1."""
    t = (x - np.float32(knee)) / np.float32(1.0 - knee)
    wt = (gain - knee) / (1.0 - knee)
    rolled = np.float32(knee) + np.float32(1.0 - knee) * t * (1.0 + t / np.float32(wt * wt)) / (1.0 + t)
    return np.where(x > knee, rolled, x).astype(np.float32)


def _draw(rng: np.random.Generator) -> dict:
    """Every random parameter, always drawn in the same order: forcing a style changes only the style,
    so two renders from equal seeds differ only where their styles differ."""
    return {
        "ev": float(rng.uniform(*EV_RANGE)),
        "shoulder": bool(rng.random() < SHOULDER_PROBABILITY),
        "knee": float(rng.uniform(*KNEE_RANGE)),
        "family": str(TONE_FAMILIES[int(rng.integers(len(TONE_FAMILIES)))]),
        "scurve_strength": float(rng.uniform(*SCURVE_STRENGTH_RANGE)),
        "filmic_variant": "hable" if rng.random() < 0.5 else "aces",
        "hable_white": float(rng.uniform(*HABLE_WHITE_RANGE)),
        "aces_scale": float(rng.uniform(*ACES_SCALE_RANGE)),
        "local_strength": float(rng.uniform(*LOCAL_STRENGTH_RANGE)),
        "local_sigma_frac": float(rng.uniform(*LOCAL_SIGMA_RANGE)),
        "saturation": float(math.exp(rng.uniform(math.log(SATURATION_RANGE[0]), math.log(SATURATION_RANGE[1])))),
        "sharpen": bool(rng.random() < SHARPEN_PROBABILITY),
        "sharpen_amount": float(rng.uniform(*SHARPEN_AMOUNT_RANGE)),
        "sharpen_sigma": float(rng.uniform(*SHARPEN_SIGMA_RANGE)),
    }


def _tone(linear: np.ndarray, family: str, p: dict, tone: dict) -> np.ndarray:
    if family == "srgb":
        return ops.linear_to_srgb(linear)
    if family == "bt709":
        return bt709_curve(linear)
    if family == "gamma22":
        return ops.gamma_tone(linear, 2.2)
    if family == "scurve":
        tone["strength"] = round(p["scurve_strength"], 4)
        return scurve_curve(linear, p["scurve_strength"])
    if family == "filmic":
        tone["variant"] = p["filmic_variant"]
        if p["filmic_variant"] == "hable":
            tone["white"] = round(p["hable_white"], 4)
            return hable_curve(linear, p["hable_white"])
        tone["scale"] = round(p["aces_scale"], 4)
        return aces_curve(linear, p["aces_scale"])
    if family == "local":
        sigma = p["local_sigma_frac"] * min(linear.shape[:2])
        tone.update(strength=round(p["local_strength"], 4), sigma_px=round(sigma, 2), mid=LOCAL_MID,
                    base_curve="srgb")
        return ops.linear_to_srgb(local_tone_map(linear, p["local_strength"], sigma))
    raise ValueError(f"unknown tone family {family!r}")


def _luma_chroma_edits(srgb: np.ndarray, saturation: float, amount: float, sigma: float) -> np.ndarray:
    """Chroma scale and unsharp mask on luma (BT.601 Y of the encoded image, as JPEG's YCbCr):
    rgb' = Y + s (rgb - Y) + amount (Y - blur(Y))."""
    y = srgb[..., 0] * 0.299 + srgb[..., 1] * 0.587 + srgb[..., 2] * 0.114
    out = y[..., None] + np.float32(saturation) * (srgb - y[..., None])
    if amount > 0:
        detail = y - ndimage.gaussian_filter(y, sigma, mode="reflect")
        out = out + np.float32(amount) * detail[..., None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def render_like_engine(cam_rgb_linear: np.ndarray, wb_gains, cam2rgb, rng: np.random.Generator,
                       style: str | None = None) -> tuple[np.ndarray, dict]:
    """HxWx3 linear camera RGB (demosaiced, sensor-normalised [0, 1], not white balanced) -> (HxWx3 uint8
    sRGB, settings). ``style``: None draws a tone family, a family name forces it, "plain" is
    ``rawedge.isp.pipeline.process`` exactly (no exposure, hard clip, sRGB curve, no saturation or
    sharpening)."""
    cam = np.asarray(cam_rgb_linear)
    if cam.ndim != 3 or cam.shape[2] != 3:
        raise ValueError(f"cam_rgb_linear must be HxWx3, got shape {cam.shape}")
    gains = np.asarray(wb_gains, dtype=np.float64).reshape(-1)
    if gains.shape != (3,) or not np.all(np.isfinite(gains)) or np.any(gains <= 0):
        raise ValueError(f"wb_gains must be 3 positive numbers, got {wb_gains!r}")
    matrix = np.asarray(cam2rgb, dtype=np.float64)
    if matrix.shape != (3, 3):
        raise ValueError(f"cam2rgb must be 3x3, got shape {matrix.shape}")
    if style is not None and style not in STYLES:
        raise ValueError(f"style must be one of {STYLES} or None, got {style!r}")

    p = _draw(rng)
    plain = style == "plain"
    family = "srgb" if plain else (style or p["family"])
    ev = 0.0 if plain else p["ev"]
    gain = 2.0**ev
    applied = ops.libraw_gains(gains)

    x = ops.apply_wb(cam.astype(np.float32), applied)
    if gain != 1.0:
        x = x * np.float32(gain)
    # highlights: a channel saturated on the sensor reaches at least ``gain`` (smallest WB gain is 1), so
    # clipping there keeps saturated pixels neutral; above 1 the range is clipped or rolled off
    shoulder = p["shoulder"] and gain > 1.0 and not plain
    x = np.clip(x, 0.0, gain if shoulder else min(gain, 1.0))
    highlight = {"mode": "clip", "level": round(min(gain, 1.0), 5)}
    if shoulder:
        x = highlight_shoulder(x, gain, p["knee"])
        highlight = {"mode": "shoulder", "knee": round(p["knee"], 4), "white_in": round(gain, 5)}
    linear = np.clip(ops.apply_ccm(x, matrix), 0.0, 1.0)

    tone = {"family": family}
    encoded = _tone(linear, family, p, tone)
    saturation = 1.0 if plain else p["saturation"]
    amount = p["sharpen_amount"] if (p["sharpen"] and not plain) else 0.0
    if saturation != 1.0 or amount > 0:
        encoded = _luma_chroma_edits(encoded, saturation, amount, p["sharpen_sigma"])
    srgb = np.clip(np.round(encoded * 255.0), 0, 255).astype(np.uint8)

    settings = {
        "engine_style": style or "random",
        "wb_gains": [round(float(g), 6) for g in gains],
        "applied_gains": [round(float(g), 6) for g in applied],
        "cam2rgb": matrix.round(6).tolist(),
        "ev": round(ev, 4),
        "highlight": highlight,
        "tone": tone,
        "saturation": round(saturation, 4),
        "sharpen": {"amount": round(amount, 4), "sigma": round(p["sharpen_sigma"], 4)} if amount > 0 else None,
        "bits": 8,
    }
    return srgb, settings
