"""Fit the U-Net's ``metering_weight`` (kappa) on training pairs: how far, in log, to move the analytic
prior's exposure toward ISO 12232's metered level (rawedge.models.unet).

The analytic inverse takes a JPEG's white for the sensor's, and so errs by how far below saturation a
camera put the scene's highlights; the metering rule puts the photo's mean green at 0.104 of white, and
errs by how far a maker's meter and speed rating depart from the standard. Each is a line in log
exposure, so the error of their blend is ``e_a + kappa * (e_m - e_a)`` per photo, and kappa has a closed
least-squares form. Only pairs whose RAW a real camera exposed count (``REAL_KINDS``): cross-camera and
synthetic pairs carry an exposure the pool drew, not a camera's.

With ``gate=True`` the knee of the highlight gate (rawedge.models.base.highlight_gate) is fitted too: the
metering shift of a pair is scaled by how far its JPEG's highlights reach above the knee, and the knee is
the grid point whose least-squares kappa leaves the smallest squared error (docs/lofo-round8-highlights.md).

Example: ``fit_metering_weight("runs/lofo/fold-gopro/data")`` -> ``(0.31, {...})``.
"""
from __future__ import annotations

import math
import os

import numpy as np

REAL_KINDS = ("libraw", "libraw_default", "engine", "camera_jpeg")


def exposure_offsets(data_dir: str | os.PathLike, kinds=REAL_KINDS, split: str | None = None) -> list[dict]:
    """Per pair: the analytic inverse's exposure error ``analytic`` (stops, rawedge.metrics) and the
    metering rule's ``metered`` (the same after the gain that puts the thumbnail prior's mean green at
    ISO 12232's level, as the model applies it) and the thumbnail prior's ``highlight`` level (what the
    highlight gate reads), with the pair's id and camera."""
    import torch

    from rawedge.data.dataset import PairDataset
    from rawedge.data.manifest import load_manifest
    from rawedge.metrics import exposure_error_stops
    from rawedge.models.base import analytic_packed, highlight_level, metering_gain

    if not load_manifest(data_dir).select(split or "all", kinds):
        return []
    dataset = PairDataset(data_dir, split or "all", crop=None, kinds=list(kinds), cache=False)
    rows = []
    with torch.no_grad():
        for j, sample in enumerate(dataset.samples):
            item = dataset.full_item(j)
            prior = analytic_packed(item["srgb"][None], item["wb"][None], item["rgb2cam"][None])
            thumb = analytic_packed(item["thumb"][None], item["wb"][None], item["rgb2cam"][None])
            shift = math.log2(float(metering_gain(thumb, 1.0)))  # the full metering rule, in stops
            e_a = exposure_error_stops(prior[0].numpy(), item["raw"].numpy())
            rows.append({"id": sample.id, "camera": sample.camera, "analytic": e_a, "metered": e_a + shift,
                         "highlight": float(highlight_level(thumb))})
    return rows


def fit_metering_weight(data_dir: str | os.PathLike, kinds=REAL_KINDS, split: str | None = None,
                        gate: bool = False) -> tuple[float, dict]:
    """(kappa in [0, 1], evidence): :func:`least_squares_weight` over the real-camera pairs of ``data_dir``;
    with ``gate``, :func:`fit_knee` (the evidence's ``knee``)."""
    rows = exposure_offsets(data_dir, kinds, split)
    if not rows:
        raise ValueError(f"{data_dir}: no pairs of kinds {list(kinds)} to fit the metering weight on")
    return fit_knee(rows) if gate else least_squares_weight(rows)


KNEES = tuple(round(0.02 * i, 2) for i in range(48))  # 0 .. 0.94: where the highlight gate opens


def fit_knee(rows: list[dict], knees=KNEES) -> tuple[float, dict]:
    """(kappa, evidence with ``knee``): the knee of ``knees`` whose :func:`least_squares_weight` leaves the
    smallest weighted squared error, ties to the lower knee (the gentler gate)."""
    fits = [least_squares_weight(rows, knee) for knee in knees]
    best = min(range(len(knees)), key=lambda k: (round(fits[k][1]["mean_sq_stops"], 6), k))
    return fits[best]


def highlight_gates(rows: list[dict], knee: float) -> np.ndarray:
    """Per :func:`exposure_offsets` row, the highlight gate at ``knee`` (rawedge.models.base.gate_from_level)."""
    import torch

    from rawedge.models.base import gate_from_level

    levels = torch.tensor([r["highlight"] for r in rows], dtype=torch.float64)
    return gate_from_level(levels, knee).numpy()


def _shifts(rows: list[dict], knee: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(analytic error, the whole metering rule's shift, the shift the model applies at weight 1: gated
    when ``knee`` is given) per row, in stops."""
    e_a = np.array([r["analytic"] for r in rows], np.float64)
    full = np.array([r["metered"] for r in rows], np.float64) - e_a
    return e_a, full, (full if knee is None else full * highlight_gates(rows, knee))


def blended_errors(rows: list[dict], kappa: float, knee: float | None = None) -> np.ndarray:
    """Per :func:`exposure_offsets` row, the exposure error (stops) of the prior at metering weight ``kappa``
    and highlight knee ``knee``: what the model's prior gets wrong, before any network."""
    e_a, _, d = _shifts(rows, knee)
    return e_a + kappa * d


def least_squares_weight(rows: list[dict], knee: float | None = None) -> tuple[float, dict]:
    """(kappa, evidence) from :func:`exposure_offsets` rows: the kappa in [0, 1] minimising the squared
    exposure error of the blend, each camera weighted equally (a camera with many renderings must not set
    the convention), and the median absolute error of the analytic inverse, the whole metering rule and the
    fit. With ``knee``, each pair's metering shift is scaled by its highlight gate before the fit.

    Example: an analytic error of +0.3 stops and a metered one of -0.6 on every pair give kappa 1/3."""
    e_a, full, d = _shifts(rows, knee)
    cameras = [r["camera"] for r in rows]
    weight = np.array([1.0 / cameras.count(c) for c in cameras])
    denom = float(np.sum(weight * d * d))
    kappa = float(np.clip(-np.sum(weight * e_a * d) / denom, 0.0, 1.0)) if denom > 0 else 0.0
    fitted = e_a + kappa * d
    evidence = {"pairs": len(rows), "cameras": sorted(set(cameras)), "kappa": round(kappa, 4), "knee": knee,
                "mean_sq_stops": round(float(np.sum(weight * fitted ** 2) / np.sum(weight)), 6),
                "median_abs_stops": {"analytic": round(float(np.median(np.abs(e_a))), 3),
                                     "metered": round(float(np.median(np.abs(e_a + full))), 3),
                                     "fitted": round(float(np.median(np.abs(fitted))), 3)}}
    return kappa, evidence
