"""``rawedge hedge`` / blend.fit_to_camera: a model's hedge chosen on RAW files of one camera."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import RAW_DIR, needs_shared
from tests.test_cli_core import rawedge

pytestmark = [needs_shared, pytest.mark.usefixtures("torch_one_thread")]

DC50 = ("Kodak_DC50_DC50IMG_DC0009L.KDC", "Kodak_DC50_DC50IMG_DC0010S.KDC", "Kodak_DC50_DC50IMG_DC0012L.KDC")


@pytest.fixture(scope="module")
def camera_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dc50")
    for name in DC50:
        (d / name).symlink_to(RAW_DIR / name)
    return d


@pytest.fixture(scope="module")
def bright_tone_unet(tmp_path_factory):
    """A tiny U-Net whose global tone brightens every photo 4.5x: far off on any camera, so a hedge must act."""
    from rawedge.models.checkpoint import save_checkpoint
    from rawedge.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("unet", width=4, depth=1, global_tone=True, prior_stats=True, tone_input="stats",
                         confidence=True)
    with torch.no_grad():
        model.tone.bias[:4].fill_(1.5)
    path = tmp_path_factory.mktemp("ckpt") / "bright.pt"
    save_checkpoint(path, model, recipe={"name": "test"})
    return path


def test_fit_to_camera_hedges_a_wrong_exposure_away(camera_dir, bright_tone_unet, tmp_path):
    from rawedge.models.checkpoint import load_checkpoint
    from rawedge.training.blend import fit_to_camera

    out = tmp_path / "hedged.pt"
    result = fit_to_camera(bright_tone_unet, camera_dir, out, tones=(1.0, 0.0), holdout=0.34, center_crop=128)
    assert len(result["files_choosing"]) == 2 and len(result["files_held_out"]) == 1
    assert set(result["files_choosing"]).isdisjoint(result["files_held_out"])
    assert result["choosing"]["images"] == 6 and result["held_out"]["images"] == 3  # 3 renderings per file
    assert result["choosing"]["raw_db"] >= -0.3 and result["choosing"]["srgb_db"] >= -0.3
    model, ckpt = load_checkpoint(out)
    assert (model.tone_blend, model.prior_blend) == (result["tone_blend"], result["prior_blend"])
    evidence = ckpt["extra"]["prior_blend"]
    unhedged = evidence["grid"].index([1.0, 1.0])
    assert evidence["worst_camera_gain_db"][unhedged] < -1.0  # the unhedged model did lose: the hedge acted
    assert evidence["fitted_to_camera"]["files_held_out"] == result["files_held_out"]


def test_fit_to_camera_errors_name_the_problem(tmp_path, bright_tone_unet):
    from rawedge.errors import RawedgeError
    from rawedge.models.checkpoint import save_checkpoint
    from rawedge.models.registry import create_model
    from rawedge.training.blend import fit_to_camera

    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    with pytest.raises(RawedgeError, match="no RAW files"):
        fit_to_camera(bright_tone_unet, tmp_path / "photos", tmp_path / "o.pt")
    analytic = tmp_path / "analytic.pt"
    save_checkpoint(analytic, create_model("paramisp"), recipe={"name": "test"})
    with pytest.raises(RawedgeError, match="no hedge"):
        fit_to_camera(analytic, tmp_path / "photos", tmp_path / "o.pt")
    assert not (tmp_path / "o.pt").exists()


def test_cli_hedge_prints_the_choice_and_fails_in_one_line(camera_dir, bright_tone_unet, tmp_path):
    out = tmp_path / "hedged.pt"
    run = rawedge("hedge", bright_tone_unet, "--data", camera_dir, "-o", out, "--tones", "1,0", "--crop", "128")
    assert run.returncode == 0, run.stderr
    assert "hedge: tone_blend" in run.stdout and "held-out files: RAW PSNR" in run.stdout and out.is_file()
    again = rawedge("hedge", bright_tone_unet, "--data", camera_dir, "-o", out)
    assert again.returncode == 1 and "already exists" in again.stderr  # refused at once, before any rendering
    bad = rawedge("hedge", bright_tone_unet, "--data", tmp_path / "nothere", "-o", tmp_path / "x.pt")
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "nothere" in bad.stderr
    assert not (tmp_path / "x.pt").exists()
    few = tmp_path / "two"
    few.mkdir()
    for name in DC50[:2]:
        (few / name).symlink_to(RAW_DIR / name)
    short = rawedge("hedge", bright_tone_unet, "--data", few, "-o", tmp_path / "y.pt")
    assert short.returncode == 1 and "too few" in short.stderr and not (tmp_path / "y.pt").exists()
    assert "choosing the hedge" in short.stderr and "accuracy gate" not in short.stderr
