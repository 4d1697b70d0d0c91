"""Where the runtimes cache what they compile (OpenVINO models, TensorRT engines, ORT's TensorRT EP)."""
from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(*parts: str) -> Path:
    """$RAWEDGE_CACHE_DIR, else $XDG_CACHE_HOME/rawedge, else ~/.cache/rawedge (created on demand)."""
    root = os.environ.get("RAWEDGE_CACHE_DIR")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "rawedge")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
