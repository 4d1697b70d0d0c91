"""Image metrics (numpy): the one definition of PSNR, SSIM and ΔE2000 for training, ``rawedge eval``,
export parity, the INT8 gate and ``rawedge bench``. A core module: it imports neither torch nor any
rawedge stage, and scikit-image and colour-science only where their metric is computed.

RAW: packed RGGB [4, H/2, W/2] normalised to [0, 1] by the black and white levels. PSNR = 10 log10(1 / MSE)
over all four channels of an image; SSIM = mean over the four channels of scikit-image's Gaussian-weighted
SSIM (sigma 1.5, population covariance, data range 1), the AIM 2022 reverse-ISP convention.
sRGB: HxWx3 in [0, 1]; PSNR over all channels, SSIM over channels (same settings), and CIE ΔE2000 through
colour-science (sRGB -> XYZ -> Lab under D65), averaged over pixels.
"""
from __future__ import annotations

import math

import numpy as np

DELTA_E_MAX_PIXELS = 250_000  # ΔE2000 is computed on a regular sub-grid of at most this many pixels
PSNR_CAP_DB = 100.0  # the PSNR of identical signals (MSE <= 1e-10): see psnr_from_mse
_SSIM = {"data_range": 1.0, "gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def psnr_from_mse(mse: float) -> float:
    """10 log10(1 / MSE) for signals in [0, 1]. Identical and nearly identical signals (MSE <= 1e-10, an
    RMS error of 1e-5, float rounding) read PSNR_CAP_DB: a finite figure keeps means over images and
    strict JSON meaningful, where inf would swallow both."""
    return PSNR_CAP_DB if mse <= 1e-10 else 10.0 * math.log10(1.0 / mse)


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR of two [0, 1] signals over all their elements (psnr_from_mse's convention)."""
    return psnr_from_mse(float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2)))


def raw_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean over the 4 packed channels; ``pred`` and ``target`` are [4, h, w]."""
    from skimage.metrics import structural_similarity

    return float(np.mean([structural_similarity(p.astype(np.float32), t.astype(np.float32), **_SSIM)
                          for p, t in zip(pred, target)]))


def srgb_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(pred.astype(np.float32), target.astype(np.float32), channel_axis=2, **_SSIM))


def delta_e2000(pred: np.ndarray, target: np.ndarray, max_pixels: int = DELTA_E_MAX_PIXELS) -> tuple[float, int]:
    """(mean CIE ΔE2000, sub-grid stride used) of two HxWx3 sRGB images in [0, 1]."""
    import colour

    h, w = pred.shape[:2]
    stride = max(1, math.ceil(math.sqrt(h * w / max_pixels)))
    p = np.clip(pred[::stride, ::stride], 0.0, 1.0).astype(np.float64)
    t = np.clip(target[::stride, ::stride], 0.0, 1.0).astype(np.float64)
    lab_p = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(p))
    lab_t = colour.XYZ_to_Lab(colour.sRGB_to_XYZ(t))
    return float(np.mean(colour.delta_E(lab_p, lab_t, method="CIE 2000"))), stride


CLIP_LEVEL = 0.98  # normalised RAW level above which a target pixel counts as saturated


def exposure_error_stops(pred: np.ndarray, target: np.ndarray) -> float:
    """log2(mean prediction / mean truth) over pixels unsaturated in the truth: how many stops the
    reconstruction's exposure is off (positive: too bright). 0.0 when the truth is black or all clipped."""
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    valid = t < CLIP_LEVEL
    tm, pm = float(t[valid].mean()) if valid.any() else 0.0, float(p[valid].mean()) if valid.any() else 0.0
    return math.log2(max(pm, 1e-6) / tm) if tm > 1e-6 else 0.0


def scale_invariant_psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR after the least-squares scalar gain on ``pred``: the error left once exposure is forgiven."""
    p, t = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    denom = float(np.sum(p * p))
    gain = float(np.sum(p * t)) / denom if denom > 0 else 1.0
    return psnr(p * gain, t)


def raw_metrics(pred: np.ndarray, target: np.ndarray) -> dict:
    return {"psnr": psnr(pred, target), "ssim": raw_ssim(pred, target), "si_psnr": scale_invariant_psnr(pred, target),
            "exposure_stops": exposure_error_stops(pred, target)}


def sigma_calibration(sigmas: np.ndarray, errors: np.ndarray, bins: int = 10) -> list[dict]:
    """Observed RMS error against mean predicted sigma in each decile (``bins`` quantiles) of sigma:
    a calibrated confidence has the two equal in every bin."""
    s, e = np.asarray(sigmas, np.float64).ravel(), np.asarray(errors, np.float64).ravel()
    if s.shape != e.shape or s.size < bins:
        raise ValueError(f"sigma_calibration needs as many errors as sigmas (>= {bins}); got {s.size} and {e.size}")
    edges = np.quantile(s, np.linspace(0.0, 1.0, bins + 1))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    return [{"bin": b, "n": int((which == b).sum()), "sigma": float(s[which == b].mean()),
             "rms_error": float(np.sqrt(np.mean(e[which == b] ** 2)))} for b in range(bins) if (which == b).any()]


def srgb_metrics(pred: np.ndarray, target: np.ndarray) -> dict:
    de, stride = delta_e2000(pred, target)
    return {"psnr": psnr(pred, target), "ssim": srgb_ssim(pred, target), "delta_e2000": de,
            "delta_e_stride": stride}
