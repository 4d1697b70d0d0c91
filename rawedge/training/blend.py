"""How far to trust a learned model on cameras it never saw: the hedges ``prior_blend`` and ``tone_blend``
(rawedge.models.unet).

A model that learned a few cameras extrapolates to others with confidence it has not earned (the fourth
round of issue 13: a global tone it applies to every rendering of an unseen camera). Its output can be
hedged toward the analytic inverse, ``analytic + lambda * (model - analytic)``: the analytic inverse is
exact for a plain rendering, the model wins on curved, brightened and camera-engine renderings, and the
blend of the two is often better than either (their errors are far from perfectly correlated).

Lambda must not be chosen on the cameras it is reported on. :func:`sweep` scores one forward pass of a
model at every lambda of a grid (the blend is linear in the model's output, so one pass serves all), and
:func:`choose` picks, from sweeps of models on cameras *they* did not see, the lambda whose worst camera
gains most over the analytic inverse (RAW and edited-sRGB PSNR, the two numbers of issue 13); the mean
gain breaks ties. A lambda picked from a fold's own held-out family is hindsight: an upper bound on what
any fixed lambda can do there (``benchmarks/lofo.py --sweep``), not a result.

The second hedge, ``tone_blend`` (mu), scales the model's global tone (image-wide exposure and curve)
toward none. It changes what the network sees, so each mu costs a forward pass: :func:`sweep` takes one
mu, :func:`hedge_grid` joins sweeps at several mu into rows over (mu, lambda) pairs, and :func:`choose`
picks a pair the same way it picks a lambda.

Two more options are held fixed, not chosen by the rule (``fixed``): ``exposure_blend`` (eta) keeps the
global tone's curve and scales only its change of the mean level, and ``metering_weight`` (kappa) moves the
prior toward ISO 12232's metered exposure (fitted on training pairs, rawedge.training.metering). On an
unseen camera the learned exposure is a guess about how its maker exposes, which no other family's sweep
can tell (docs/lofo-round7-exposure.md). A sweep runs at the checkpoint's own values unless ``fixed``
gives others, and :func:`with_blend` writes them.
"""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np

GRID = tuple(round(0.1 * k, 1) for k in range(11))  # 0.0, 0.1, ..., 1.0
TONES = (1.0, 0.75, 0.5, 0.0)  # tone blends fit_to_camera tries
FLOOR_DB = -0.3  # issue 13's tolerance: no camera more than 0.3 dB below the analytic inverse


def sweep(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, grid=GRID, center_crop: int | None = None,
          split: str = "val", tile: int = 512, overlap: int = 64, on_step=None, tone: float = 1.0,
          fixed: dict | None = None) -> list[dict]:
    """Per image: {"id", "camera", "kind", "family", "raw": [PSNR per lambda], "srgb": [...]} where the RAW
    PSNR is on packed RGGB and the sRGB PSNR after the default edit (``rawedge eval``'s conventions); the
    analytic inverse is lambda = 0. The checkpoint's own ``prior_blend`` is ignored (taken as 1) and its
    ``tone_blend`` replaced by ``tone`` (and the options in ``fixed``, e.g. ``{"exposure_blend": 0.0}``)."""
    return sweep_tones(checkpoint, data_dir, (tone,), grid, center_crop, split, tile, overlap, on_step,
                       fixed)[float(tone)]


def sweep_tones(checkpoint: str | os.PathLike, data_dir: str | os.PathLike, tones=(1.0,), grid=GRID,
                center_crop: int | None = None, split: str = "val", tile: int = 512, overlap: int = 64,
                on_step=None, fixed: dict | None = None) -> dict[float, list[dict]]:
    """{mu: :func:`sweep` rows at tone blend mu}: each image is read, inverted analytically and scored once;
    only the model runs once per tone blend. ``fixed``: other options to run at (``exposure_blend``,
    ``metering_weight``; default: the checkpoint's own)."""
    import torch

    from rawedge.data.dataset import PairDataset
    from rawedge.isp.ops import pack
    from rawedge.losses.edit_aware import fixed_edits, render_edit
    from rawedge.metrics import psnr
    from rawedge.models.registry import create_model
    from rawedge.training.evaluate import load_model, open_reconstructor, reconstruct_item

    tones = [float(t) for t in tones]
    net, _, ckpt = load_model(os.fspath(checkpoint), torch.device("cpu"))
    if hasattr(net, "prior_blend"):
        net.prior_blend = 1.0
    if any(t != 1.0 for t in tones) and getattr(net, "tone", None) is None:
        raise ValueError(f"{checkpoint}: tone blends {tones} need a model with a global tone")
    _set_fixed(net, fixed or {}, checkpoint)
    model = open_reconstructor(net, ckpt, "cpu", tile, overlap)  # runs ``net`` as it is when called
    analytic = open_reconstructor(create_model("analytic").eval(), {}, "cpu", max(tile, 2048), 0)
    default_edit = fixed_edits()[0]
    dataset = PairDataset(data_dir, split, crop=None, cache=False)
    rows = {mu: [] for mu in tones}
    with model, analytic, torch.no_grad():
        for j, sample in enumerate(dataset.samples):
            if on_step:
                on_step(sample.id)
            item = dataset.full_item(j, center_crop=center_crop)
            prior = pack(reconstruct_item(analytic, item, sample).mosaic(), "RGGB")
            truth = item["raw"].numpy()
            base = _metered_prior(net, prior, item)
            for mu in tones:
                if hasattr(net, "tone_blend"):
                    net.tone_blend = mu
                learned = pack(reconstruct_item(model, item, sample).mosaic(), "RGGB")
                preds = np.stack([base + lam * (learned - base) for lam in grid]
                                 + ([prior] if base is not prior else []))
                stack = torch.from_numpy(np.concatenate([truth[None], preds]).astype(np.float32))
                n = len(stack)
                rendered = render_edit(stack, item["wb"][None].expand(n, 3), item["cam2rgb"][None].expand(n, 3, 3),
                                       default_edit).numpy()
                raw, srgb = [psnr(p, truth) for p in preds], [psnr(r, rendered[0]) for r in rendered[1:]]
                row = {"id": sample.id, "camera": sample.camera, "kind": sample.kind,
                       "family": sample.settings.get("source_family"), "raw": raw[:len(grid)], "srgb": srgb[:len(grid)]}
                if base is not prior:  # lambda 0 is the metered prior: the analytic inverse is scored beside it
                    row["analytic"] = {"raw": raw[-1], "srgb": srgb[-1]}
                rows[mu].append(row)
    return rows


def _metered_prior(net, prior: np.ndarray, item: dict) -> np.ndarray:
    """The prior the model's hedge falls back to (lambda 0): the analytic inverse ``prior`` [4,h,w], moved
    toward ISO 12232's metered exposure when the model has a metering weight (the model's own
    ``metering_gain``, rawedge.models.unet); ``prior`` itself otherwise."""
    if not getattr(net, "metering_weight", 0.0):
        return prior
    import torch

    from rawedge.models.base import analytic_packed

    thumb = analytic_packed(item["thumb"][None], item["wb"][None], item["rgb2cam"][None])
    with torch.no_grad():
        return np.clip(prior * np.float32(net.metering_gain(thumb).item()), 0.0, 1.0)


def baseline(row: dict, key: str) -> float:
    """The analytic inverse's PSNR (``key`` "raw" or "srgb") in a sweep row: lambda 0's, unless the model's
    prior is metered and the analytic inverse was scored beside it."""
    return row["analytic"][key] if "analytic" in row else row[key][0]


def hedge_grid(rows_by_tone: dict[float, list[dict]], grid=GRID) -> tuple[list[dict], list[tuple[float, float]]]:
    """(rows, pairs): sweeps of one model at several tone blends (``{mu: sweep rows}``, the same images in
    the same order) joined into rows over (mu, lambda) pairs, for :func:`choose`. The analytic inverse
    (lambda 0, where mu does not matter) comes once and first."""
    tones = sorted(rows_by_tone, reverse=True)
    if not tones:
        raise ValueError("hedge_grid needs the sweep of at least one tone blend")
    if grid[0] != 0.0:
        raise ValueError("the grid must start at 0 (the analytic inverse)")
    pairs = [(tones[0], 0.0)] + [(mu, lam) for mu in tones for lam in grid[1:]]
    base = rows_by_tone[tones[0]]
    for mu in tones[1:]:
        if [r["id"] for r in rows_by_tone[mu]] != [r["id"] for r in base]:
            raise ValueError(f"the sweep at tone blend {mu} covers other images than the one at {tones[0]}")
    rows = []
    for j, r in enumerate(base):
        joined = {k: v for k, v in r.items() if k not in ("raw", "srgb")}
        for key in ("raw", "srgb"):
            joined[key] = [r[key][0]] + [rows_by_tone[mu][j][key][k] for mu in tones for k in range(1, len(grid))]
        rows.append(joined)
    return rows, pairs


def camera_gains(rows: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """{camera: {"raw": gain per lambda, "srgb": gain per lambda}}: mean PSNR over the camera's images
    minus the analytic inverse's (:func:`baseline`: lambda 0, the first grid point, unless metered)."""
    by_camera = defaultdict(list)
    for r in rows:
        by_camera[r["camera"]].append(r)
    out = {}
    for cam, rs in sorted(by_camera.items()):
        out[cam] = {key: np.mean([r[key] for r in rs], axis=0) - np.mean([baseline(r, key) for r in rs])
                    for key in ("raw", "srgb")}
    return out


def choose(rows: list[dict], grid=GRID, floor: float | None = None) -> tuple[float, dict]:
    """(lambda, evidence) from ``rows`` (images of cameras the swept models did not see; lambda = 0 first).
    ``grid`` may hold (mu, lambda) pairs (:func:`hedge_grid`); the chosen pair is returned then.

    Without ``floor``: the grid point maximising the worst camera's gain (the smaller of its RAW and sRGB
    gains), ties (within 0.01 dB) to the larger mean gain. With ``floor`` (dB, e.g. -0.3, the tolerance of
    issue 13's bar): the largest mean gain among the points whose worst camera stays at or above ``floor``
    (lambda = 0 always does), so a lambda that costs one camera a little and gains much elsewhere wins."""
    if not rows:
        raise ValueError("choose needs sweep rows of at least one image")
    if (grid[0][-1] if isinstance(grid[0], tuple) else grid[0]) != 0.0:
        raise ValueError("the grid must start at 0 (the analytic inverse)")
    gains = camera_gains(rows)
    worst = np.min([np.minimum(g["raw"], g["srgb"]) for g in gains.values()], axis=0)
    mean = np.mean([(g["raw"] + g["srgb"]) / 2 for g in gains.values()], axis=0)
    if floor is None:
        best = max(range(len(grid)), key=lambda k: (round(float(worst[k]) / 0.01), float(mean[k])))
    else:
        best = max((k for k in range(len(grid)) if worst[k] >= floor or k == 0), key=lambda k: float(mean[k]))
    evidence = {"grid": [list(g) if isinstance(g, tuple) else g for g in grid], "floor_db": floor, "worst_camera_gain_db": [round(float(x), 3) for x in worst],
                "mean_gain_db": [round(float(x), 3) for x in mean],
                "cameras": {cam: {k: [round(float(x), 3) for x in v] for k, v in g.items()}
                            for cam, g in gains.items()}}
    pick = grid[best]
    return (tuple(float(x) for x in pick) if isinstance(pick, tuple) else float(pick)), evidence


FIXED_OPTIONS = ("exposure_blend", "metering_weight", "metering_knee")


def _set_fixed(net, fixed: dict, checkpoint) -> None:
    """Set the held-fixed options on ``net``, checked as the model's constructor checks them."""
    from rawedge.models.registry import create_model

    unknown = set(fixed) - set(FIXED_OPTIONS)
    if unknown:
        raise ValueError(f"fixed options must be among {FIXED_OPTIONS}, got {sorted(unknown)}")
    if not fixed:
        return
    try:
        create_model(net.model_name, **{**net.config, **{k: float(v) for k, v in fixed.items()}})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{checkpoint}: {exc}") from None
    for key, value in fixed.items():
        setattr(net, key, float(value))


def with_blend(checkpoint: str | os.PathLike, lam: float, out: str | os.PathLike, evidence: dict | None = None,
               tone: float = 1.0, fixed: dict | None = None):
    """A copy of ``checkpoint`` whose model config carries ``prior_blend = lam``, ``tone_blend = tone`` and
    the options in ``fixed`` (and the evidence they were chosen on, under ``extra.prior_blend``), so export
    and every runtime apply the same hedge."""
    from rawedge.models.checkpoint import load_checkpoint, save_checkpoint

    model, ckpt = load_checkpoint(checkpoint)
    if "prior_blend" not in model.config:
        raise ValueError(f"{checkpoint}: model {ckpt['model_name']!r} has no prior_blend option")
    if tone != 1.0 and getattr(model, "tone", None) is None:
        raise ValueError(f"{checkpoint}: a tone blend of {tone} needs a model with a global tone")
    model.config = {**model.config, "prior_blend": float(lam), **({"tone_blend": float(tone)} if tone != 1.0 else {})}
    _set_fixed(model, fixed or {}, checkpoint)
    model.config.update({k: float(v) for k, v in (fixed or {}).items()})
    model.prior_blend = float(lam)
    model.tone_blend = float(tone)
    save_checkpoint(out, model, camera_profiles=ckpt.get("camera_profiles"), recipe=ckpt.get("recipe"),
                    metrics=ckpt.get("metrics"),
                    extra={**(ckpt.get("extra") or {}), "prior_blend": {"value": float(lam), "tone_blend": float(tone),
                                                                   **{k: getattr(model, k) for k in FIXED_OPTIONS
                                                                      if hasattr(model, k)},
                                                                   **(evidence or {})}})


def _source(row: dict) -> str:
    """The RAW file a sweep row was rendered from (``build_eval_set`` names renderings ``STEM-KIND``)."""
    return row["id"].rsplit("-", 1)[0]


def _gains(rows: list[dict], k: int) -> dict:
    n = max(1, len(rows))
    return {"images": len(rows), "raw_db": round(sum(r["raw"][k] - baseline(r, "raw") for r in rows) / n, 3),
            "srgb_db": round(sum(r["srgb"][k] - baseline(r, "srgb") for r in rows) / n, 3)}


def fit_to_camera(checkpoint: str | os.PathLike, raw_dir: str | os.PathLike, out: str | os.PathLike,
                  tones=TONES, holdout: float = 0.34, center_crop: int | None = 1024, seed: int = 0,
                  on_step=None) -> dict:
    """Hedge ``checkpoint`` for one camera from RAW files of it (``raw_dir``), written to ``out``.

    How brightly a camera exposes is not in its JPEGs (docs/lofo-round6-tone.md), so a model can be right in
    detail and wrong in level on a camera it never saw. With a few RAW files of that camera the hedge
    (``tone_blend``, ``prior_blend``) can be chosen on the camera itself: each file is rendered as the
    protocol renders its held-out files (``rawedge.data.mix.build_eval_set``), swept at every tone blend, and
    :func:`choose` picks on a seeded split of the files, by file; the held-out files report what the choice
    is worth (``holdout`` 0: every file chooses and the gains are in sample). Returns the choice and the gains
    over the analytic inverse on both parts."""
    import tempfile
    from pathlib import Path

    from rawedge.calibration.dataset import is_raw, list_sources, split_sources
    from rawedge.data.mix import build_eval_set
    from rawedge.errors import RawedgeError
    from rawedge.models.checkpoint import read_checkpoint
    from rawedge.models.registry import model_class

    ckpt = read_checkpoint(checkpoint)
    config = ckpt.get("config") or {}
    if "prior_blend" not in getattr(model_class(ckpt.get("model_name")), "default_config", {}):
        raise RawedgeError(checkpoint, f"model {ckpt.get('model_name')!r} has no hedge (prior_blend); "
                                       "fit_to_camera needs a unet checkpoint")
    tones = tuple(sorted({float(t) for t in tones} | {1.0}, reverse=True))
    if any(not 0.0 <= t <= 1.0 for t in tones):
        raise RawedgeError(None, f"tone blends must be in [0, 1], got {list(tones)}")
    if not config.get("global_tone"):
        tones = (1.0,)  # nothing to hedge but lambda
    raws = [f for f in list_sources(raw_dir) if is_raw(f)]
    if not raws:
        raise RawedgeError(raw_dir, "no RAW files in this directory (the hedge is fitted on RAW files of the camera)")
    if holdout:
        split = split_sources(raws, holdout, seed, raw_dir, roles=("choosing the hedge", "the held-out check"))
        chooser, held = {f.stem for f in split.calibration}, {f.stem for f in split.held_out}
    else:
        chooser, held = {f.stem for f in raws}, set()
    with tempfile.TemporaryDirectory(prefix="rawedge-hedge-") as tmp:
        links = Path(tmp) / "raw"
        links.mkdir()
        for f in raws:
            (links / f.name).symlink_to(Path(f).resolve())
        build_eval_set([links], Path(tmp) / "renderings", on_step=on_step)
        rows_by_tone = sweep_tones(checkpoint, Path(tmp) / "renderings", tones, center_crop=center_crop,
                                   on_step=on_step)
    rows, grid = hedge_grid(rows_by_tone)
    result, evidence = choose_by_file(rows, grid, chooser, held)
    with_blend(checkpoint, result["prior_blend"], out, {**evidence, "fitted_to_camera": result},
               tone=result["tone_blend"])
    return result


def choose_by_file(rows: list[dict], grid, choosing: set[str], held_out: set[str]) -> tuple[dict, dict]:
    """(result, evidence): :func:`choose` (with the bar's floor) on the renderings of the files named in
    ``choosing`` (RAW file stems), and the chosen hedge's mean gains over the analytic inverse on those and
    on the ``held_out`` files' renderings. ``grid``: (mu, lambda) pairs (:func:`hedge_grid`)."""
    picked = [r for r in rows if _source(r) in choosing]
    point, evidence = choose(picked, grid, floor=FLOOR_DB)
    k = grid.index(point)
    result = {"tone_blend": point[0], "prior_blend": point[1], "files_choosing": sorted(choosing),
              "files_held_out": sorted(held_out), "choosing": _gains(picked, k),
              "held_out": _gains([r for r in rows if _source(r) in held_out], k)}
    return result, evidence
