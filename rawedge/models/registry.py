"""Models built by name (timm-style): ``create_model("unet", width=16)``. Each model class declares
``default_config`` and ``align``; its forward follows the contract in ``rawedge.contract``."""
from __future__ import annotations

import importlib

from rawedge.errors import RawedgeError

_REGISTRY: dict[str, type] = {}
# Modules that register models when imported (imported lazily: they need torch).
MODEL_MODULES = ["rawedge.models.analytic", "rawedge.models.unet", "rawedge.models.paramisp",
                 "rawedge.models.priorraw", "rawedge.models.oefusion"]


def register_model(name: str):
    def deco(cls):
        cls.model_name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_all() -> None:
    for module in MODEL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency inside the module
                raise


def list_models() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def model_class(name: str) -> type:
    _load_all()
    if name not in _REGISTRY:
        raise RawedgeError(None, f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **config):
    """Instantiate a registry model; unknown config keys are an error, not silently ignored."""
    cls = model_class(name)
    merged = dict(cls.default_config)
    unknown = set(config) - set(merged)
    if unknown:
        raise RawedgeError(None, f"model {name!r} has no option(s) {', '.join(sorted(unknown))}")
    merged.update(config)
    model = cls(**merged)
    model.config = merged
    return model
