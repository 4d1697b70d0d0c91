"""The ``metadata_props["rawedge"]`` JSON of an exported model: written by export, read by runtimes,
calibration and ``rawedge info`` (numpy-free, torch-free)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from rawedge.errors import RawedgeError

METADATA_KEY = "rawedge"
SCHEMA_VERSION = 1


@dataclass
class ModelMeta:
    model_name: str
    config: dict
    align: int
    tile: int = 512
    overlap: int = 32
    thumb_size: int = 256
    contract_version: int = 1
    inputs: list[str] = field(default_factory=lambda: ["srgb", "thumb", "exif", "wb", "cam2rgb", "rgb2cam"])
    outputs: list[str] = field(default_factory=lambda: ["raw"])
    camera_profiles: list[dict] = field(default_factory=list)
    exif_facts: dict = field(default_factory=dict)  # EXIF normalisation constants used by the model
    recipe: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    weights_sha256: str = ""
    rawedge_version: str = ""
    parity: dict = field(default_factory=dict)  # PyTorch vs ONNX error measured at export
    precision: str = "fp32"
    static_tile: int | None = None  # set for fixed-shape tile models
    fusion: dict = field(default_factory=dict)  # overexposure fusion settings, if the model has branches
    calibration: dict = field(default_factory=dict)  # set on INT8 artefacts
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> ModelMeta:
        try:
            d = json.loads(text)
        except (TypeError, json.JSONDecodeError):
            raise RawedgeError(source, "rawedge metadata is not valid JSON") from None
        if not isinstance(d, dict):
            raise RawedgeError(source, "rawedge metadata is not a JSON object")
        missing = [k for k in ("model_name", "config", "align") if k not in d]
        if missing:
            raise RawedgeError(source, f"rawedge metadata lacks {', '.join(missing)}")
        if d.get("schema_version", 1) > SCHEMA_VERSION:
            raise RawedgeError(source, f"metadata schema {d['schema_version']} is newer than this rawedge "
                                       f"understands ({SCHEMA_VERSION}); upgrade rawedge")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        try:
            meta = cls(**known)
        except TypeError as exc:
            raise RawedgeError(source, f"bad rawedge metadata ({exc})") from None
        if not isinstance(meta.align, int) or meta.align < 2 or meta.align % 2:
            raise RawedgeError(source, f"bad align {meta.align!r} in rawedge metadata (an even integer >= 2)")
        if not isinstance(meta.config, dict):
            raise RawedgeError(source, "rawedge metadata 'config' must be an object")
        return meta
