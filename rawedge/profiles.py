"""Camera profiles: bundled ones (by make/model), the camera database, from a RAW file, from JSON, or the
generic default; ``resolve_profile`` is the one place that picks one for a photo."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from importlib import resources

import numpy as np

from rawedge.errors import RawedgeError
from rawedge.filekinds import RAW_SUFFIXES, scan
from rawedge.types import CameraProfile, Exif, fit_wb_prior


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


def describe_camera(exif: Exif | None) -> str | None:
    """The photo's camera as its EXIF names it ("NIKON D850", "SONY XYZ"), or None when it names none."""
    from rawedge.cameradb.match import clean_text

    make, model = clean_text(getattr(exif, "make", None)), clean_text(getattr(exif, "model", None))
    if make and model.lower().startswith(make.split(" ")[0].lower()):
        return model
    return " ".join(v for v in (make, model) if v) or None


def exif_profile(exif: Exif | None, embedded: dict[str, CameraProfile] | None = None,
                 bundled: dict[str, CameraProfile] | None = None) -> tuple[CameraProfile, str] | None:
    """(profile, how) for the camera the EXIF names: a profile fitted on its RAW files (the model's
    embedded one, then a bundled one: exact matches only), else the camera database; None if unknown."""
    from rawedge import cameradb

    exif = exif or Exif()
    bundled = bundled_profiles() if bundled is None else bundled
    for source, profiles in (("model profile", embedded or {}), ("bundled profile", bundled)):
        found = match_profile(exif, profiles)
        if found:
            return found, f"{source} for {exif.model}"
    found = cameradb.lookup(exif.make, exif.model)
    if found:
        return found, f"camera database: {found.name} ({cameradb.SOURCE_NOTE})"
    return None


def named_profile(camera: str, known: dict[str, CameraProfile]) -> CameraProfile:
    """``--camera NAME``: a known profile (exact name, then any case), else the camera database."""
    from rawedge import cameradb
    from rawedge.cameradb.match import close_matches

    if camera in known:
        return known[camera]
    by_low = {name.lower(): p for name, p in known.items()}
    if camera.strip().lower() in by_low:
        return by_low[camera.strip().lower()]
    try:
        return cameradb.get(camera)
    except RawedgeError:
        near = close_matches(camera, list(known) + cameradb.names())
        raise RawedgeError(None, f"unknown camera {camera!r}" + (f"; close matches: {', '.join(near)}" if near
                                                                  else "; see 'rawedge profile list'")) from None


def resolve_profile(exif: Exif | None, like: str | os.PathLike | None = None,
                    profile_json: str | os.PathLike | None = None, camera: str | None = None,
                    profiles: dict[str, CameraProfile] | None = None,
                    embedded: dict[str, CameraProfile] | None = None
                    ) -> tuple[CameraProfile, np.ndarray | None, str]:
    """(profile, as-shot WB gains or None, how it was chosen): the one place the profile is picked.

    First match wins: an explicit JSON > a RAW file of the same camera (with its as-shot WB) > a named
    camera > a profile fitted on the EXIF camera's RAW files (``embedded`` in the model, then the bundled
    ``profiles``) > the camera database by EXIF make/model > the model's "generic" profile or
    :meth:`CameraProfile.generic`. The how-string says which, and names an unknown EXIF camera."""
    exif = exif or Exif()
    bundled = bundled_profiles() if profiles is None else profiles
    embedded = embedded or {}
    if profile_json:
        return CameraProfile.load(profile_json), None, f"profile {profile_json}"
    if like:
        from rawedge.io.raw import read_raw

        raw = read_raw(like)
        return raw.profile, raw.wb_gains(), f"like {like}"
    said = describe_camera(exif)
    if camera:
        chosen = named_profile(camera, {**bundled, **embedded})
        from_exif = exif_profile(exif, embedded, bundled)
        agrees = (from_exif is not None and from_exif[0].name == chosen.name) or \
            (chosen.model or chosen.name).strip().lower() == (exif.model or "").strip().lower()
        note = "" if said is None or agrees else f" (given; the EXIF says {said})"
        return chosen, None, f"camera {chosen.name}{note}"
    found = exif_profile(exif, embedded, bundled)
    if found:
        return found[0], None, found[1]
    generic, what = ((embedded["generic"], "model's generic profile") if "generic" in embedded
                     else (CameraProfile.generic(), "generic profile"))
    if said is None:
        return generic, None, f"{what} (no camera in the EXIF)"
    return generic, None, f"{what}: camera {said!r} is not in the camera database"


def build_profiles(raw_dir: str | os.PathLike) -> list[CameraProfile]:
    """One profile per camera found in ``raw_dir``, with the WB prior fitted over all its files."""
    from rawedge.io.raw import read_raw

    by_camera: dict[str, list] = defaultdict(list)
    files = scan(raw_dir, RAW_SUFFIXES)
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
