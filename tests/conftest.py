"""Shared fixtures: the real RAW files of ../shared/data (CC0) and small synthetic inputs."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RAWEDGE_SHARED", ROOT.parent / "shared"))
RAW_DIR = SHARED / "data" / "raw"
KODAK_DIR = SHARED / "data" / "photos" / "kodak"
RAW_FILES = sorted(p for p in RAW_DIR.glob("*") if p.suffix.upper() in (".CRW", ".KDC")) if RAW_DIR.is_dir() else []
SAMPLE_JPEG = ROOT / "samples" / "boxes_s40.jpg"

needs_shared = pytest.mark.skipif(not RAW_FILES, reason=f"shared RAW files not found in {RAW_DIR}")


@pytest.fixture(scope="session")
def canon_raw() -> Path:
    if not RAW_FILES:
        pytest.skip(f"shared RAW files not found in {RAW_DIR}")
    return RAW_DIR / "Canon_PowerShot_S40_CRW_0117.CRW"


@pytest.fixture(scope="session")
def kodak_raw() -> Path:
    if not RAW_FILES:
        pytest.skip(f"shared RAW files not found in {RAW_DIR}")
    return RAW_DIR / "Kodak_DC120_DC120IMG_P003912.KDC"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Compiled-model and engine caches go to a temporary directory, never the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAWEDGE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def tiny_unet(tmp_path_factory):
    """(onnx, checkpoint, metadata) of the tiny U-Net of tests.test_runtimes.export_tiny_unet, exported once
    per session (per xdist worker). Tests read it; those that change a model work on a copy."""
    from tests.test_runtimes import export_tiny_unet

    return export_tiny_unet(tmp_path_factory.mktemp("tiny_unet"))


def map_in_threads(fn, items) -> list:
    """``[fn(item) for item in items]``, each call on its own thread, all started together."""
    results = [None] * len(items)

    def work(i):
        results[i] = fn(items[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture
def torch_one_thread():
    """One torch thread for training-loop tests: on 2 shared cores, 2 threads run several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
