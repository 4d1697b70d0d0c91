"""Real sensor data re-expressed as other cameras: many colour spaces, levels and noise from a few RAWs.

Why: the shared RAW files come from a handful of cameras, so a model can learn those cameras' colour
matrices instead of the task. A camera's colour space is (to first order) a 3x3 linear map of XYZ, so a
real scene recorded by camera A can be re-expressed as camera B would have recorded it; with B's levels
and noise drawn from plausible ranges, each real RAW yields many cameras' RAWs with real scene content.

Matrix convention (DNG ColorMatrix / LibRaw ``adobe_coeff``): M maps XYZ to camera RGB, calibrated for
D65. Each matrix is scaled by one scalar so that the D65 white (Y = 1) gives a camera neutral whose
largest channel is 1 (what the DNG SDK does to ColorMatrix); rows are NOT normalised separately (LibRaw's
row normalisation bakes white balance into the matrix and would erase the camera's channel balance). The
reprojection is cam_B = M_B @ inv(M_A) @ cam_A, so any XYZ colour (a neutral under any illuminant
included) lands where camera B would record it; the result is then scaled by one scalar so the green
channel's mean level is kept (the scene was exposed for A's green, and B's exposure is a free choice).
"""
from __future__ import annotations

import math

import numpy as np

from rawedge.data.rggb import quantize_levels
from rawedge.data.synthetic import add_sensor_noise
from rawedge.isp import ops
from rawedge.types import SRGB_TO_XYZ

D65_WHITE_XYZ = SRGB_TO_XYZ @ np.ones(3)  # XYZ of the D65 white, Y = 1
SATURATED = 0.999  # normalised level treated as sensor-clipped
BLACK_FRACTION_MAX = 0.06  # black level up to ~6 % of white (Canon ~2048/16383 is 12.5 % of 14 bit: rare)
ZERO_BLACK_PROBABILITY = 0.2  # GoPro, many phones and DNG converters subtract it in camera
DEFAULT_WHITES = (4095.0, 16383.0)  # 12- and 14-bit, when the table leaves the white level to the file
ISO_GAIN_EV = (0.0, 4.0)  # analogue gain above base ISO, uniform in EV (ISO 100 -> 1600)
FULL_WELL_E = (6000.0, 40000.0)  # electrons at base ISO: phone/action-camera to APS-C pixels, log-uniform
READ_NOISE_E = (1.0, 4.0)  # pre-gain read noise, electrons, log-uniform
ADC_NOISE_DN = (0.5, 2.5)  # post-gain read noise in the file's digital numbers (the bit-depth-dependent part)


def normalize_xyz_to_cam(xyz_to_cam) -> np.ndarray:
    """Scale an XYZ->camera matrix so the D65 white's camera neutral has its largest channel at 1."""
    m = np.asarray(xyz_to_cam, dtype=np.float64)
    if m.shape != (3, 3) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m)) < 1e-12:
        raise ValueError("an XYZ->camera matrix must be an invertible 3x3 of finite numbers")
    neutral = m @ D65_WHITE_XYZ
    if neutral.max() <= 0:
        raise ValueError("the XYZ->camera matrix gives no positive response to D65 white")
    return m / neutral.max()


def camera_to_camera(xyz_to_cam_src, xyz_to_cam_dst) -> np.ndarray:
    """3x3 T with cam_B = T @ cam_A (before the green-mean rescale); also maps A's as-shot neutral to
    B's, so B's white balance is ``(T @ neutral_A)`` inverted and normalised to G = 1."""
    return normalize_xyz_to_cam(xyz_to_cam_dst) @ np.linalg.inv(normalize_xyz_to_cam(xyz_to_cam_src))


def reproject_to_camera(packed_rggb: np.ndarray, xyz_to_cam_src, xyz_to_cam_dst,
                        saturated: float = SATURATED) -> np.ndarray:
    """Packed RGGB [4, h, w] normalised (camera A) -> packed RGGB [4, h, w] float32 of camera B.

    Each 2x2 block is one pixel of B (R, G, G, B with G = the mean of A's two greens), so B's mosaic is
    clean: no demosaic error, at half A's resolution. Negatives clip to 0, values above 1 clip to 1 (B's
    sensor would clip too), and every channel saturated in A stays saturated (1) in B: its true value is
    unknown, so it must not come back as a plausible unclipped colour.
    """
    packed = np.asarray(packed_rggb, dtype=np.float32)
    if packed.ndim != 3 or packed.shape[0] != 4:
        raise ValueError(f"packed RGGB must be [4, h, w], got shape {packed.shape}")
    transform = camera_to_camera(xyz_to_cam_src, xyz_to_cam_dst).astype(np.float32)
    green = 0.5 * (packed[1] + packed[2])
    cam_a = np.stack([packed[0], green, packed[3]], axis=-1)
    cam_b = ops.apply_ccm(cam_a, transform)
    mean_in, mean_out = float(green.mean(dtype=np.float64)), float(cam_b[..., 1].mean(dtype=np.float64))
    if mean_in > 0 and mean_out > 0:
        cam_b *= np.float32(mean_in / mean_out)
    cam_b = np.clip(cam_b, 0.0, 1.0)
    cam_b[..., 0][packed[0] >= saturated] = 1.0
    cam_b[..., 1][(packed[1] >= saturated) | (packed[2] >= saturated)] = 1.0
    cam_b[..., 2][packed[3] >= saturated] = 1.0
    return np.stack([cam_b[..., 0], cam_b[..., 1], cam_b[..., 1], cam_b[..., 2]], axis=0)


def usable(entry) -> bool:
    """Whether a camera-database row has a matrix that can re-project (invertible, positive to white)."""
    try:
        normalize_xyz_to_cam(entry.xyz_to_cam)
    except (ValueError, TypeError):
        return False
    return True


def _excluded(entry, makers: set[str], prefixes: list) -> bool:
    maker, prefix = entry.maker.lower(), entry.prefix.lower()
    if maker in makers:
        return True
    for item in prefixes:
        if isinstance(item, str):
            if prefix.startswith(item.lower()):
                return True
        elif maker == str(item[0]).lower() and prefix.startswith(str(item[1]).lower()):
            return True
    return False


def sample_camera_profiles(rng: np.random.Generator, n: int, exclude_makers=(), exclude_prefixes=(),
                           entries=None) -> list:
    """``n`` CameraProfiles of rows drawn uniformly from the camera database (``rawedge.cameradb``, or the
    given ``entries``), without replacement while there are enough, rows without a usable matrix left
    out. Exclusions, case-insensitive, leave out whole families for leave-one-family-out validation:
    ``exclude_makers`` matches the maker exactly; ``exclude_prefixes`` items are a model prefix start
    (any maker) or a (maker, prefix start) pair, e.g. ``[("Canon", "PowerShot")]``."""
    from rawedge import cameradb

    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if isinstance(exclude_makers, str) or isinstance(exclude_prefixes, str):
        raise TypeError("exclude_makers and exclude_prefixes take a list, not one string")
    makers = {m.lower() for m in exclude_makers}
    pool = [e for e in (cameradb.entries() if entries is None else entries)
            if usable(e) and not _excluded(e, makers, list(exclude_prefixes))]
    if not pool and n:
        raise ValueError("every camera of the database is excluded")
    picks = rng.choice(len(pool), size=n, replace=n > len(pool)) if n else []
    return [cameradb.to_profile(pool[int(i)]) for i in picks]


def sample_levels_and_noise(rng: np.random.Generator, white: float) -> dict:
    """Black and white levels and Poisson-Gaussian noise (variance = shot * signal + read, normalised
    units) for a camera whose table white level is ``white`` (0: drawn as 12 or 14 bit).

    Noise from a small sensor model: gain g over base ISO, full well FW electrons and pre-gain read noise
    r_e give shot = g / FW and read = (r_e g / FW)^2 + (adc / (white - black))^2, where ``adc`` is the
    post-gain noise in digital numbers: that term is what the bit depth changes.
    """
    white = float(white) if white and white > 0 else float(DEFAULT_WHITES[int(rng.integers(len(DEFAULT_WHITES)))])
    black_fraction = 0.0 if rng.random() < ZERO_BLACK_PROBABILITY else float(rng.uniform(0.0, BLACK_FRACTION_MAX))
    black = float(round(black_fraction * white))
    gain = 2.0 ** float(rng.uniform(*ISO_GAIN_EV))
    full_well = math.exp(rng.uniform(math.log(FULL_WELL_E[0]), math.log(FULL_WELL_E[1])))
    read_e = math.exp(rng.uniform(math.log(READ_NOISE_E[0]), math.log(READ_NOISE_E[1])))
    adc_dn = float(rng.uniform(*ADC_NOISE_DN))
    shot = gain / full_well
    read = (read_e * gain / full_well) ** 2 + (adc_dn / (white - black)) ** 2
    return {"black": black, "white": white, "shot": shot, "read": read, "iso_gain": round(gain, 4),
            "full_well_e": round(full_well, 1), "read_noise_e": round(read_e, 3), "adc_noise_dn": round(adc_dn, 3)}


def apply_levels_and_noise(packed: np.ndarray, black, white: float, shot: float, read: float,
                           rng: np.random.Generator) -> np.ndarray:
    """Clean normalised packed RGGB [4, h, w] -> noisy uint16 packed RGGB at sensor levels (``black``: one
    number or R, G1, G2, B)."""
    packed = np.asarray(packed, dtype=np.float32)
    if packed.ndim != 3 or packed.shape[0] != 4:
        raise ValueError(f"packed RGGB must be [4, h, w], got shape {packed.shape}")
    black_rggb = [float(b) for b in np.broadcast_to(np.asarray(black, dtype=np.float64), (4,))]
    noisy = add_sensor_noise(packed, shot, read, rng)
    return ops.pack(quantize_levels(ops.unpack(noisy, "RGGB"), black_rggb, float(white)), "RGGB")
