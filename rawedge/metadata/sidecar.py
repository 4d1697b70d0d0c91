"""The JSON sidecar of a TensorRT engine: an engine file has no room for metadata, so what it was built
from and for (model sha256, TensorRT version, GPU, build options, the engine's own sha256) and the
model's rawedge metadata sit beside it, as ``<key>.json`` in the engine cache (or ``ENGINE.engine.json``
next to an engine saved by hand). Plain Python: testable without a GPU."""
from __future__ import annotations

import json
import os
from pathlib import Path

from rawedge.io.atomic import atomic_output

from .schema import METADATA_KEY, ModelMeta

SIDECAR_FORMAT = "rawedge-trt-engine"
SIDECAR_VERSION = 1


def make_sidecar(*, model_sha256: str, trt_version: str, gpu_name: str, build_options: dict,
                 engine_sha256: str, metadata: ModelMeta) -> dict:
    return {"format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION, "model_sha256": model_sha256,
            "tensorrt_version": trt_version, "gpu_name": gpu_name, "build_options": build_options,
            "engine_sha256": engine_sha256, METADATA_KEY: metadata.to_json()}


def validate_sidecar(sidecar: dict, *, model_sha256: str, trt_version: str, gpu_name: str,
                     build_options: dict, engine_sha256: str | None = None) -> list[str]:
    """Why a cached engine cannot be used (empty list: it can). ``engine_sha256``: of the engine file
    on disk, to catch a truncated or swapped engine."""
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        return ["not a rawedge engine sidecar"]
    problems = []
    if sidecar.get("format_version", 0) > SIDECAR_VERSION:
        problems.append(f"sidecar format {sidecar.get('format_version')} is newer than this rawedge")
    checks = [("model_sha256", model_sha256, "built from a different model"),
              ("tensorrt_version", trt_version, "built with TensorRT"),
              ("gpu_name", gpu_name, "built for GPU"),
              ("build_options", build_options, "built with other options")]
    for key, want, what in checks:
        have = sidecar.get(key)
        if have != want:
            problems.append(f"{what} {have!r} (now {want!r})" if key != "model_sha256" else what)
    if engine_sha256 is not None and sidecar.get("engine_sha256") != engine_sha256:
        problems.append("engine file does not match its sidecar (truncated or replaced)")
    if METADATA_KEY not in sidecar:
        problems.append("sidecar lacks the model's rawedge metadata")
    return problems


def write_sidecar(path: str | os.PathLike, sidecar: dict) -> None:
    """Atomically: a reader sees the old sidecar or the new one, never half of one."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(sidecar, indent=1, sort_keys=True))


def load_sidecar(path: str | os.PathLike):
    """The sidecar's JSON, or None when it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def sidecar_metadata_text(engine_path: str | os.PathLike) -> str | None:
    """The raw rawedge metadata string of an engine, from ``ENGINE.engine.json`` or ``ENGINE.json``:
    its ``rawedge`` entry, or the whole file when the sidecar is the metadata itself (None: no sidecar)."""
    engine_path = Path(engine_path)
    for candidate in (engine_path.with_name(engine_path.name + ".json"), engine_path.with_suffix(".json")):
        if candidate.is_file():
            text = candidate.read_text()
            try:
                d = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(d, dict) and isinstance(d.get(METADATA_KEY), (dict, str)):
                v = d[METADATA_KEY]
                return v if isinstance(v, str) else json.dumps(v)
            return text
    return None
