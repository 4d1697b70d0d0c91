"""Camera profiles: bundled ones (by make/model), from a RAW file, from JSON, or the generic default."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.types import CameraProfile, Exif, fit_wb_prior

RAW_SUFFIXES = {".crw", ".cr2", ".cr3", ".nef", ".arw", ".kdc", ".dng", ".orf", ".rw2", ".raf", ".pef", ".srw"}


def bundled_profiles() -> dict[str, CameraProfile]:
    """Profiles shipped with rawedge (the cameras of its training data), keyed by name."""
    try:
        text = resources.files("rawedge").joinpath("assets/cameras.json").read_text()
    except (FileNotFoundError, OSError):
        return {}
    return {d["name"]: CameraProfile.from_dict(d) for d in json.loads(text)}


def match_profile(exif: Exif, profiles: dict[str, CameraProfile]) -> CameraProfile | None:
    """The profile whose make/model matches the photo's EXIF (case-insensitive), if any."""
    model = (exif.model or "").strip().lower()
    if not model:
        return None
    for p in profiles.values():
        if (p.model or p.name).strip().lower() == model:
            return p
    return None


def resolve_profile(exif: Exif, like: str | os.PathLike | None = None, profile_json: str | os.PathLike | None = None,
                    camera: str | None = None, profiles: dict[str, CameraProfile] | None = None
                    ) -> tuple[CameraProfile, np.ndarray | None, str]:
    """(profile, as-shot WB gains or None, how it was chosen) for a photo, in order of precedence:
    an explicit JSON, a RAW file of the same camera, a named camera, the EXIF make/model, generic."""
    from rawedge.io.raw import read_raw

    profiles = bundled_profiles() if profiles is None else profiles
    if profile_json:
        return CameraProfile.load(profile_json), None, f"profile {profile_json}"
    if like:
        raw = read_raw(like)
        return raw.profile, raw.wb_gains(), f"like {like}"
    if camera:
        if camera not in profiles:
            raise RawedgeError(None, f"unknown camera {camera!r}; known: {', '.join(sorted(profiles)) or 'none'}")
        return profiles[camera], None, f"camera {camera}"
    found = match_profile(exif, profiles)
    if found:
        return found, None, f"EXIF model {exif.model}"
    return CameraProfile.generic(), None, "generic"


def build_profiles(raw_dir: str | os.PathLike) -> list[CameraProfile]:
    """One profile per camera found in ``raw_dir``, with the WB prior fitted over all its files."""
    from rawedge.io.raw import read_raw

    by_camera: dict[str, list] = defaultdict(list)
    files = sorted(p for p in Path(raw_dir).iterdir() if p.suffix.lower() in RAW_SUFFIXES)
    if not files:
        raise RawedgeError(raw_dir, "no RAW files found")
    for path in files:
        raw = read_raw(path)
        by_camera[raw.profile.name].append(raw)
    out = []
    for name, raws in sorted(by_camera.items()):
        profile = raws[0].profile
        profile.white_level = max(r.white_level for r in raws)
        fit_wb_prior(profile, [r.wb_gains() for r in raws])
        out.append(profile)
    return out
