"""benchmarks/lofo.py's hedge rule from cached sweeps: each family's hedge comes from the other folds only."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from rawedge.training.blend import GRID

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lofo():
    spec = importlib.util.spec_from_file_location("lofo_benchmark", ROOT / "benchmarks" / "lofo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_sweeps(work: Path, family: str, camera: str, curves: dict[float, callable]):
    run = work / f"fold-{family}" / "run"
    run.mkdir(parents=True)
    (run / "final.pt").write_bytes(b"")  # never opened: the sweeps are cached
    for mu, curve in curves.items():
        rows = [{"id": f"{camera}-{k}", "camera": camera, "kind": "libraw", "family": family,
                 "raw": [30.0 + curve(lam) for lam in GRID], "srgb": [30.0 + curve(lam) for lam in GRID]}
                for k in range(2)]
        name = f"sweep-{family}.json" if mu == 1.0 else f"sweep-{family}-tone{mu:.2f}.json"
        (run / name).write_text(json.dumps(rows))


def test_rule_outcome_takes_each_hedge_from_the_other_folds(lofo, tmp_path):
    # a: helped by the tone; b: hurt by it (the GoPro case), helped without it
    _write_sweeps(tmp_path, "a", "cam_a", {1.0: lambda lam: 3.0 * lam, 0.0: lambda lam: -2.0 * lam})
    _write_sweeps(tmp_path, "b", "cam_b", {1.0: lambda lam: -2.0 * lam, 0.0: lambda lam: 1.0 * lam})
    text = lofo.rule_outcome(tmp_path, ["a", "b"], (1.0, 0.0))
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| a") or line.startswith("| b")}
    # a's hedge is chosen on b (no tone, full refinement) and costs a 2 dB; b's on a (full tone) and costs b 2 dB
    assert "mu 0.00 lambda 1.0" in lines["a"] and "-2.00" in lines["a"]
    assert "mu 1.00 lambda 1.0" in lines["b"] and "-2.00" in lines["b"]
    assert "worst camera cam_a -2.00 dB" in text or "worst camera cam_b -2.00 dB" in text
    # lambda only: a is chosen on b alone, whose every lambda > 0 loses, so a stays at the analytic inverse
    plain = lofo.rule_outcome(tmp_path, ["a", "b"], (1.0,))
    assert "| a | 0.0 | +0.00 |" in plain


def test_exposure_blend_is_fixed_not_chosen(lofo, tmp_path):
    """--exposure-blend (and --metering-weight) read the sweeps made at those values (their own cache
    files), for every fold alike."""
    run = tmp_path / "fold-a" / "run"
    assert lofo.sweep_cache(run, "a") == run / "sweep-a.json"
    options = {"exposure_blend": 0.0, "metering_weight": 0.27}
    assert lofo.sweep_cache(run, "a", 0.5, options) == run / "sweep-a-tone0.50-eta0.00-m0.27.json"
    _write_sweeps(tmp_path, "a", "cam_a", {1.0: lambda lam: -2.0 * lam})
    _write_sweeps(tmp_path, "b", "cam_b", {1.0: lambda lam: 3.0 * lam})
    for family, curve in (("a", lambda lam: 1.0 * lam), ("b", lambda lam: 2.0 * lam)):
        rows = [{"id": f"cam_{family}-{k}", "camera": f"cam_{family}", "kind": "libraw", "family": family,
                 "raw": [30.0 + curve(lam) for lam in GRID], "srgb": [30.0 + curve(lam) for lam in GRID]}
                for k in range(2)]
        lofo.sweep_cache(tmp_path / f"fold-{family}" / "run", family, options={"exposure_blend": 0.0}).write_text(json.dumps(rows))
    assert "| a | 1.0 | -2.00 |" in lofo.rule_outcome(tmp_path, ["a", "b"])
    assert "| a | 1.0 | +1.00 |" in lofo.rule_outcome(tmp_path, ["a", "b"], fix=lofo.Fix(eta=0.0))


def test_metering_weight_flags_take_fit_or_a_weight(lofo):
    import argparse

    assert lofo._kappa("fit") == "fit" and lofo._kappa("0.3") == 0.3
    for bad in ("abc", "1.5", "-0.1"):
        with pytest.raises(argparse.ArgumentTypeError, match="'fit' or a number"):
            lofo._kappa(bad)
