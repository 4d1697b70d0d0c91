"""Loss plug-ins usable with every model: ``create_loss("raw_l1")``, ``create_loss("edit_aware", ...)``.

A loss is an ``nn.Module`` called as ``loss(outputs, batch) -> (scalar, {name: float})`` where
``outputs`` is the model's output dict and ``batch`` holds the model inputs plus the target ``raw``
([N,4,H/2,W/2] packed RGGB in [0,1]) and per-sample metadata.
"""
from __future__ import annotations

import importlib

from rawedge.errors import RawedgeError

_LOSSES: dict[str, type] = {}
LOSS_MODULES = ["rawedge.losses.raw", "rawedge.losses.edit_aware", "rawedge.losses.soft",
               "rawedge.losses.region"]


def register_loss(name: str):
    def deco(cls):
        cls.loss_name = name
        _LOSSES[name] = cls
        return cls

    return deco


def _load_all() -> None:
    for module in LOSS_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def list_losses() -> list[str]:
    _load_all()
    return sorted(_LOSSES)


def create_loss(name: str, **config):
    _load_all()
    if name not in _LOSSES:
        raise RawedgeError(None, f"unknown loss {name!r}; known: {', '.join(sorted(_LOSSES))}")
    return _LOSSES[name](**config)
