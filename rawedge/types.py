"""Core types shared by all four stages (numpy only, no torch): Exif, CameraProfile, RawImage, Photo."""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError

BAYER_PATTERNS = ("RGGB", "GRBG", "GBRG", "BGGR")
EXIF_VECTOR_FIELDS = ("exposure_time", "iso", "f_number", "focal_length")

# Linear sRGB (D65) -> CIE XYZ, IEC 61966-2-1.
SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=np.float64,
)
# EXIF LightSource code used for ColorMatrix1 when the source file does not say (LibRaw's matrices are D65).
ILLUMINANT_D65 = 21


@dataclass
class Exif:
    """The capture facts a reverse ISP can use. Any field may be missing (None); nothing is invented."""

    exposure_time: float | None = None  # seconds
    iso: float | None = None
    f_number: float | None = None
    focal_length: float | None = None  # mm
    make: str | None = None
    model: str | None = None
    orientation: int | None = None  # EXIF 1..8
    datetime: str | None = None
    light_source: int | None = None  # EXIF LightSource code (0x9208): 1 daylight, 3 tungsten...; None = unknown
    exposure_bias: float | None = None  # EV (ExposureBiasValue): the photographer's exposure compensation
    brightness_value: float | None = None  # APEX Bv of the metered scene (BrightnessValue), where a camera says
    # One-line notices about values the reader refused (implausible EXIF): shown to the user, never saved.
    notes: list[str] = field(default_factory=list, compare=False, repr=False)

    def to_vector(self) -> np.ndarray:
        """[exposure_time, iso, f_number, focal_length] as float32, NaN where missing (the model input)."""
        values = np.array(
            [np.nan if getattr(self, k) is None else float(getattr(self, k)) for k in EXIF_VECTOR_FIELDS],
            dtype=np.float64,
        )
        values[~(np.abs(values) <= np.finfo(np.float32).max)] = np.nan  # inf or beyond float32: unusable
        return values.astype(np.float32)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("notes")
        return out

    @classmethod
    def from_dict(cls, d: dict | None) -> Exif:
        d = d or {}
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k != "notes"})


def srgb_cam2rgb(xyz_to_cam: np.ndarray | None) -> np.ndarray:
    """White-balanced camera RGB -> linear sRGB, built the way LibRaw builds ``rgb_cam``.

    The XYZ->camera matrix is taken to sRGB primaries, each row normalised to sum 1 (so a neutral stays
    neutral after white balance), and pseudo-inverted. Unknown matrix -> identity, as LibRaw does.
    """
    if xyz_to_cam is None:
        return np.eye(3, dtype=np.float64)
    cam_rgb = np.asarray(xyz_to_cam, dtype=np.float64) @ SRGB_TO_XYZ
    cam_rgb = cam_rgb / cam_rgb.sum(axis=1, keepdims=True)
    return np.linalg.pinv(cam_rgb)


@dataclass
class CameraProfile:
    """What a reverse ISP needs to know of a camera: CFA, levels, colour matrix and white-balance prior."""

    name: str
    cfa: str = "RGGB"
    black_level: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # per 2x2 CFA position
    white_level: float = 1023.0
    color_matrix: list[list[float]] | None = None  # XYZ -> camera (DNG ColorMatrix1); None = unknown
    calibration_illuminant: int = ILLUMINANT_D65
    make: str | None = None
    model: str | None = None
    pixel_aspect: float = 1.0
    # Prior over as-shot white balance as log(R/G), log(B/G) of the camera-space neutral's inverse gains.
    wb_prior_mean: list[float] = field(default_factory=lambda: [math.log(2.0), math.log(1.6)])
    wb_prior_cov: list[list[float]] = field(default_factory=lambda: [[0.04, 0.0], [0.0, 0.04]])
    wb_samples: int = 0

    def __post_init__(self):
        def fail(problem: str):
            raise RawedgeError(None, f"camera profile {self.name!r}: {problem}")

        if not isinstance(self.name, str) or not self.name.strip():
            raise RawedgeError(None, "camera profile: 'name' must be a non-empty string")
        if not isinstance(self.cfa, str) or self.cfa not in BAYER_PATTERNS:
            fail(f"unsupported CFA {self.cfa!r}")
        black = _finite_array(self.black_level)
        if black is None or black.shape != (4,) or np.any(black < 0):
            fail("black_level needs 4 finite values >= 0")
        white = _finite_array(self.white_level)
        if white is None or white.shape != () or not (black.max() < white <= 65535):
            fail("white level must be a number above the black level and at most 65535 (16-bit sensor data)")
        if self.color_matrix is not None:
            m = _finite_array(self.color_matrix)
            if m is None or m.shape != (3, 3) or abs(np.linalg.det(m)) < 1e-12:
                fail("colour matrix must be an invertible 3x3 of finite numbers")
        aspect = _finite_array(self.pixel_aspect)
        if aspect is None or aspect.shape != () or not (1e-3 < aspect < 1e3):
            fail("pixel_aspect must be a positive number")
        mean, cov = _finite_array(self.wb_prior_mean), _finite_array(self.wb_prior_cov)
        if mean is None or mean.shape != (2,) or np.any(np.abs(mean) > 10):
            fail("wb_prior_mean must be 2 numbers: log(R/G), log(B/G) gains")
        if cov is None or cov.shape != (2, 2):
            fail("wb_prior_cov must be a 2x2 matrix of numbers")
        if isinstance(self.calibration_illuminant, bool) or not isinstance(self.calibration_illuminant,
                                                                          (int, np.integer)) \
                or not 0 <= self.calibration_illuminant <= 65535:
            fail("calibration_illuminant must be an EXIF LightSource code (0..65535)")
        for key in ("make", "model"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                fail(f"{key} must be a string or null")

    @property
    def has_color_matrix(self) -> bool:
        return self.color_matrix is not None

    def cam2rgb(self) -> np.ndarray:
        """3x3 white-balanced camera RGB -> linear sRGB (identity when the matrix is unknown)."""
        return srgb_cam2rgb(None if self.color_matrix is None else np.asarray(self.color_matrix))

    def typical_wb_gains(self) -> np.ndarray:
        """[R, G, B] white-balance gains at the mean of the prior (G = 1)."""
        r, b = np.exp(np.asarray(self.wb_prior_mean, dtype=np.float64))
        return np.array([r, 1.0, b], dtype=np.float64)

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CameraProfile:
        if not isinstance(d, dict) or "name" not in d:
            raise RawedgeError(None, "camera profile: expected a JSON object with a 'name'")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        try:
            profile = cls(**known)
        except TypeError as exc:
            raise RawedgeError(None, f"camera profile: {exc}") from exc
        profile.black_level = [float(v) for v in profile.black_level]
        profile.white_level = float(profile.white_level)
        profile.pixel_aspect = float(profile.pixel_aspect)
        return profile

    def save(self, path: str | os.PathLike) -> None:
        from rawedge.io.atomic import atomic_output

        with atomic_output(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike) -> CameraProfile:
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise RawedgeError(path, "no such file") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RawedgeError(path, f"not a camera-profile JSON ({exc.__class__.__name__})") from None
        try:
            return cls.from_dict(d)
        except RawedgeError as exc:
            raise RawedgeError(path, exc.problem) from None

    @classmethod
    def generic(cls) -> CameraProfile:
        """A neutral default for photos from unknown cameras: sRGB-primaries sensor, 12-bit, RGGB."""
        xyz_to_cam = np.linalg.inv(SRGB_TO_XYZ)
        return cls(name="generic", cfa="RGGB", black_level=[0.0] * 4, white_level=4095.0,
                   color_matrix=xyz_to_cam.tolist(), make=None, model=None)


def _finite_array(value) -> np.ndarray | None:
    """``value`` as a float64 array when it is made of finite real numbers (no strings, bools, None)."""
    try:
        flat = list(np.asarray(value, dtype=object).reshape(-1))
    except (ValueError, TypeError):
        return None
    if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in flat):
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return None
    return arr if np.all(np.isfinite(arr)) else None


def fit_wb_prior(profile: CameraProfile, wb_gains: list[np.ndarray]) -> CameraProfile:
    """Fit the 2-D Gaussian over log(R/G), log(B/G) of a camera's as-shot gains (the edit-aware prior)."""
    pts = np.array([[math.log(g[0] / g[1]), math.log(g[2] / g[1])] for g in wb_gains], dtype=np.float64)
    profile.wb_prior_mean = pts.mean(axis=0).tolist()
    cov = np.cov(pts.T) if len(pts) > 1 else np.zeros((2, 2))
    profile.wb_prior_cov = (np.atleast_2d(cov) + np.eye(2) * 1e-4).tolist()
    profile.wb_samples = len(pts)
    return profile


@dataclass
class RawImage:
    """A Bayer mosaic at sensor levels with everything needed to render or write it as a DNG."""

    bayer: np.ndarray  # HxW uint16
    cfa: str
    black_level: np.ndarray  # (4,) per 2x2 CFA position, row-major
    white_level: float
    as_shot_neutral: np.ndarray  # (3,) camera RGB of a neutral (DNG AsShotNeutral), G = 1
    profile: CameraProfile
    exif: Exif = field(default_factory=Exif)
    source: str | None = None
    # HxW float32: a model's predicted standard deviation of the normalised RAW error per photosite (its
    # confidence map), when asked for and the model has one (runtimes.Reconstructor(confidence=True)).
    sigma: np.ndarray | None = None

    def normalized(self) -> np.ndarray:
        """float32 in [0, 1]: (raw - black) / (white - black) per CFA position, clipped."""
        h, w = self.bayer.shape
        black = np.tile(np.asarray(self.black_level, np.float32).reshape(2, 2), ((h + 1) // 2, (w + 1) // 2))[:h, :w]
        out = (self.bayer.astype(np.float32) - black) / (np.float32(self.white_level) - black)
        return np.clip(out, 0.0, 1.0)

    @classmethod
    def from_normalized(cls, mosaic: np.ndarray, profile: CameraProfile, wb_gains: np.ndarray,
                        exif: Exif | None = None, cfa: str | None = None) -> RawImage:
        """Quantise a [0, 1] mosaic to the profile's sensor levels."""
        cfa = cfa or profile.cfa
        h, w = mosaic.shape
        black = np.tile(np.asarray(profile.black_level, np.float64).reshape(2, 2),
                        ((h + 1) // 2, (w + 1) // 2))[:h, :w]
        levels = black + np.clip(mosaic, 0.0, 1.0) * (profile.white_level - black)
        bayer = np.round(levels).astype(np.uint16)
        gains = np.asarray(wb_gains, dtype=np.float64)
        neutral = gains[1] / gains
        return cls(bayer=bayer, cfa=cfa, black_level=np.asarray(profile.black_level, np.float64),
                   white_level=float(profile.white_level), as_shot_neutral=neutral, profile=profile,
                   exif=exif or Exif())

    def wb_gains(self) -> np.ndarray:
        """[R, G, B] white-balance multipliers (G = 1) from the as-shot neutral."""
        n = np.asarray(self.as_shot_neutral, dtype=np.float64)
        return n[1] / n


@dataclass
class Photo:
    """An input sRGB photo as stored (not rotated: orientation stays in ``exif``)."""

    srgb: np.ndarray  # HxWx3 uint8 or uint16
    exif: Exif = field(default_factory=Exif)
    source: str | None = None
    converted_from: str | None = None  # the embedded ICC profile the pixels were converted from to sRGB

    def to_float(self) -> np.ndarray:
        """HxWx3 float32 in [0, 1]."""
        scale = 255.0 if self.srgb.dtype == np.uint8 else 65535.0
        return self.srgb.astype(np.float32) / np.float32(scale)
