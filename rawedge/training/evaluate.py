"""``rawedge eval``: score a model on a data folder, always next to the analytic reverse ISP.

For every image of the split (whole image, tiled with overlap by the runtimes' Reconstructor through the
PyTorch runner: the plan, tiles and blend of `rawedge infer`, with the image's own white balance and
camera matrix as `--like RAW` gives them): RAW PSNR and SSIM on packed RGGB normalised to [0, 1], then
sRGB PSNR, SSIM and CIE ΔE2000 after each of the five fixed edits of
``rawedge.losses.edit_aware.fixed_edits`` (ground truth and reconstruction rendered by the same
differentiable ISP, ``render_edit``). Means overall, per kind of pair and per camera; a JSON report and a
PNG figure (per-edit bars, error heat maps of the worst image). Metric definitions:
``rawedge.metrics``.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

REPORT_FORMAT = "rawedge-eval"
CONVENTIONS = {
    "raw": "packed RGGB [4, H/2, W/2] normalised to [0, 1] by (v - black) / (white - black); PSNR = "
           "10 log10(1 / MSE) over all 4 channels per image; SSIM = mean over the 4 channels of scikit-image "
           "Gaussian SSIM (sigma 1.5, population covariance, data range 1); means over images",
    "srgb": "ground truth and reconstruction rendered by rawedge.losses.edit_aware.render_edit with each fixed "
            "edit (bilinear demosaic, full resolution); PSNR and SSIM on [0, 1] sRGB; ΔE2000 via colour-science "
            "(sRGB -> XYZ -> Lab, D65) averaged over a regular pixel sub-grid (delta_e_stride)",
    "tiling": "whole images, tiles of `tile` pixels overlapping by `overlap`, raised-cosine blending: the "
              "blend `rawedge infer` writes (runtimes.Reconstructor), before quantisation to sensor levels",
}
_MAP_SIZE = 384  # longest side of the heat maps kept for the figure
SIGMA_SAMPLES = 20_000  # (sigma, error) pairs kept per image for the confidence calibration


def load_model(spec: str, device):
    """(model in eval mode, description, checkpoint dict) from a checkpoint path or the name ``analytic``."""
    from rawedge.models.checkpoint import load_checkpoint
    from rawedge.models.registry import create_model

    if spec == "analytic":
        model, ckpt = create_model("analytic"), {}
        info = {"name": "analytic", "checkpoint": None, "config": {}}
    else:
        model, ckpt = load_checkpoint(spec)
        info = {"name": ckpt["model_name"], "checkpoint": os.fspath(spec), "config": ckpt["config"],
                "weights_sha256": ckpt.get("weights_sha256"), "trained": ckpt.get("metrics", {})}
    return model.to(device).eval(), info, ckpt


def open_reconstructor(model, ckpt: dict, device, tile: int, overlap: int):
    """``model`` behind the PyTorch runner, in the Reconstructor `rawedge infer` uses."""
    from rawedge.export.torch_runner import TorchRunner
    from rawedge.runtimes import Reconstructor

    return Reconstructor(TorchRunner.from_model(model, ckpt, device=str(device)), tile=tile, overlap=overlap)


def reconstruct_item(rec, item: dict, sample):
    """The Reconstructor's blend (runtimes.blend.Blend) of one evaluation image: planned with the image's
    own white balance and camera->sRGB matrix (the RAW's, as `rawedge infer --like RAW` takes them), its
    EXIF and its whole image's thumbnail (``item`` may be a central crop), on an RGGB profile with the
    data's levels (the data are stored in RGGB phase)."""
    from rawedge.types import CameraProfile, Exif

    profile = CameraProfile(name=sample.camera, cfa="RGGB", black_level=list(sample.black_level),
                            white_level=float(sample.white_level))
    camera = rec.camera_options(profile=profile, wb=sample.wb, cam2rgb=sample.cam2rgb)
    srgb = item["srgb"].permute(1, 2, 0).cpu().numpy()
    plan = rec.plan(srgb, Exif.from_dict(sample.exif), camera, thumb=item["thumb"].cpu().numpy())
    return rec.blend(plan, rec.run(plan), confidence=rec.has_confidence)


def _to_hwc(t) -> np.ndarray:
    return t[0].permute(1, 2, 0).float().cpu().numpy()


def _small(a: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(max(a.shape[:2]) / _MAP_SIZE)))
    return np.ascontiguousarray(a[::step, ::step])


def score_image(model, analytic, item: dict, sample, edits, device) -> tuple[dict, dict]:
    """({"model": metrics, "analytic": metrics}, heat-map arrays) of one full image; ``model`` and
    ``analytic``: Reconstructors (:func:`open_reconstructor`), ``sample``: the image's manifest entry."""
    import torch

    from rawedge.contract import INPUT_NAMES
    from rawedge.isp.ops import pack
    from rawedge.losses.edit_aware import render_edit
    from rawedge.metrics import raw_metrics, srgb_metrics

    inputs = {k: item[k][None].to(device) for k in INPUT_NAMES}
    target = item["raw"][None].to(device)
    blends = {"model": reconstruct_item(model, item, sample), "analytic": reconstruct_item(analytic, item, sample)}
    preds = {name: torch.from_numpy(pack(b.mosaic(), "RGGB"))[None].to(device) for name, b in blends.items()}
    scores = {name: {"raw": raw_metrics(p[0].cpu().numpy(), item["raw"].numpy()), "srgb": {}}
              for name, p in preds.items()}
    maps = {f"raw_error_{name}": _small((p[0] - target[0]).abs().mean(0).cpu().numpy()) for name, p in preds.items()}
    predicted_sigma = blends["model"].sigma()
    if predicted_sigma is not None:  # a subsample of (predicted sigma, observed error) pairs for the calibration table
        sigma = pack(predicted_sigma, "RGGB").ravel()
        error = (preds["model"][0] - target[0]).cpu().numpy().ravel()
        pick = np.random.default_rng(0).choice(sigma.size, min(sigma.size, SIGMA_SAMPLES), replace=False)
        maps["sigma_pairs"] = np.stack([sigma[pick], error[pick]])
    names = list(preds)
    stack = torch.cat([target, *preds.values()])  # one rendering call per edit for truth and predictions
    wb, cam2rgb = inputs["wb"].expand(len(stack), 3), inputs["cam2rgb"].expand(len(stack), 3, 3)
    with torch.no_grad():
        for edit in edits:
            rendered = render_edit(stack, wb, cam2rgb, edit)
            truth = _to_hwc(rendered[0:1])
            if edit.name == "default":
                maps["srgb_truth"] = _small(truth)
            for k, name in enumerate(names, start=1):
                scores[name]["srgb"][edit.name] = srgb_metrics(_to_hwc(rendered[k:k + 1]), truth)
    return scores, maps


def _mean_scores(rows: list[dict]) -> dict:
    """Mean of per-image {"raw": {...}, "srgb": {edit: {...}}} dicts (and the median absolute exposure
    error, the number the exposure target is stated in)."""
    out = {"n": len(rows), "raw": {k: float(np.mean([r["raw"][k] for r in rows])) for k in rows[0]["raw"]},
           "srgb": {}}
    if "exposure_stops" in rows[0]["raw"]:
        out["raw"]["exposure_abs_median_stops"] = float(np.median([abs(r["raw"]["exposure_stops"]) for r in rows]))
    for edit in rows[0]["srgb"]:
        keys = [k for k in rows[0]["srgb"][edit] if k != "delta_e_stride"]
        out["srgb"][edit] = {k: float(np.mean([r["srgb"][edit][k] for r in rows])) for k in keys}
    return out


def _aggregate(images: list[dict], key: str | None) -> dict:
    groups = defaultdict(list)
    for im in images:
        groups["all" if key is None else im[key]].append(im)
    return {g: {"model": _mean_scores([im["model"] for im in ims]),
                "analytic": _mean_scores([im["analytic"] for im in ims])} for g, ims in sorted(groups.items())}


def evaluate(model_spec: str, data_dir: str | os.PathLike, split: str = "val", kinds=None, tile: int = 512,
             overlap: int = 64, device: str = "cpu", max_samples: int | None = None, center_crop: int | None = None,
             on_step=None) -> tuple[dict, dict]:
    """(report, figure data). ``center_crop`` scores the central square of that size of each image
    instead of the whole image (quick checks). ``on_step(sample_id)`` is called before each image."""
    import torch

    from rawedge.data.dataset import PairDataset
    from rawedge.losses.edit_aware import fixed_edits
    from rawedge.models.registry import create_model
    from rawedge.training.distributed import resolve_device

    dev = resolve_device(device)
    model, info, ckpt = load_model(model_spec, dev)
    model = open_reconstructor(model, ckpt, dev, tile, overlap)
    analytic = open_reconstructor(create_model("analytic").to(dev).eval(), {}, dev, max(tile, 2048), 0)
    dataset = PairDataset(data_dir, split, crop=None, kinds=kinds, cache=False)  # one image in memory
    count = len(dataset.samples) if not max_samples else min(max_samples, len(dataset.samples))
    edits = fixed_edits()
    images, worst, sigma_pairs = [], None, []
    with model, analytic, torch.no_grad():
        for j in range(count):
            sample = dataset.samples[j]
            if on_step:
                on_step(sample.id)
            scores, maps = score_image(model, analytic, dataset.full_item(j, center_crop=center_crop), sample, edits,
                                       dev)
            if "sigma_pairs" in maps:
                sigma_pairs.append(maps.pop("sigma_pairs"))
            images.append({"id": sample.id, "kind": sample.kind, "camera": sample.camera, "source": sample.source,
                           "size": [sample.height, sample.width], **scores})
            if worst is None or scores["model"]["raw"]["psnr"] < worst["psnr"]:
                worst = {"id": sample.id, "psnr": scores["model"]["raw"]["psnr"],
                         "analytic_psnr": scores["analytic"]["raw"]["psnr"], **maps}
    report = {"format": REPORT_FORMAT, "format_version": 1, "model": info,
              "data": {"dir": os.fspath(data_dir), "split": split, "kinds": kinds, "images": len(images)},
              "settings": {"tile": tile, "overlap": overlap, "device": str(dev),
                           "center_crop": center_crop or "whole image"}, "conventions": CONVENTIONS,
              "edits": [e.to_dict() for e in edits],
              "summary": _aggregate(images, None)["all"], "by_kind": _aggregate(images, "kind"),
              "by_camera": _aggregate(images, "camera"), "worst_image": worst["id"], "images": images}
    if sigma_pairs:
        from rawedge.metrics import sigma_calibration

        pairs = np.concatenate(sigma_pairs, axis=1)
        report["confidence"] = {"deciles": sigma_calibration(pairs[0], pairs[1]),
                                "convention": "pixels pooled over images (a fixed random subsample of "
                                              f"{SIGMA_SAMPLES} per image); bins are deciles of predicted sigma"}
    return report, worst


def heldout_accuracy(report: dict, weights_sha256: str | None = None, source: str | None = None) -> dict:
    """The model's measured RAW accuracy from an evaluation report, for its metadata: the mean and the
    90th percentile over images of its RAW PSNR against truth. The INT8 gate bounds the drop of photos
    without truth with the model's own error (calibration.gate.reference_quality): the 90th percentile
    is strict on 9 images in 10 (a more accurate model loses more to the same INT8 change), where an
    assumed 40 dB is strict on almost all and loose on nothing measured. ``weights_sha256``: refuse a
    report of other weights."""
    from rawedge.errors import RawedgeError

    if report.get("format") != REPORT_FORMAT or not report.get("images"):
        raise RawedgeError(source, "not a rawedge eval report with images (make one with `rawedge eval`)")
    reported = (report.get("model") or {}).get("weights_sha256")
    if weights_sha256 and reported != weights_sha256:
        raise RawedgeError(source, f"the report scores weights {str(reported)[:12]}..., not this checkpoint's "
                                   f"{weights_sha256[:12]}...")
    scores = np.array([im["model"]["raw"]["psnr"] for im in report["images"]], dtype=np.float64)
    return {"heldout_raw_psnr_p90": float(np.percentile(scores, 90)), "heldout_raw_psnr_mean": float(scores.mean()),
            "heldout_images": int(scores.size), "heldout_data": str(report.get("data", {}).get("dir")),
            **({"heldout_report": os.fspath(source)} if source else {})}


def write_report(report: dict, path: str | os.PathLike) -> None:
    from rawedge.io.atomic import atomic_output

    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1))


def write_figure(report: dict, worst: dict, path: str | os.PathLike) -> None:
    """Per-edit sRGB PSNR and ΔE2000 bars, RAW PSNR per kind, and heat maps of the worst image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rawedge.io.atomic import atomic_output

    summary = report["summary"]
    edits = list(summary["model"]["srgb"])
    x = np.arange(len(edits))
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, metric, label in ((axes[0, 0], "psnr", "sRGB PSNR (dB)"), (axes[0, 1], "delta_e2000", "ΔE2000 (lower is better)")):
        for k, who in enumerate(("model", "analytic")):
            ax.bar(x + (k - 0.5) * 0.38, [summary[who]["srgb"][e][metric] for e in edits], 0.38,
                   label=report["model"]["name"] if who == "model" else "analytic")
        ax.set_xticks(x, edits, rotation=20)
        ax.set_ylabel(label)
        ax.set_title(f"{label.split(' (')[0]} after each fixed edit")
        ax.legend()
    kinds = list(report["by_kind"])
    xk = np.arange(len(kinds))
    for k, who in enumerate(("model", "analytic")):
        axes[0, 2].bar(xk + (k - 0.5) * 0.38, [report["by_kind"][g][who]["raw"]["psnr"] for g in kinds], 0.38,
                       label=report["model"]["name"] if who == "model" else "analytic")
    axes[0, 2].set_xticks(xk, kinds)
    axes[0, 2].set_ylabel("RAW PSNR (dB), packed RGGB [0,1]")
    axes[0, 2].set_title("RAW PSNR per kind of pair")
    axes[0, 2].legend()
    axes[1, 0].imshow(np.clip(worst["srgb_truth"], 0, 1))
    axes[1, 0].set_title(f"worst image: {worst['id']} (ground truth, default edit)", fontsize=9)
    vmax = float(max(np.percentile(worst["raw_error_model"], 99.5), np.percentile(worst["raw_error_analytic"], 99.5),
                     1e-4))
    for ax, who, score in ((axes[1, 1], "model", worst["psnr"]), (axes[1, 2], "analytic", worst["analytic_psnr"])):
        im = ax.imshow(worst[f"raw_error_{who}"], cmap="magma", vmin=0.0, vmax=vmax)
        ax.set_title(f"|RAW error| {report['model']['name'] if who == 'model' else 'analytic'} "
                     f"({score:.2f} dB)", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.035)
    for ax in axes[1]:
        ax.set_axis_off()
    fig.suptitle(f"{report['model']['name']} on {report['data']['dir']} ({report['data']['split']}, "
                 f"{report['data']['images']} images)")
    fig.tight_layout()
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
