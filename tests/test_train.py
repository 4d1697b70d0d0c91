"""The trainer: loss decreases, resume continues exactly, checkpoints stand alone, DDP on gloo, recipes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rawedge.errors import RawedgeError
from rawedge.training.recipe import Recipe, apply_overrides, load_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = {"name": "unet", "config": {"width": 4, "depth": 1}}  # align 4


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    from rawedge.data.pairs import make_toy_data

    path = tmp_path_factory.mktemp("toy") / "pairs"
    make_toy_data(path, count=6, size=(64, 96), seed=0, render_gain=1.35)  # a learnable brightening
    return path


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_recipe(data_dir, out, **train) -> Recipe:
    d = {"name": "tiny", "model": TINY,
         "data": {"dir": str(data_dir), "crop": 32, "batch": 2, "crops_per_image": 2, "val_crop": 64},
         "loss": {"name": "raw_l1"}, "optimizer": {"lr": 3e-3}, "schedule": {"name": "constant"},
         "train": {"epochs": 1, "out": str(out), "device": "cpu", "log_every": 1, **train}}
    return Recipe.from_dict(d)


def test_tiny_unet_loss_decreases(toy_dir, tmp_path):
    from torch.utils.data import default_collate

    from rawedge.contract import INPUT_NAMES
    from rawedge.data.dataset import PairDataset
    from rawedge.models.checkpoint import load_checkpoint
    from rawedge.models.registry import create_model
    from rawedge.training.trainer import train

    result = train(tiny_recipe(toy_dir, tmp_path / "run", epochs=8), show_progress=False)
    steps = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in steps if r["event"] == "step"]
    assert result.steps == len(losses) == 8 * 4  # 4 train samples x 2 crops / batch 2 = 4 steps per epoch
    # the training loss on one fixed set of crops, before and after
    crops = PairDataset(toy_dir, "train", crop=32, crops_per_image=2, flips=False)
    batch = default_collate([crops[i] for i in range(len(crops))])
    torch.manual_seed(0)
    before = create_model("unet", **TINY["config"]).eval()
    after, _ = load_checkpoint(result.last)
    with torch.no_grad():
        l0, l1 = ((m(**{k: batch[k] for k in INPUT_NAMES})["raw"] - batch["raw"]).abs().mean() for m in (before, after))
    assert l1 < 0.85 * l0
    epochs = [r for r in steps if r["event"] == "epoch"]
    assert len(epochs) == 8 and all(np.isfinite(r["val_raw_psnr"]) for r in epochs)
    assert result.best is not None and result.best.is_file()
    assert result.metrics["best_val_raw_psnr"] == max(r["val_raw_psnr"] for r in epochs)


def test_resume_continues_from_saved_step(toy_dir, tmp_path):
    from rawedge.models.checkpoint import read_checkpoint
    from rawedge.training.trainer import train

    straight = train(tiny_recipe(toy_dir, tmp_path / "a", epochs=2, checkpoint_every=3,
                                 keep_step_checkpoints=True), show_progress=False)
    assert straight.steps == 8
    mid = tmp_path / "a/step_000003.pt"  # saved inside the first epoch (4 steps per epoch)
    state = read_checkpoint(mid)["train_state"]
    assert (state["step"], state["epoch"], state["batches_done"]) == (3, 0, 3)
    resumed = train(tiny_recipe(toy_dir, tmp_path / "b", epochs=2), resume=mid, show_progress=False)
    assert resumed.steps == 8
    a, b = read_checkpoint(straight.last), read_checkpoint(resumed.last)
    assert b["train_state"]["step"] == 8
    for name, tensor in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], tensor, rtol=1e-5, atol=1e-6)
    steps_b = [json.loads(x)["step"] for x in (tmp_path / "b/log.jsonl").read_text().splitlines()
               if json.loads(x)["event"] == "step"]
    assert steps_b == [4, 5, 6, 7, 8]  # only the steps after the checkpoint were run
    # a checkpoint of another model cannot be resumed by this recipe
    other = tiny_recipe(toy_dir, tmp_path / "c")
    other.model.config = {"width": 8, "depth": 1}
    with pytest.raises(RawedgeError, match="recipe asks for"):
        train(other, resume=mid, show_progress=False)


def test_checkpoint_loads_with_nothing_but_the_file(toy_dir, tmp_path):
    from rawedge.training.trainer import train

    data_copy = tmp_path / "data"
    shutil.copytree(toy_dir, data_copy)
    result = train(tiny_recipe(data_copy, tmp_path / "run", max_steps=2), show_progress=False)
    shutil.rmtree(data_copy)  # the checkpoint must not need the data or the recipe file
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys, torch\n"
        "from rawedge.models.checkpoint import load_checkpoint\n"
        "model, ckpt = load_checkpoint(sys.argv[1])\n"
        "x = {'srgb': torch.rand(1, 3, 32, 32), 'thumb': torch.rand(1, 3, 256, 256), 'exif': torch.full((1, 4), float('nan')),\n"
        "     'wb': torch.tensor([[2.0, 1.0, 1.5]]), 'cam2rgb': torch.eye(3)[None], 'rgb2cam': torch.eye(3)[None]}\n"
        "raw = model(**x)['raw']\n"
        "assert raw.shape == (1, 4, 16, 16) and torch.isfinite(raw).all()\n"
        "print(ckpt['model_name'], ckpt['config']['width'], len(ckpt['camera_profiles']), ckpt['recipe']['name'],\n"
        "      ckpt['metrics']['step'], 'optimizer' in ckpt['train_state'])\n")
    out = subprocess.run([sys.executable, "-c", code, str(result.last)], cwd=elsewhere, capture_output=True,
                         text=True, timeout=120, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["unet", "4", "1", "tiny", "2", "True"]


def test_ddp_two_gloo_processes(toy_dir, tmp_path):
    """torchrun with 2 CPU processes: DistributedSampler splits the crops, gloo averages the gradients."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "rawedge.cli", "train",
           "--model", "unet", "--model-config", "{width: 4, depth: 1}", "--data", str(toy_dir), "--crop", "32",
           "--batch", "1", "--steps", "2", "--set", "data.crops_per_image=1", "--set", "data.val_crop=64",
           "--device", "cpu", "--out", str(tmp_path / "ddp"), "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "trained unet for 2 steps" in out.stdout
    from rawedge.models.checkpoint import read_checkpoint

    ckpt = read_checkpoint(tmp_path / "ddp/last.pt")
    assert ckpt["train_state"]["world_size"] == 2 and ckpt["train_state"]["step"] == 2
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # saved unwrapped
    assert np.isfinite(ckpt["metrics"]["val_raw_psnr"])


def test_recipes_load_and_build():
    from rawedge.losses import create_loss
    from rawedge.models.registry import create_model

    for name in ("unet_small", "paramisp_small"):
        recipe = load_recipe(ROOT / "recipes" / f"{name}.yaml")
        model = create_model(recipe.model.name, **recipe.model.config)
        create_loss(recipe.loss.name, **recipe.loss.config)
        assert recipe.data.crop % model.align == 0
        assert recipe.notes and "min" in recipe.notes  # the time estimate is stated


def test_recipe_errors_and_overrides(toy_dir, tmp_path):
    from rawedge.training.trainer import train

    with pytest.raises(RawedgeError, match="unknown recipe key"):
        Recipe.from_dict({"modle": {}})
    with pytest.raises(RawedgeError, match="unknown key.*in data"):
        Recipe.from_dict({"data": {"dir": "x", "crops": 3}})
    with pytest.raises(RawedgeError, match="data.dir is required"):
        Recipe.from_dict({})
    d = apply_overrides({"data": {"dir": "x"}, "model": {"config": {"width": 4}}},
                        ["train.epochs=3", "model.config.depth=2", "optimizer.betas=[0.8, 0.9]"])
    recipe = Recipe.from_dict(d)
    assert recipe.train.epochs == 3 and recipe.model.config == {"width": 4, "depth": 2}
    assert recipe.optimizer.betas == [0.8, 0.9]
    bad_crop = tiny_recipe(toy_dir, tmp_path / "x")
    bad_crop.data.crop = 34  # unet depth 1 needs multiples of 4
    with pytest.raises(RawedgeError, match="not a multiple"):
        train(bad_crop, show_progress=False)


def test_lr_schedules():
    from rawedge.training.recipe import ScheduleSpec
    from rawedge.training.trainer import lr_factor

    cos = ScheduleSpec(name="cosine", warmup_steps=10, min_lr=1e-5)
    assert lr_factor(cos, 0, 100, 10, 1e-3) == pytest.approx(0.1)
    assert lr_factor(cos, 10, 100, 10, 1e-3) == pytest.approx(1.0)
    assert lr_factor(cos, 100, 100, 10, 1e-3) == pytest.approx(0.01)
    step = ScheduleSpec(name="step", step_epochs=2, gamma=0.5)
    assert [lr_factor(step, s, 100, 10, 1e-3) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
