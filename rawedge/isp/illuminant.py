"""White-balance estimate for a photo whose camera gains are unknown (every JPEG: the camera applied its
gains and did not record them in standard EXIF).

A JPEG is already white balanced, so its pixels cannot tell which gains the camera used. Two facts can:
the camera's typical gains (the mean of its profile's WB prior, fitted on its RAW files; for unknown
cameras the generic profile's) and the EXIF ``LightSource`` tag (0x9208), which many cameras fill when
the user or the auto-WB picked an illuminant. The estimate is the typical gains, shifted by how the
camera's colour matrix says its response to the tagged illuminant differs from its response to daylight:

    gains = typical * g(illuminant) / g(daylight),   g(L) = cam(white of L)[G] / cam(white of L)

With no tag (or "unknown"/"other"), or no colour matrix in the profile, it is the typical gains. Keeping
the result centred on the camera's typical gains keeps the models' ``wb`` input in the range they were
trained on, for known and unknown cameras alike.

Numpy only (the runtimes use it); CCT -> chromaticity follows CIE 15 (daylight locus, 4000-25000 K) and
Kang et al. 2002 (Planckian locus, 1667-4000 K); tests compare both with colour-science.
"""
from __future__ import annotations

import numpy as np

from rawedge.io.exif import light_source_code
from rawedge.types import CameraProfile, Exif

# EXIF LightSource code -> (name, correlated colour temperature in K). Codes with no meaningful
# temperature (0 unknown, 255 other) are absent: they give no information.
LIGHT_SOURCES: dict[int, tuple[str, float]] = {
    1: ("daylight", 5500.0), 2: ("fluorescent", 4200.0), 3: ("tungsten", 2856.0), 4: ("flash", 5500.0),
    9: ("fine weather", 5500.0), 10: ("cloudy", 6500.0), 11: ("shade", 7500.0),
    12: ("daylight fluorescent", 6400.0), 13: ("day white fluorescent", 5000.0),
    14: ("cool white fluorescent", 4150.0), 15: ("white fluorescent", 3525.0),
    16: ("warm white fluorescent", 2925.0), 17: ("standard light A", 2856.0),
    18: ("standard light B", 4874.0), 19: ("standard light C", 6774.0), 20: ("D55", 5503.0),
    21: ("D65", 6504.0), 22: ("D75", 7504.0), 23: ("D50", 5003.0), 24: ("ISO studio tungsten", 3200.0),
}
REFERENCE_CCT = 5500.0  # what a camera's typical (mostly daylight) gains stand for


def cct_to_xy(cct: float) -> np.ndarray:
    """CIE xy chromaticity of a correlated colour temperature (K): the CIE daylight locus from 4000 K,
    the Planckian locus (Kang et al. 2002 cubic approximation) below. Clamped to 1667-25000 K."""
    t = float(np.clip(cct, 1667.0, 25000.0))
    if t >= 4000.0:
        if t <= 7000.0:
            x = -4.6070e9 / t**3 + 2.9678e6 / t**2 + 0.09911e3 / t + 0.244063
        else:
            x = -2.0064e9 / t**3 + 1.9018e6 / t**2 + 0.24748e3 / t + 0.237040
        y = -3.000 * x * x + 2.870 * x - 0.275
        return np.array([x, y])
    x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    if t <= 2222.0:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    else:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    return np.array([x, y])


def illuminant_gains(xyz_to_cam, cct: float) -> np.ndarray:
    """[R, G, B] gains (G = 1) that make the camera's response to the illuminant's white neutral."""
    x, y = cct_to_xy(cct)
    white = np.array([x / y, 1.0, (1.0 - x - y) / y])
    cam = np.asarray(xyz_to_cam, dtype=np.float64) @ white
    if not np.all(np.isfinite(cam)) or np.any(cam <= 0):
        raise ValueError("the colour matrix gives a non-positive response to a white illuminant")
    return cam[1] / cam


def light_source_of(exif: Exif | None) -> tuple[str, float] | None:
    code = light_source_code(getattr(exif, "light_source", None)) if exif is not None else None
    return LIGHT_SOURCES.get(code) if code is not None else None


def estimate_wb(profile: CameraProfile, exif: Exif | None = None) -> tuple[np.ndarray, str]:
    """(gains [R, G, B] with G = 1, how they were chosen) for a photo of ``profile``'s camera."""
    typical = profile.typical_wb_gains()
    source = light_source_of(exif)
    if source is None:
        return typical, "typical WB of the profile"
    name, cct = source
    if profile.color_matrix is None:
        return typical, f"typical WB of the profile (EXIF says {name}, but the profile has no colour matrix)"
    try:
        shift = illuminant_gains(profile.color_matrix, cct) / illuminant_gains(profile.color_matrix, REFERENCE_CCT)
    except ValueError:
        return typical, f"typical WB of the profile (its colour matrix cannot place EXIF's {name})"
    gains = typical * shift
    return gains / gains[1], f"typical WB shifted to EXIF light source {name} ({cct:.0f} K)"
