"""CUDA paths: training with the edit-aware loss and the PyTorch runner on a GPU agree with the CPU.

Skipped where PyTorch sees no CUDA device (CI); run on a GPU machine with `pytest tests/test_cuda.py`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (PyTorch sees none)")

TONED = {"width": 8, "depth": 2, "exif_dim": 8, "global_tone": True}


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    from rawedge.data.pairs import make_toy_data

    path = tmp_path_factory.mktemp("toy") / "pairs"
    make_toy_data(path, count=6, size=(64, 96), seed=0, render_gain=1.35)
    return path


def test_edit_aware_training_runs_on_cuda(toy_dir, tmp_path):
    from rawedge.models.checkpoint import read_checkpoint
    from rawedge.training.recipe import Recipe
    from rawedge.training.trainer import train

    recipe = Recipe.from_dict({
        "name": "cuda", "model": {"name": "unet", "config": TONED},
        "data": {"dir": str(toy_dir), "crop": 32, "batch": 2, "crops_per_image": 2, "val_crop": 64},
        "loss": {"name": "edit_aware"}, "optimizer": {"lr": 3e-3}, "schedule": {"name": "constant"},
        "train": {"epochs": 3, "out": str(tmp_path / "run"), "device": "cuda", "log_every": 1}})
    result = train(recipe, show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["event"] == "step"]
    assert len(losses) == result.steps > 0 and all(np.isfinite(losses))
    assert all(np.isfinite(r["val_raw_psnr"]) for r in rows if r["event"] == "epoch")
    state = read_checkpoint(result.last)["state_dict"]
    assert all(t.device.type == "cpu" for t in state.values())  # checkpoints load anywhere


def test_torch_runner_cuda_matches_cpu(tmp_path):
    from rawedge.export.torch_runner import TorchRunner

    from tests.test_export import random_feed, save_tiny

    ckpt = save_tiny(tmp_path / "toned.pt", "unet", **TONED)
    feed = random_feed(2, 64, 96, seed=4)
    outs = {}
    for device in ("cpu", "cuda"):
        with TorchRunner(ckpt, device=device) as runner:
            outs[device] = runner.infer(feed)["raw"]
    assert np.abs(outs["cpu"] - outs["cuda"]).max() < 1e-4
