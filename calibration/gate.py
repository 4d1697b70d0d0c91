"""The accuracy gate, one implementation for every backend.

On each held-out file, the Reconstructor's feeds (calibration.dataset.record_feeds) run through a
Polygraphy ``Comparator`` with two runners: the FP32 reference (the PyTorch checkpoint, or the FP32
ONNX through ONNX Runtime) and the INT8 artefact. Each runner's outputs are blended back into a
RawImage by the Reconstructor itself (calibration.dataset.replay: the feeds recorded from
``Reconstructor.plan(...).batches()``, the outputs through ``Reconstructor.blend``), so the gate scores
exactly what `rawedge infer --precision int8` would write.

Scores per image: RAW PSNR of INT8 against the reference, max / mean / 99th-percentile absolute
error, PSNR of both against the ground truth when the file is a RAW, and sRGB PSNR after the five
fixed edits of the evaluation (rawedge.losses.edit_aware.fixed_edits, both rendered by the same
``render_edit``; needs torch).

The drop (dB) the budget applies to:
- with ground truth for every held-out file: mean PSNR(FP32, truth) - mean PSNR(INT8, truth);
- otherwise an upper bound from the INT8-vs-FP32 error and the reference model's own RAW error (its
  held-out 90th-percentile or validation RAW PSNR from the model metadata, --reference-psnr, or an
  assumed 40 dB). With e = FP32 - truth,
  d = INT8 - FP32, r = RMSE(d) / RMSE(e) and rho their correlation, the drop is exactly
  10 log10(1 + r^2 + 2 rho r). rho is unknown without truth: rho = 1 is the triangle inequality,
  20 log10(1 + r), and rho = 0 (independence) underestimates real drops 35-fold. Measured on 32 RAW
  files of six cameras with the bundled model's ONNX Runtime and OpenVINO INT8 artefacts
  (benchmarks/int8_correlation.py, docs/int8/correlation.json), rho never exceeded 0.34 (90 % of
  images below 0.15); the bound uses CORRELATION_BOUND = 0.5, which no image's real drop exceeded.
The mean must stay within ``max_drop`` and every single image's drop (measured or bound, the same way)
within ``image_limit`` (default the larger of 1 dB and 3 x ``max_drop``): a mean can hide one photo made
much worse while another improves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rawedge.runtimes.base import Runner, import_backend

from rawedge.compare import Comparator, Tolerance
from rawedge.errors import RawedgeError, install_command
from rawedge.metadata.schema import ModelMeta
from rawedge.metrics import PSNR_CAP_DB, psnr

from .adapters import polygraphy_adapter
from .dataset import Item, Tiling, load_item, record_feeds, replay

ASSUMED_REFERENCE_PSNR = 40.0  # above typical reverse-ISP RAW PSNR (25-38 dB): the estimate errs strict
CORRELATION_BOUND = 0.5  # largest measured correlation of INT8 changes with the model's own error: 0.34
# The model's own RAW accuracy, first found wins: the 90th percentile measured on held-out data (`rawedge
# export --accuracy`, strict on 9 images in 10), else the training run's validation PSNR (a mean).
METRIC_KEYS = ("heldout_raw_psnr_p90", "best_val_raw_psnr", "val_raw_psnr")
EDIT_MAX_PIXELS = 4_000_000  # edits are rendered on a central crop of at most this many pixels
MAP_SIZE = 512  # longest side of the error maps kept for the figure
ITEM_CACHE_BYTES = 1 << 30  # held-out images kept decoded between attempts, up to this size


@dataclass(frozen=True)
class Budget:
    max_drop: float
    reference_psnr: float  # the reference's RAW PSNR against truth, for drop bounds without truth
    reference_psnr_source: str
    max_image_drop: float | None = None  # worst single held-out image; None: max(1 dB, 3 x max_drop)
    correlation: float = CORRELATION_BOUND  # rho assumed by drop bounds without truth (1: triangle inequality)

    @property
    def image_limit(self) -> float:
        return self.max_image_drop if self.max_image_drop is not None else max(1.0, 3.0 * self.max_drop)


def reference_quality(meta: ModelMeta, given: float | None = None) -> tuple[float, str]:
    """(RAW PSNR of the FP32 model against ground truth, where it comes from)."""
    if given is not None:
        if not math.isfinite(given) or given <= 0:
            raise RawedgeError(None, f"--reference-psnr must be a positive number of dB, got {given}")
        return float(given), "--reference-psnr"
    for key in METRIC_KEYS:
        value = (meta.metrics or {}).get(key)
        if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
            return float(value), f"model metadata metrics.{key}"
    return ASSUMED_REFERENCE_PSNR, "assumed (the model records no validation RAW PSNR; pass --reference-psnr)"


def drop_bound(psnr_vs_reference: float, reference_psnr: float, correlation: float = 1.0) -> float:
    """Upper bound of the PSNR lost when an error of ``psnr_vs_reference`` dB (INT8 vs FP32) adds to a
    model whose own error is ``reference_psnr`` dB, if the two errors correlate by at most
    ``correlation``: 10 log10(1 + r^2 + 2 rho r), r the RMSE ratio (rho = 1: 20 log10(1 + r), the
    triangle inequality). Identical outputs (rawedge.metrics.psnr reports them as PSNR_CAP_DB) lose nothing."""
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [0, 1], got {correlation}")
    if psnr_vs_reference >= PSNR_CAP_DB:
        return 0.0
    r = 10.0 ** ((reference_psnr - psnr_vs_reference) / 20.0)
    return 10.0 * math.log10(1.0 + r * r + 2.0 * correlation * r)


def error_stats(candidate: np.ndarray, reference: np.ndarray) -> dict:
    """INT8 against the reference on one image's normalised mosaic, through rawedge.compare. No tolerance
    there: the budget bounds the PSNR drop (measured or bound), not the difference itself."""
    diff = Comparator({"raw": Tolerance()})({"raw": reference}, {"raw": candidate}).outputs["raw"]
    p99 = np.percentile(np.abs(candidate.astype(np.float32) - reference.astype(np.float32)), 99.0)
    return {"psnr_vs_reference_db": diff.psnr_db, "max_abs": diff.max_abs, "mean_abs": diff.mean_abs,
            "p99_abs": float(p99)}


def small(a: np.ndarray, size: int = MAP_SIZE, peak: bool = False) -> np.ndarray:
    """``a`` reduced to at most ``size`` pixels a side: subsampled, or (``peak``, for error maps) the
    maximum of each block, so that sparse errors (a few clipped highlights) stay visible."""
    step = max(1, math.ceil(max(a.shape[:2]) / size))
    if not peak or step == 1:
        return np.ascontiguousarray(a[::step, ::step])
    h, w = a.shape[0] // step * step, a.shape[1] // step * step
    return a[:h, :w].reshape(h // step, step, w // step, step, *a.shape[2:]).max(axis=(1, 3))


def packed_error_map(candidate: np.ndarray, reference: np.ndarray, cfa: str) -> np.ndarray:
    """|candidate - reference| averaged over each 2x2 Bayer block (even-cropped)."""
    from rawedge.isp.ops import pack

    h, w = (reference.shape[0] // 2) * 2, (reference.shape[1] // 2) * 2
    return np.abs(pack(candidate[:h, :w], cfa) - pack(reference[:h, :w], cfa)).mean(axis=0)


def central_crop(shape: tuple[int, int], max_pixels: int) -> tuple[slice, slice]:
    """Even-aligned central window (keeps the CFA phase) of at most ``max_pixels``."""
    h, w = (shape[0] // 2) * 2, (shape[1] // 2) * 2
    scale = min(1.0, math.sqrt(max_pixels / max(h * w, 1)))
    ch, cw = max(2, int(h * scale) // 2 * 2), max(2, int(w * scale) // 2 * 2)
    y0, x0 = ((h - ch) // 4) * 2, ((w - cw) // 4) * 2
    return slice(y0, y0 + ch), slice(x0, x0 + cw)


def edit_scores(mosaics: dict[str, np.ndarray], cfa: str, wb: np.ndarray, cam2rgb: np.ndarray
                ) -> tuple[dict, dict]:
    """({edit: {psnr_vs_reference, [psnr_truth_reference, psnr_truth_int8, drop_db]}}, default-edit
    renders) for mosaics {"reference", "int8"[, "truth"]} rendered by the evaluation's fixed edits."""
    import torch

    from rawedge.isp.ops import pack
    from rawedge.losses.edit_aware import fixed_edits, render_edit

    names = list(mosaics)
    ys, xs = central_crop(mosaics["reference"].shape, EDIT_MAX_PIXELS)
    stack = torch.from_numpy(np.stack([pack(np.ascontiguousarray(mosaics[k][ys, xs]), cfa) for k in names]))
    n = len(names)
    wb_t = torch.as_tensor(np.asarray(wb, np.float32)).reshape(1, 3).expand(n, 3)
    m_t = torch.as_tensor(np.asarray(cam2rgb, np.float32)).reshape(1, 3, 3).expand(n, 3, 3)
    scores, renders = {}, {}
    with torch.no_grad():
        for edit in fixed_edits():
            out = render_edit(stack.float(), wb_t, m_t, edit).clamp(0, 1).permute(0, 2, 3, 1).numpy()
            img = dict(zip(names, out))
            s = {"psnr_vs_reference": psnr(img["int8"], img["reference"])}
            if "truth" in img:
                s["psnr_truth_reference"] = psnr(img["reference"], img["truth"])
                s["psnr_truth_int8"] = psnr(img["int8"], img["truth"])
                s["drop_db"] = s["psnr_truth_reference"] - s["psnr_truth_int8"]
            scores[edit.name] = s
            if edit.name == "default":
                renders = img
    return scores, renders


@dataclass
class GateResult:
    passed: bool
    drop_db: float
    drop_kind: str  # "measured" (ground truth) or "bound" (upper bound without it)
    max_drop: float
    summary: dict
    images: list[dict]
    worst: dict = field(default_factory=dict)  # error maps of the image INT8 changes most, for the figure
    timing: dict = field(default_factory=dict)
    max_image_drop: float | None = None

    def to_dict(self) -> dict:
        return {"passed": self.passed, "drop_db": self.drop_db, "drop_kind": self.drop_kind,
                "max_drop_db": self.max_drop, "max_image_drop_db": self.max_image_drop, "summary": self.summary, "images": self.images,
                "timing": self.timing}


class Gate:
    """``reference``: an activatable rawedge runner of the FP32 model; ``template``: a runner of the
    exported model whose input shapes the feeds follow (default: the reference; give the FP32 ONNX
    runner when the reference is PyTorch, whose inputs are all dynamic); ``files``: the held-out
    files; ``edits``: score the five edits (needs torch)."""

    def __init__(self, reference: Runner, files: list[Path], tiling: Tiling, budget: Budget, edits: bool = True,
                 max_pixels: int | None = None, log=None, template: Runner | None = None):
        if not files:
            raise RawedgeError(None, "the accuracy gate needs at least one held-out file")
        self.reference = reference
        self.template = template or reference
        self.files = list(files)
        self.tiling = tiling
        self.budget = budget
        self.max_pixels = max_pixels
        self.log = log or (lambda line: None)
        self.edits = edits and self._torch_available()
        self.edits_note = None if self.edits else ("not scored: " + ("disabled" if not edits else
                                                                      f"needs torch ({install_command('train')})"))
        self._items: dict[Path, Item] = {}
        self._cached_bytes = 0

    @staticmethod
    def _torch_available() -> bool:
        import importlib.util

        return importlib.util.find_spec("torch") is not None

    def item(self, path: Path) -> Item:
        """The held-out file, decoded (kept in memory between attempts while they fit ITEM_CACHE_BYTES)."""
        item = self._items.get(path)
        if item is None:
            item = load_item(path, self.max_pixels)
            size = item.srgb.nbytes + (item.truth.bayer.nbytes if item.truth is not None else 0)
            if self._cached_bytes + size <= ITEM_CACHE_BYTES:
                self._items[path] = item
                self._cached_bytes += size
        return item

    def run(self, candidate: Runner, label: str = "int8") -> GateResult:
        comparator = import_backend("polygraphy.comparator", "rawedge[calibrate]", "Polygraphy")
        from polygraphy.logger import G_LOGGER

        self.reference.activate()
        self.template.activate()
        candidate.activate()
        ref_ad = polygraphy_adapter(self.reference, "reference")
        cand_ad = polygraphy_adapter(candidate, label)
        images, worst, times = [], None, {"reference_s": 0.0, "int8_s": 0.0, "pixels": 0}
        for path in self.files:
            item = self.item(path)
            feeds = record_feeds(self.template, item, self.tiling)
            with G_LOGGER.verbosity(G_LOGGER.ERROR):
                results = comparator.Comparator.run([ref_ad, cand_ad], data_loader=feeds)
            outputs = {name: [dict(it) for it in its] for name, its in results.items()}
            for name, key in ((ref_ad.name, "reference_s"), (cand_ad.name, "int8_s")):
                times[key] += sum(it.runtime or 0.0 for it in results[name])
            times["pixels"] += sum(int(np.prod(f["srgb"].shape[-2:])) * len(f["srgb"]) for f in feeds)
            raw_ref = replay(self.template, item, self.tiling, feeds, outputs[ref_ad.name])
            raw_q = replay(self.template, item, self.tiling, feeds, outputs[cand_ad.name])
            del feeds, outputs, results
            score, maps = self._score(item, raw_ref, raw_q)
            images.append(score)
            if worst is None or score["psnr_vs_reference_db"] < worst["psnr_vs_reference_db"]:
                worst = {"file": score["file"], "drop_db": score["drop_db"],
                         "psnr_vs_reference_db": score["psnr_vs_reference_db"], **maps}
            self.log(f"  {path.name}: INT8 vs FP32 {score['psnr_vs_reference_db']:.2f} dB, "
                     f"drop {score['drop_db']:.3f} dB")
        return self._summarise(images, worst, times)

    def _score(self, item: Item, raw_ref, raw_q) -> tuple[dict, dict]:
        r, q = raw_ref.normalized(), raw_q.normalized()
        score = {"file": item.path.name, "size": [int(r.shape[1]), int(r.shape[0])], "profile": raw_ref.profile.name,
                 **error_stats(q, r)}
        maps = {"error_vs_reference": small(packed_error_map(q, r, raw_ref.cfa), peak=True)}
        mosaics = {"reference": r, "int8": q}
        if item.truth is not None:
            t = item.truth.normalized()
            if t.shape != r.shape:
                raise RawedgeError(item.path, f"ground truth {t.shape} and reconstruction {r.shape} differ in size")
            score["psnr_truth_reference_db"] = psnr(r, t)
            score["psnr_truth_int8_db"] = psnr(q, t)
            score["drop_db"] = score["psnr_truth_reference_db"] - score["psnr_truth_int8_db"]
            maps["error_truth_reference"] = small(packed_error_map(r, t, raw_ref.cfa), peak=True)
            maps["error_truth_int8"] = small(packed_error_map(q, t, raw_ref.cfa), peak=True)
            mosaics["truth"] = t
        else:
            score["drop_db"] = drop_bound(score["psnr_vs_reference_db"], self.budget.reference_psnr,
                                          self.budget.correlation)
        if self.edits:
            score["edits"], renders = edit_scores(mosaics, raw_ref.cfa, raw_ref.wb_gains(), raw_ref.profile.cam2rgb())
            maps["render_reference"] = small(renders["reference"])
            maps["render_error"] = small(np.abs(renders["int8"] - renders["reference"]).mean(axis=2), peak=True)
        return score, maps

    def _summarise(self, images: list[dict], worst: dict, times: dict) -> GateResult:
        measured = all("psnr_truth_reference_db" in im for im in images)
        def mean(key: str) -> float:
            return float(np.mean([im[key] for im in images]))
        if measured:
            drop = mean("psnr_truth_reference_db") - mean("psnr_truth_int8_db")
        else:
            drop = float(np.mean([drop_bound(im["psnr_vs_reference_db"], self.budget.reference_psnr,
                                             self.budget.correlation)
                                  for im in images]))
        summary = {"images": len(images), "psnr_vs_reference_db": mean("psnr_vs_reference_db"),
                   "min_psnr_vs_reference_db": float(min(im["psnr_vs_reference_db"] for im in images)),
                   "max_abs": float(max(im["max_abs"] for im in images)), "mean_abs": mean("mean_abs"),
                   "p99_abs": float(max(im["p99_abs"] for im in images)),
                   "worst_drop_db": float(max(im["drop_db"] for im in images)), "worst_image": worst["file"]}
        if measured:
            summary["psnr_truth_reference_db"] = mean("psnr_truth_reference_db")
            summary["psnr_truth_int8_db"] = mean("psnr_truth_int8_db")
        if self.edits:
            summary["edits"] = {}
            for edit in images[0]["edits"]:
                keys = images[0]["edits"][edit]
                summary["edits"][edit] = {k: float(np.mean([im["edits"][edit][k] for im in images])) for k in keys}
        else:
            summary["edits"] = self.edits_note
        mp = times["pixels"] / 1e6
        timing = {"reference_ms_per_mp": 1000 * times["reference_s"] / mp if mp else None,
                  "int8_ms_per_mp": 1000 * times["int8_s"] / mp if mp else None}
        # the mean alone can hide one photo made much worse (errors of both signs cancel): bound the worst too
        passed = drop <= self.budget.max_drop and summary["worst_drop_db"] <= self.budget.image_limit
        return GateResult(passed=passed, drop_db=drop, drop_kind="measured" if measured else "bound",
                          max_drop=self.budget.max_drop, max_image_drop=self.budget.image_limit, summary=summary, images=images, worst=worst, timing=timing)
