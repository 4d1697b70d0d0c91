"""Checkpoints that carry their own config: model name and config, weights, camera profiles, the
training recipe and metrics, so ``rawedge export model.pt`` needs nothing else."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rawedge import __version__
from rawedge.errors import RawedgeError

FORMAT = "rawedge-checkpoint"
FORMAT_VERSION = 1


def weights_sha256(state_dict) -> str:
    """sha256 over the weights in name order (stable across save/load and devices)."""
    import numpy as np

    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(np.ascontiguousarray(t.numpy()).tobytes())
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, model, *, camera_profiles: list[dict] | None = None,
                    recipe: dict | None = None, metrics: dict | None = None, train_state: dict | None = None,
                    extra: dict | None = None) -> None:
    """Write atomically. ``train_state`` (optimizer, epoch, rng) makes the checkpoint resumable."""
    import torch

    from rawedge.io.atomic import atomic_output

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "rawedge_version": __version__,
        "model_name": model.model_name, "config": dict(model.config), "state_dict": state,
        "weights_sha256": weights_sha256(state), "camera_profiles": camera_profiles or [],
        "recipe": recipe or {}, "metrics": metrics or {}, "train_state": train_state, "extra": extra or {},
    }
    with atomic_output(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, validated; clear errors for other tools' files and corrupt files."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise RawedgeError(path, "no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise RawedgeError(path, f"not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise RawedgeError(path, "not a rawedge checkpoint (no 'format: rawedge-checkpoint'); "
                                 "train with `rawedge train` or save with rawedge.models.checkpoint.save_checkpoint")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise RawedgeError(path, f"checkpoint format {ckpt['format_version']} is newer than this rawedge")
    return ckpt


def load_checkpoint(path: str | os.PathLike, verify: bool = True):
    """(model in eval mode, checkpoint dict). ``verify`` checks the weights against their sha256."""
    from rawedge.models.registry import create_model

    ckpt = read_checkpoint(path)
    try:
        model = create_model(ckpt["model_name"], **ckpt["config"])
    except RawedgeError as exc:
        raise RawedgeError(path, exc.problem) from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise RawedgeError(path, f"weights do not fit model {ckpt['model_name']!r} "
                                 f"({str(exc).splitlines()[0]})") from None
    if verify and ckpt.get("weights_sha256") and weights_sha256(ckpt["state_dict"]) != ckpt["weights_sha256"]:
        raise RawedgeError(path, "weights do not match the sha256 recorded in the checkpoint (corrupted?)")
    model.eval()
    return model, ckpt
