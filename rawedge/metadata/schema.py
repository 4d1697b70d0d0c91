"""The ``metadata_props["rawedge"]`` JSON of an exported model: written by export and calibration,
read by runtimes and ``rawedge info`` through rawedge.metadata.read (numpy-free, torch-free)."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from rawedge.errors import RawedgeError

METADATA_KEY = "rawedge"
SCHEMA_VERSION = 1
NO_METADATA = ("has no rawedge metadata (metadata_props['rawedge']); it was not exported by "
               "`rawedge export`, so its tile alignment and camera profiles are unknown")


@dataclass(frozen=True, kw_only=True, eq=False)
class _Section(Mapping):
    """A typed object of the metadata: its known keys as fields (None when not given), any other key in
    ``extra``. ``from_dict`` records the keys it was given (``present``) so that ``to_dict`` gives back
    the very object that was read (no key added, a null kept); built directly, every field is written.
    It also reads as the (read-only) mapping ``to_dict()`` gives (``section["key"]``, ``items()``), and
    compares as that mapping: two sections are equal when they write the same JSON object."""

    extra: dict = field(default_factory=dict)  # keys this version of rawedge does not know, kept as read
    present: frozenset[str] | None = None  # the keys of the object read; None: all fields

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)} - {"extra", "present"}
        return cls(**{k: v for k, v in d.items() if k in known},
                   extra={k: v for k, v in d.items() if k not in known}, present=frozenset(d))

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "present")
               and (self.present is None or f.name in self.present)}
        return {**out, **self.extra}

    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


@dataclass(frozen=True, kw_only=True, eq=False)
class FusionMeta(_Section):
    """The ``fusion`` object of a model with overexposure branches (rawedge.models.oefusion writes it,
    runtimes.fusion.FusionSettings applies it, with its defaults for what is not given): mask
    ``threshold`` and ``mode``, ``feather_radius`` in photo pixels, ``outputs`` {"oe", "noe", "fused":
    output name}."""

    threshold: float | None = None
    mode: str | None = None
    feather_radius: int | None = None
    outputs: dict | None = None


@dataclass(frozen=True, kw_only=True, eq=False)
class CalibrationMeta(_Section):
    """The ``calibration`` object of an INT8 artefact: how rawedge.calibration made it and what its gate
    measured (drops in dB of RAW PSNR against the FP32 ``reference``)."""

    runtime: str | None = None  # ort, openvino, trt
    method: str | None = None
    scope: str | None = None
    backend: str | None = None
    backend_version: str | None = None
    scheme: dict | None = None
    isa: dict | None = None
    gpu: str | dict | None = None
    calibration_tiles: int | None = None
    calibration_tile: int | None = None
    calibration_files: int | None = None
    held_out_files: list[str] | None = None
    reference: str | None = None  # pytorch or onnxruntime
    max_drop_db: float | None = None
    drop_db: float | None = None
    drop_kind: str | None = None
    psnr_vs_reference_db: float | None = None
    kept_layers: list[str] | None = None
    speedup: float | None = None  # FP32 time / INT8 time on the calibrating machine (None: not measured)
    rawedge_version: str | None = None
    date: str | None = None


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
    weights_sha256: str = ""  # of the PyTorch state dict the model was exported from
    onnx_weights_sha256: str = ""  # of the ONNX file's initializers (runtimes.integrity), checked on load
    rawedge_version: str = ""
    parity: dict = field(default_factory=dict)  # PyTorch vs ONNX error measured at export
    precision: str = "fp32"
    static_tile: int | None = None  # set for fixed-shape tile models
    fusion: FusionMeta | None = None  # overexposure fusion settings, if the model has branches
    calibration: CalibrationMeta | None = None  # set on INT8 artefacts
    schema_version: int = SCHEMA_VERSION

    def __setattr__(self, name, value):
        # a typed section is also accepted as its JSON object (a dict; {} for none)
        section = _SECTIONS.get(name)
        if section is not None and isinstance(value, dict):
            value = section.from_dict(value) if value else None
        super().__setattr__(name, value)

    def to_json(self) -> str:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _SECTIONS:  # written as an object, {} when absent, as before the sections were typed
            d[name] = {} if d[name] is None else d[name].to_dict()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> ModelMeta:
        try:
            d = json.loads(text)
        except (TypeError, ValueError):  # JSONDecodeError, or bytes that are not UTF-8 text
            raise RawedgeError(source, "rawedge metadata is not valid JSON") from None
        if not isinstance(d, dict):
            raise RawedgeError(source, "rawedge metadata is not a JSON object")
        missing = [k for k in ("model_name", "config", "align") if k not in d]
        if missing:
            raise RawedgeError(source, f"rawedge metadata lacks {', '.join(missing)}")
        if not _is_int(d.get("schema_version", 1)):
            raise RawedgeError(source, "bad rawedge metadata (schema_version must be an integer)")
        if d.get("schema_version", 1) > SCHEMA_VERSION:
            raise RawedgeError(source, f"metadata schema {d['schema_version']} is newer than this rawedge "
                                       f"understands ({SCHEMA_VERSION}); upgrade rawedge")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        bad = [f"{k} must be {_KINDS[k][1]}" for k, v in known.items() if not _KINDS[k][0](v)]
        if bad:
            raise RawedgeError(source, f"bad rawedge metadata ({'; '.join(bad)})")
        meta = cls(**known)
        if meta.align < 2 or meta.align % 2:
            raise RawedgeError(source, f"bad align {meta.align!r} in rawedge metadata (an even integer >= 2)")
        if meta.static_tile is not None and (meta.static_tile < meta.align or meta.static_tile % meta.align):
            raise RawedgeError(source, f"bad static_tile {meta.static_tile} in rawedge metadata "
                                       f"(a multiple of align {meta.align})")
        return meta


_SECTIONS = {"fusion": FusionMeta, "calibration": CalibrationMeta}


def parse_metadata(text: str | None, source: str | os.PathLike) -> ModelMeta:
    """The ModelMeta of ``source`` from its stored JSON, or a clear error when the model carries none."""
    if not text:
        raise RawedgeError(source, NO_METADATA)
    return ModelMeta.from_json(text, os.fspath(source))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_count(v) -> bool:
    return _is_int(v) and 0 <= v <= 1 << 20


# What each field must hold: checked before use, so a damaged or hand-edited file fails with one line.
_KINDS = {
    "model_name": (lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    "config": (lambda v: isinstance(v, dict), "an object"),
    "align": (_is_count, "an even integer >= 2"),
    "tile": (_is_count, "an integer >= 0"),
    "overlap": (_is_count, "an integer >= 0"),
    "thumb_size": (lambda v: _is_count(v) and v > 0, "a positive integer"),
    "contract_version": (_is_int, "an integer"),
    "inputs": (_is_str_list, "a list of names"),
    "outputs": (_is_str_list, "a list of names"),
    "camera_profiles": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "a list of objects"),
    "exif_facts": (lambda v: isinstance(v, dict), "an object"),
    "recipe": (lambda v: isinstance(v, dict), "an object"),
    "metrics": (lambda v: isinstance(v, dict), "an object"),
    "weights_sha256": (lambda v: isinstance(v, str), "a string"),
    "onnx_weights_sha256": (lambda v: isinstance(v, str), "a string"),
    "rawedge_version": (lambda v: isinstance(v, str), "a string"),
    "parity": (lambda v: isinstance(v, dict), "an object"),
    "precision": (lambda v: v in ("fp32", "fp16", "int8"), "fp32, fp16 or int8"),
    "static_tile": (lambda v: v is None or _is_count(v), "null or an integer"),
    "fusion": (lambda v: isinstance(v, dict), "an object"),
    "calibration": (lambda v: isinstance(v, dict), "an object"),
    "schema_version": (_is_int, "an integer"),
}
