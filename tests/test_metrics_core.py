"""The core metrics and comparator: PSNR by hand, the Comparator naming what fails, and one PSNR
definition in the source tree."""
import ast
from pathlib import Path

import numpy as np
import pytest

from rawedge.compare import Comparator, Tolerance
from rawedge.metrics import PSNR_CAP_DB, psnr, psnr_from_mse

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("rawedge", "export", "runtimes", "calibration", "benchmarks")
LOG10_ALLOWED = {"rawedge/metrics.py", "calibration/gate.py"}  # the PSNR, and the gate's INT8 drop bound


def test_psnr_by_hand():
    a = np.zeros((2, 2), np.float32)
    b = np.array([[0.1, 0.0], [0.0, 0.0]], np.float32)
    # MSE = 0.1^2 / 4 = 0.0025; 10 log10(1 / 0.0025) = 10 log10(400) = 26.0206 dB
    assert psnr(b, a) == pytest.approx(26.0206, abs=1e-4)
    assert psnr_from_mse(1e-4) == pytest.approx(40.0)
    assert psnr(a, a) == psnr_from_mse(0.0) == PSNR_CAP_DB == 100.0


def _runs():
    rng = np.random.default_rng(0)
    raw = rng.random((2, 4, 16, 16)).astype(np.float32)
    sigma = rng.random((2, 1, 16, 16)).astype(np.float32)
    return {"raw": raw, "sigma": sigma}


def test_comparator_passes_within_tolerance():
    ref = _runs()
    cand = {k: v + np.float32(1e-6) for k, v in ref.items()}
    result = Comparator({"raw": Tolerance(max_abs=1e-5, min_psnr_db=60, per_image=True),
                         "sigma": Tolerance(max_abs=1e-5)})(ref, cand)
    assert result.passed and result.failed == []
    raw = result.outputs["raw"]
    assert raw.max_abs == pytest.approx(1e-6, rel=0.1) and raw.worst_image in (0, 1)
    assert raw.psnr_db == PSNR_CAP_DB  # MSE ~1e-12: float rounding
    assert "FAILED" not in str(result)


def test_comparator_names_the_failing_output():
    ref = _runs()
    cand = {k: v.copy() for k, v in ref.items()}
    cand["sigma"][1] += 0.01  # one image of one output off by 0.01: 40 dB for that image
    result = Comparator({"raw": Tolerance(max_abs=1e-5),
                         "sigma": Tolerance(max_abs=1e-3, min_psnr_db=42, per_image=True)})(ref, cand)
    assert not result.passed and [d.name for d in result.failed] == ["sigma"]
    sigma = result.outputs["sigma"]
    assert sigma.max_abs == pytest.approx(0.01, rel=1e-3) and sigma.worst_image == 1
    assert sigma.worst_image_psnr_db == pytest.approx(40.0, abs=0.01)
    assert sigma.psnr_db == pytest.approx(43.01, abs=0.01)  # the whole batch would pass 42 dB, image 1 does not
    assert len(sigma.failures) == 2 and "max abs 0.01 > 0.001" in sigma.failures[0]
    assert "image 1 PSNR 40.0 dB < 42 dB" in sigma.failures[1]
    assert "sigma:" in str(result) and "FAILED" in str(result) and result.outputs["raw"].identical


def test_comparator_fails_nan_missing_and_misshaped_outputs():
    ref = _runs()
    cand = {"raw": ref["raw"].copy()}
    cand["raw"][0, 0, 0, 0] = np.nan
    result = Comparator({"raw": Tolerance(max_abs=1.0), "sigma": Tolerance()})(ref, cand)
    assert [d.name for d in result.failed] == ["raw", "sigma"]
    assert result.outputs["sigma"].failures == ("missing from the candidate",)
    bad = Comparator({"raw": Tolerance()})(ref, {"raw": ref["raw"][:1]})
    assert not bad.passed and "shape [1, 4, 16, 16], reference [2, 4, 16, 16]" in str(bad)


def test_log10_only_in_the_metrics_and_the_gate_bound():
    """One PSNR definition: no other module of the scanned packages calls log10."""
    calls = set()
    for package in SCANNED:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                func = getattr(node, "func", None) if isinstance(node, ast.Call) else None
                if getattr(func, "attr", getattr(func, "id", None)) == "log10":
                    calls.add(path.relative_to(ROOT).as_posix())
    assert calls == LOG10_ALLOWED
