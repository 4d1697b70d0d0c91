"""rawedge.training.metering: the metering weight fitted on training pairs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rawedge.training.metering import exposure_offsets, fit_metering_weight, least_squares_weight

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _rows(camera, analytic, metered, n=1):
    return [{"id": f"{camera}-{k}", "camera": camera, "analytic": analytic, "metered": metered} for k in range(n)]


def test_least_squares_weight_brackets_the_truth_and_weights_cameras_equally():
    kappa, evidence = least_squares_weight(_rows("a", 0.3, -0.6))
    assert kappa == pytest.approx(1 / 3)  # +0.3 + (1/3) * (-0.9) = 0
    assert evidence["median_abs_stops"] == {"analytic": 0.3, "metered": 0.6, "fitted": 0.0}
    # camera b has ten renderings and wants 0; a wants 1/3: equal weights land between, not at b's
    many = least_squares_weight(_rows("a", 0.3, -0.6) + _rows("b", 0.0, -0.9, n=10))[0]
    assert 0.1 < many < 0.25
    assert least_squares_weight(_rows("a", -0.3, -0.6))[0] == 0.0  # both too dark: kappa is clipped at 0
    assert least_squares_weight(_rows("a", 0.2, 0.2))[0] == 0.0  # the two rules agree: nothing to fit


def test_exposure_offsets_differ_by_the_metering_gain(tmp_path):
    from rawedge.data.dataset import PairDataset
    from rawedge.data.pairs import make_toy_data
    from rawedge.models.base import ISO_METERED_LEVEL, analytic_packed, unclipped_green_mean

    make_toy_data(tmp_path / "pairs", count=3, size=(64, 96), seed=2)
    rows = exposure_offsets(tmp_path / "pairs", kinds=("synthetic",))
    assert len(rows) == 3
    dataset = PairDataset(tmp_path / "pairs", "all", crop=None, cache=False)
    for row, j in zip(rows, range(len(dataset.samples))):
        item = dataset.full_item(j)
        thumb = analytic_packed(item["thumb"][None], item["wb"][None], item["rgb2cam"][None])
        shift = math.log2(ISO_METERED_LEVEL / float(unclipped_green_mean(thumb)))
        assert row["metered"] - row["analytic"] == pytest.approx(shift)
    assert 0.0 <= fit_metering_weight(tmp_path / "pairs", kinds=("synthetic",))[0] <= 1.0
    with pytest.raises(ValueError, match="no pairs"):
        fit_metering_weight(tmp_path / "pairs", kinds=("camera_jpeg",))
    assert torch.is_grad_enabled()  # the fit leaves autograd as it found it


def test_the_metered_analytic_inverse_is_the_unet_s_metered_prior():
    """``analytic`` with a metering weight is the prior a metered U-Net refines (one home: models.base)."""
    from rawedge.models.base import analytic_packed
    from rawedge.models.registry import create_model

    torch.manual_seed(0)
    srgb = torch.rand(1, 3, 32, 48)
    thumb = torch.nn.functional.interpolate(srgb, size=(256, 256), mode="bilinear")
    wb, eye = torch.tensor([[1.8, 1.0, 1.4]]), torch.eye(3)[None]
    exif = torch.full((1, 4), float("nan"))
    with torch.no_grad():
        metered = create_model("analytic", metering_weight=0.3)(srgb, thumb, exif, wb, eye, eye)["raw"]
        unet = create_model("unet", width=4, depth=1, metering_weight=0.3)  # zero tail: output = its prior
        torch.testing.assert_close(metered, unet(srgb, thumb, exif, wb, eye, eye)["raw"])
        plain = create_model("analytic")(srgb, thumb, exif, wb, eye, eye)["raw"]
    torch.testing.assert_close(plain, analytic_packed(srgb, wb, eye))
    assert not torch.allclose(metered, plain)
    with pytest.raises(ValueError, match="metering_weight"):
        create_model("analytic", metering_weight=1.5)


def test_highlight_level_is_the_green_99th_percentile_and_gates_the_weight():
    import numpy as np

    from rawedge.models.base import highlight_gate, highlight_level, metering_gain

    torch.manual_seed(1)
    prior = torch.rand(2, 4, 128, 128) * torch.tensor([0.5, 1.0]).reshape(2, 1, 1, 1)
    level = highlight_level(prior)
    for n in range(2):
        reference = np.quantile(prior[n, 1:3].numpy(), 0.99)
        assert float(level[n]) == pytest.approx(reference, abs=2e-3)
    gate = highlight_gate(prior, 0.6)  # image 0 reaches 0.495 (below the knee), image 1 0.99
    assert float(gate[0]) == 0.0 and float(gate[1]) == pytest.approx((float(level[1]) - 0.6) / 0.4)
    assert torch.equal(highlight_gate(prior, None), torch.ones(2, 1, 1, 1))
    # a closed gate keeps the analytic level; an open one moves it as the ungated weight would
    assert float(metering_gain(prior, 0.5, 0.6)[0]) == 1.0
    assert float(metering_gain(prior, 0.5, 0.6)[1]) == pytest.approx(float(metering_gain(prior, 0.5 * float(gate[1]))[1]))


def test_fit_knee_finds_the_knee_the_pairs_were_made_with():
    from rawedge.training.metering import fit_knee

    # below highlight 0.5 the analytic level is right; above it, +0.4 * gate stops too bright, metering -1.0
    rows = []
    for k, h in enumerate(np.linspace(0.2, 1.0, 41)):
        gate = max(0.0, (h - 0.5) / 0.5)
        rows.append({"id": str(k), "camera": f"c{k % 3}", "analytic": 0.4 * gate, "metered": 0.4 * gate - 1.0,
                     "highlight": float(h)})
    kappa, evidence = fit_knee(rows)
    assert evidence["knee"] == 0.5 and kappa == pytest.approx(0.4)
    assert evidence["mean_sq_stops"] == pytest.approx(0.0, abs=1e-9)
    _, plain = least_squares_weight(rows)
    assert plain["mean_sq_stops"] > 0.01  # one weight for every photo cannot fit it


@pytest.mark.parametrize("knee", [-0.1, 1.0, 2.0])
def test_a_knee_outside_0_1_is_refused(knee):
    from rawedge.models.registry import create_model

    for name in ("analytic", "unet"):
        with pytest.raises(ValueError, match="metering_knee"):
            create_model(name, metering_weight=0.3, metering_knee=knee)


def test_gated_fit_evidence_reports_the_whole_metering_rule():
    from rawedge.training.metering import fit_knee

    rows = [{"id": str(k), "camera": "c", "analytic": 0.0, "metered": -1.0, "highlight": h}
            for k, h in enumerate((0.2, 0.3, 0.9, 1.0))]
    _, evidence = fit_knee(rows)
    assert evidence["median_abs_stops"]["metered"] == 1.0  # the ungated rule, whatever the knee
    assert evidence["median_abs_stops"]["fitted"] == 0.0  # the analytic level is right: kappa 0
