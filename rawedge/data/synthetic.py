"""Synthetic pairs from ordinary sRGB photos, after Brooks et al. (2019), "Unprocessing images for
learned raw denoising".

A photo is unprocessed with a camera profile (inverse sRGB curve, inverse colour matrix, inverse white
balance from a gain drawn from the camera's WB prior), its exposure is changed by a random EV (sensor
clipping happens here), and heteroscedastic Gaussian shot/read noise is added to the mosaic, which is then
quantised to the camera's levels. That noisy mosaic is the target RAW: what the sensor would record.

The input sRGB (``input_mode``):
- ``rerender`` (default): the noisy mosaic rendered by rawedge's forward ISP (Malvar demosaic, WB,
  colour matrix, a random brightness gain as a camera's exposure compensation or LibRaw's ``bright``
  applies, sRGB curve), 8 bit, JPEG at a random quality; the pair is consistent, noise, clipping and
  JPEG artefacts included, and the gain is what the analytic inverse cannot know.
- ``original``: the photo as it is; the pair then teaches the model to add the sensor's noise back.
EXIF is the photo's own (usually none: NaN), never invented.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rawedge.data.rggb import normalize_levels, quantize_levels, rggb_black_levels
from rawedge.isp import pipeline
from rawedge.types import CameraProfile

# Shot-noise range (variance per unit signal, normalised RAW). Brooks et al. draw log-uniform in
# [1e-4, 1.2e-2] for phone sensors up to high ISO; the shared cameras shot at ISO 50-160, so the upper
# end is lowered. Read noise follows their fitted line: log(read) = 2.18 log(shot) + 1.2 + N(0, 0.26).
SHOT_NOISE_RANGE = (1e-4, 3e-3)
EV_RANGE = (-1.0, 0.3)  # exposure change applied to the unprocessed linear signal
WB_MIN_STD = 0.05  # floor on the WB prior's std (log gains): priors fitted on a few files are too narrow
JPEG_QUALITY_RANGE = (80, 95)
RENDER_GAIN_RANGE = (0.8, 1.4)  # brightness applied when re-rendering (as LibRaw pairs' ``bright``)


@dataclass
class SyntheticPair:
    mosaic: np.ndarray  # HxW uint16 RGGB-phase at the profile's levels (the target RAW)
    black_level: list[float]  # R, G1, G2, B
    white_level: float
    srgb: np.ndarray  # HxWx3 uint8 input photo
    wb: np.ndarray  # gains (G = 1)
    settings: dict


def sample_wb_gains(profile: CameraProfile, rng: np.random.Generator) -> np.ndarray:
    """[R, 1, B] gains drawn from the camera's 2-D Gaussian prior over log(R/G), log(B/G)."""
    cov = np.asarray(profile.wb_prior_cov, dtype=np.float64) + np.eye(2) * WB_MIN_STD**2
    log_rb = rng.multivariate_normal(np.asarray(profile.wb_prior_mean, dtype=np.float64), cov)
    return np.array([math.exp(log_rb[0]), 1.0, math.exp(log_rb[1])])


def sample_noise(rng: np.random.Generator) -> tuple[float, float]:
    """(shot, read) noise parameters: variance = shot * signal + read."""
    log_shot = rng.uniform(math.log(SHOT_NOISE_RANGE[0]), math.log(SHOT_NOISE_RANGE[1]))
    log_read = 2.18 * log_shot + 1.2 + rng.normal(0.0, 0.26)
    return math.exp(log_shot), math.exp(log_read)


def add_sensor_noise(mosaic: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """Heteroscedastic Gaussian approximation of Poisson-Gaussian noise, clipped to [0, 1]."""
    std = np.sqrt(np.maximum(mosaic, 0.0) * shot + read)
    return np.clip(mosaic + rng.normal(size=mosaic.shape) * std, 0.0, 1.0).astype(np.float32)


def make_synthetic_pair(photo_srgb: np.ndarray, profile: CameraProfile, rng: np.random.Generator,
                        input_mode: str = "rerender", render_gain: float | None = None) -> SyntheticPair:
    """One pair from an HxWx3 float [0,1] photo (cropped to even size) and a camera profile;
    ``render_gain`` fixes the re-rendering brightness (default: drawn from RENDER_GAIN_RANGE)."""
    if input_mode not in ("rerender", "original"):
        raise ValueError(f"input_mode must be 'rerender' or 'original', got {input_mode!r}")
    h, w = photo_srgb.shape[0] // 2 * 2, photo_srgb.shape[1] // 2 * 2
    photo = photo_srgb[:h, :w].astype(np.float32)
    gains = sample_wb_gains(profile, rng)
    ev = float(rng.uniform(*EV_RANGE))
    shot, read = sample_noise(rng)
    clean = pipeline.unprocess(photo, profile, gains, cfa="RGGB")
    clean = np.clip(clean * np.float32(2.0**ev), 0.0, 1.0)
    noisy = add_sensor_noise(clean, shot, read, rng)
    black = rggb_black_levels(profile.black_level, profile.cfa)
    white = float(profile.white_level)
    mosaic = quantize_levels(noisy, black, white)
    settings = {"ev": round(ev, 4), "shot_noise": shot, "read_noise": read, "input_mode": input_mode,
                "wb_gains": [round(float(g), 5) for g in gains]}
    if input_mode == "rerender":
        gain = float(rng.uniform(*RENDER_GAIN_RANGE)) if render_gain is None else float(render_gain)
        # the gain scales the linear signal before white balance and clipping, as LibRaw's ``bright``
        rendered = pipeline.process(normalize_levels(mosaic, black, white) * np.float32(gain), "RGGB", gains,
                                    profile.cam2rgb(), demosaic="malvar")
        settings["render_gain"] = round(gain, 4)
        srgb = np.clip(np.round(rendered * 255.0), 0, 255).astype(np.uint8)
        settings["jpeg_quality"] = int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
        settings["demosaic"] = "malvar"
    else:
        srgb = np.clip(np.round(photo * 255.0), 0, 255).astype(np.uint8)
    return SyntheticPair(mosaic=mosaic, black_level=black, white_level=white, srgb=srgb, wb=gains,
                         settings=settings)
