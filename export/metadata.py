"""The rawedge metadata of an exported model, built from the model and its checkpoint: what the
runtimes need to use the file without the checkpoint (contract, align, tiling, camera profiles, EXIF
facts, provenance, parity). Storing and reading it is rawedge.metadata's.

A model may add to it by implementing ``export_extras() -> dict`` with any of EXTRA_FIELDS (for example
``{"fusion": {...}}`` for models with an overexposure branch); everything else is the exporter's.
"""
from __future__ import annotations

import json
import math

from rawedge import __version__
from rawedge.contract import CONTRACT_VERSION, INPUT_NAMES, THUMB_SIZE
from rawedge.errors import RawedgeError
from rawedge.metadata.schema import ModelMeta

EXTRA_FIELDS = ("tile", "overlap", "fusion", "exif_facts", "metrics")


def json_safe(value):
    """Plain JSON (no NaN/Infinity, which strict parsers reject; paths and numpy scalars as values)."""
    def clean(v):
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return clean(json.loads(json.dumps(value, default=_to_plain)))


def _to_plain(v):
    if hasattr(v, "tolist"):  # numpy arrays and scalars, torch tensors
        return v.tolist()
    return str(v)


def camera_profiles(ckpt: dict) -> list[dict]:
    """The checkpoint's camera profiles (validated) plus the generic one for unknown cameras."""
    from rawedge.types import CameraProfile

    out = []
    for d in ckpt.get("camera_profiles") or []:
        try:
            out.append(CameraProfile.from_dict(d).to_dict())
        except RawedgeError as exc:
            raise RawedgeError(None, f"checkpoint holds a bad camera profile: {exc.problem}") from None
    if not any(p["name"] == "generic" for p in out):
        out.append(CameraProfile.generic().to_dict())
    return out


def model_extras(model) -> dict:
    """What the model adds to its metadata through ``export_extras()`` (optional)."""
    extras_fn = getattr(model, "export_extras", None)
    if extras_fn is None:
        return {}
    extras = extras_fn() or {}
    unknown = sorted(set(extras) - set(EXTRA_FIELDS))
    if unknown:
        raise RawedgeError(None, f"model {model.model_name!r}: export_extras() returned {', '.join(unknown)}; "
                                 f"allowed: {', '.join(EXTRA_FIELDS)}")
    return extras


def build_meta(model, ckpt: dict, *, tile: int, overlap: int, receptive_field: dict,
               static_tile: int | None, precision: str) -> ModelMeta:
    from rawedge.models.checkpoint import weights_sha256

    extras = model_extras(model)
    metrics = dict(ckpt.get("metrics") or {})
    metrics["receptive_field"] = receptive_field
    metrics.update(extras.get("metrics", {}))
    exif_facts = dict(getattr(model, "exif_facts", {}) or {})
    exif_facts.update(extras.get("exif_facts", {}))
    meta = ModelMeta(
        model_name=model.model_name, config=dict(getattr(model, "config", {}) or {}), align=int(model.align),
        tile=int(extras.get("tile", tile)), overlap=int(extras.get("overlap", overlap)), thumb_size=THUMB_SIZE,
        contract_version=CONTRACT_VERSION, inputs=list(INPUT_NAMES), outputs=list(model.output_names),
        camera_profiles=camera_profiles(ckpt), exif_facts=exif_facts, recipe=dict(ckpt.get("recipe") or {}),
        metrics=metrics, weights_sha256=weights_sha256(model.state_dict()), rawedge_version=__version__,
        precision=precision, static_tile=static_tile, fusion=json_safe(dict(extras.get("fusion", {}))))
    for name in ("config", "camera_profiles", "exif_facts", "recipe", "metrics"):
        setattr(meta, name, json_safe(getattr(meta, name)))
    if meta.tile % meta.align or meta.overlap % meta.align or not 0 <= meta.overlap < meta.tile:
        raise RawedgeError(None, f"model {meta.model_name!r}: tile {meta.tile} / overlap {meta.overlap} must be "
                                 f"multiples of align {meta.align} with overlap < tile")
    return meta
